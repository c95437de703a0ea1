"""Python API of the acquisition engine, usable without Label Studio.

>>> summary = MCSummary.from_samples(probs)                  # probs: [T, C, H, W] softmax, H x W = image size
>>> config = AcquisitionConfig.from_mapping({"heuristic": "bald", "superpixel_method": "slic"})
>>> scores = score_image(summary, image_rgb, config)         # image_rgb: [H, W, 3] uint8
>>> scores.image_score, scores.region_scores, scores.selected_regions
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np
import torch

from ls_al_backend.acquisition.balance import classbal_weights, dominant_class_share, pixbal_weights
from ls_al_backend.acquisition.heuristics import HEURISTICS, get_heuristic, heuristic_maximum
from ls_al_backend.acquisition.mc import MCSummary
from ls_al_backend.acquisition.reductions import (
    IMAGE_REDUCTIONS,
    PIXEL_SELECTORS,
    REGION_COSTS,
    region_class_counts,
    region_costs,
    region_means_by_class,
    region_scores,
)
from ls_al_backend.acquisition.sampling import STOCHASTIC_SAMPLERS
from ls_al_backend.acquisition.selection import k_center_greedy, select_units
from ls_al_backend.acquisition.superpixels import SUPERPIXEL_METHODS, SuperpixelCache, image_digest

CLASS_BALANCE_MODES = ("none", "classbal", "pixbal")
TASK_ORDERS = ("score", "random")
DIVERSITY_MODES = ("none", "kcenter")
NO_SUPERPIXELS = "none"

#: Process-wide superpixel cache used when the caller passes none.
DEFAULT_CACHE = SuperpixelCache()


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
            return None
        return parse(value)

    return parse_optional


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {value}")
        return int(value)
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return float(value)


def _parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value.strip().lower()


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "str": _parse_str,
    "int": _parse_int,
    "float": _parse_float,
    "int | None": _optional(_parse_int),
    "float | None": _optional(_parse_float),
}


#: Caps on what one image may be asked for: an annotator answers tens of queries per image, and every query
#: region becomes a polygon in the prediction JSON.
MAX_QUERY_REGIONS = 500
MAX_QUERY_PIXELS = 2000
MAX_SUPERPIXELS = 20_000


@dataclass(frozen=True)
class AcquisitionConfig:
    """What to score and how to pick; validated on construction (``ValueError`` with a readable message).

    Attributes:
        heuristic: a name in ``HEURISTICS`` (per-pixel score, higher = more informative).
        image_reduction: ``mean`` | ``max`` | ``topk_mean`` (one score per image).
        top_fraction: share of pixels used by ``topk_mean`` and as PixelPick's candidate set, in (0, 1].
        superpixel_method: ``slic`` | ``felzenszwalb`` | ``quickshift`` | ``watershed`` | ``none``.
        superpixel_size: target region side in pixels (regions of about size x size).
        superpixel_count: if set, target number of regions instead (SLIC / watershed honour it best).
        region_reduction: ``mean`` | ``max`` of the pixel scores inside a region.
        class_balance: ``none`` | ``classbal`` (Cai et al.) | ``pixbal`` (MulActSeg); ``nu`` is PixBal's strength.
        label_mode: ``dominant`` (1 click per region) | ``multiclass`` (1 click per predicted class in the region).
        top_k_regions: how many regions to propose (0 = none); with ``budget`` at most this many.
        budget: clicks available for this image's regions (greedy by score/cost); None = no budget.
        sampling: ``top`` | ``power`` | ``softmax`` | ``softrank`` (stochastic batch acquisition); ``temperature``.
        diversity: ``none`` | ``kcenter`` (k-center greedy over region mean class probabilities).
        top_n_pixels: how many single pixels to propose (0 = none); ``pixel_selection`` ``top`` | ``pixelpick``.
        task_order: ``score`` (a task's queue score is its image score: the model's order) | ``random`` (a
            uniform draw per image: images come in random order, while masks, overlay and queries still come from
            the model and the heuristic).
        seed: seeds every random choice (random heuristic, stochastic sampling, PixelPick, random task order),
            combined with a hash of the image so each image gets its own, reproducible, draw.
    """

    heuristic: str = "predictive_entropy"
    image_reduction: str = "mean"
    top_fraction: float = 0.05
    superpixel_method: str = "slic"
    superpixel_size: int = 32
    superpixel_count: int | None = None
    region_reduction: str = "mean"
    class_balance: str = "none"
    nu: float = 1.0
    label_mode: str = "dominant"
    top_k_regions: int = 10
    budget: float | None = None
    sampling: str = "top"
    temperature: float = 1.0
    diversity: str = "none"
    top_n_pixels: int = 0
    pixel_selection: str = "top"
    task_order: str = "score"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("heuristic", self.heuristic, HEURISTICS)
        _check_choice("image_reduction", self.image_reduction, IMAGE_REDUCTIONS)
        _check_choice("superpixel_method", self.superpixel_method, (*SUPERPIXEL_METHODS, NO_SUPERPIXELS))
        _check_choice("region_reduction", self.region_reduction, ("mean", "max"))
        _check_choice("class_balance", self.class_balance, CLASS_BALANCE_MODES)
        _check_choice("label_mode", self.label_mode, REGION_COSTS)
        _check_choice("sampling", self.sampling, ("top", *STOCHASTIC_SAMPLERS))
        _check_choice("diversity", self.diversity, DIVERSITY_MODES)
        _check_choice("pixel_selection", self.pixel_selection, PIXEL_SELECTORS)
        _check_choice("task_order", self.task_order, TASK_ORDERS)
        _check_range("top_fraction", self.top_fraction, 0.0, 1.0, low_open=True)
        _check_range("superpixel_size", self.superpixel_size, 4, 4096)
        if self.superpixel_count is not None:
            _check_range("superpixel_count", self.superpixel_count, 1, MAX_SUPERPIXELS)
        _check_range("nu", self.nu, 0.0, 1e6)
        _check_range("top_k_regions", self.top_k_regions, 0, MAX_QUERY_REGIONS)
        if self.budget is not None:
            _check_range("budget", self.budget, 0.0, 1e9)
        _check_range("temperature", self.temperature, 0.0, 1e6, low_open=True)
        _check_range("top_n_pixels", self.top_n_pixels, 0, MAX_QUERY_PIXELS)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, **overrides: Any) -> AcquisitionConfig:
        """Build from a dict (request params, environment defaults); values may be strings ("10", "0.5").

        Later sources win: ``mapping`` then ``overrides``. ``None`` values keep the default. Unknown keys, bad types
        and unknown names raise ``ValueError`` naming the parameter and the accepted values.
        """
        merged = {**(mapping or {}), **overrides}
        specs = {spec.name: spec for spec in fields(cls)}
        unknown = sorted(set(merged) - set(specs))
        if unknown:
            raise ValueError(f"unknown acquisition parameter(s) {', '.join(unknown)}; known: {', '.join(specs)}")
        values: dict[str, Any] = {}
        for name, raw in merged.items():
            spec = specs[name]
            if raw is None and spec.default is not MISSING and spec.type not in ("int | None", "float | None"):
                continue
            try:
                values[name] = _PARSERS[str(spec.type)](raw)
            except (TypeError, ValueError) as error:
                raise ValueError(f"acquisition parameter {name}={raw!r}: {error}") from None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}


def _check_choice(name: str, value: str, known: Any) -> None:
    if value not in known:
        raise ValueError(f"acquisition parameter {name}={value!r} is not one of: {', '.join(sorted(known))}")


def _check_range(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    bad = value <= low if low_open else value < low
    if bad or value > high or value != value:
        bracket = "(" if low_open else "["
        raise ValueError(f"acquisition parameter {name}={value!r} must be in {bracket}{low}, {high}]")


@dataclass
class ImageScores:
    """Result of :func:`score_image`. Tensors live on the summary's device (superpixels on CPU).

    Attributes:
        score_map: ``[H, W]`` float32 heuristic map (higher = more informative), before class balancing.
        weight_map: ``[H, W]`` class-balance weights, or None when ``class_balance="none"``.
        image_score: the task's queue score, higher = served earlier: the reduction of ``score_map * weight_map``
            over the image (``task_order="score"``), or a uniform draw in ``[0, maximum)`` of the heuristic, seeded
            by the config seed and the image's content (``task_order="random"``: the same image keeps its draw
            across model versions).
        predicted: ``[H, W]`` int64 argmax of the MC mean.
        superpixels: ``[H, W]`` int64 region ids ``0..R-1`` or None.
        region_scores: ``[R]`` reduced (weighted) scores per region, or None.
        region_costs: ``[R]`` clicks to label each region under ``label_mode``, or None.
        selected_regions: region ids proposed for labelling, in pick order, or None.
        top_pixels: ``[n, 2]`` int64 ``(row, col)`` of proposed pixels (empty when ``top_n_pixels=0``).
        top_pixel_scores: ``[n]`` their (weighted) scores.
        seed: the per-image seed actually used.
    """

    score_map: torch.Tensor
    weight_map: torch.Tensor | None
    image_score: float
    predicted: torch.Tensor
    superpixels: torch.Tensor | None
    region_scores: torch.Tensor | None
    region_costs: torch.Tensor | None
    selected_regions: torch.Tensor | None
    top_pixels: torch.Tensor
    top_pixel_scores: torch.Tensor
    seed: int


def image_seed(seed: int, digest: str) -> int:
    """Per-image seed: the config seed mixed with the image's content hash (63-bit, reproducible)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{digest}".encode()).digest()[:8], "big") >> 1


def _class_balance_weights(
    config: AcquisitionConfig,
    summary: MCSummary,
    predicted: torch.Tensor,
    superpixels: torch.Tensor | None,
    class_prior: torch.Tensor | None,
    dominant_share: torch.Tensor | None,
) -> torch.Tensor | None:
    num_classes = summary.num_classes
    if config.class_balance == "pixbal":
        prior = summary.mean.mean(dim=(1, 2)) if class_prior is None else class_prior
        return pixbal_weights(predicted, prior, config.nu)
    if config.class_balance == "classbal":
        if superpixels is None:  # without regions every pixel is its own region
            return classbal_weights(predicted, dominant_share, num_classes)
        dominant = region_class_counts(predicted, superpixels, num_classes).argmax(dim=1)
        share = dominant_class_share(dominant, num_classes) if dominant_share is None else dominant_share
        return classbal_weights(dominant, share)[superpixels]
    return None


def score_image(
    summary: MCSummary,
    image_rgb: np.ndarray | None,
    config: AcquisitionConfig,
    *,
    class_prior: torch.Tensor | None = None,
    dominant_share: torch.Tensor | None = None,
    cache: SuperpixelCache | None = None,
    region_features: torch.Tensor | None = None,
) -> ImageScores:
    """Score one image from its MC summary (``summary.image_shape`` must equal the image's size).

    The heuristic runs on the summary's own grid; its map is resized to the image (:meth:`MCSummary.to_image_size`)
    before class balancing, reductions and selection, which all work at the image's size.

    Pool statistics for class balancing: ``class_prior`` (``[C]``, PixBal; see
    :func:`~ls_al_backend.acquisition.balance.class_prior`) and ``dominant_share`` (``[C]``, ClassBal; see
    :func:`~ls_al_backend.acquisition.balance.dominant_class_share`). When omitted they are estimated from this image
    alone. ``region_features`` (``[R, D]``) feed k-center diversity; by default the regions' mean class probabilities.
    """
    if summary.count < 1:
        raise ValueError("the MC summary holds no samples")
    height, width = summary.image_shape
    if image_rgb is not None and tuple(image_rgb.shape[:2]) != (height, width):
        raise ValueError(f"image is {image_rgb.shape[:2]} but the MC probabilities are {(height, width)}")
    digest = image_digest(image_rgb) if image_rgb is not None else image_digest(summary.sum_probs.cpu().numpy())
    seed = image_seed(config.seed, digest)
    generator = torch.Generator().manual_seed(seed)
    device = summary.sum_probs.device

    score_map = summary.to_image_size(get_heuristic(config.heuristic, generator=generator)(summary))
    predicted = summary.image_predicted

    superpixels = None
    if config.superpixel_method != NO_SUPERPIXELS:
        if image_rgb is None:
            raise ValueError(f"superpixel_method={config.superpixel_method!r} needs the image")
        labels = (cache or DEFAULT_CACHE).get(
            image_rgb, config.superpixel_method, config.superpixel_size, config.superpixel_count
        )
        superpixels = torch.from_numpy(labels)

    regions_on_device = None if superpixels is None else superpixels.to(device)
    weight_map = _class_balance_weights(config, summary, predicted, regions_on_device, class_prior, dominant_share)
    weighted = score_map if weight_map is None else score_map * weight_map
    if config.task_order == "random":
        draw = np.random.default_rng(image_seed(config.seed, f"task_order:{digest}")).random()
        image_score = float(draw * heuristic_maximum(config.heuristic, summary.num_classes))
    else:
        image_score = float(IMAGE_REDUCTIONS[config.image_reduction](weighted, config.top_fraction))

    unit_scores = costs = selected = None
    if regions_on_device is not None:
        unit_scores = region_scores(weighted, regions_on_device, reduce=config.region_reduction)
        costs = region_costs(predicted, regions_on_device, summary.num_classes, config.label_mode)
        selected = _select_regions(config, summary, regions_on_device, unit_scores, costs, region_features, generator)

    pixel_select = PIXEL_SELECTORS[config.pixel_selection]
    coords, pixel_scores = pixel_select(weighted, config.top_n_pixels, config.top_fraction, generator=generator)
    return ImageScores(
        score_map=score_map,
        weight_map=weight_map,
        image_score=image_score,
        predicted=predicted,
        superpixels=superpixels,
        region_scores=unit_scores,
        region_costs=costs,
        selected_regions=selected,
        top_pixels=coords,
        top_pixel_scores=pixel_scores,
        seed=seed,
    )


def _select_regions(
    config: AcquisitionConfig,
    summary: MCSummary,
    regions: torch.Tensor,
    scores: torch.Tensor,
    costs: torch.Tensor,
    region_features: torch.Tensor | None,
    generator: torch.Generator,
) -> torch.Tensor:
    k = config.top_k_regions
    if config.diversity == "kcenter":
        # shortlist by the usual rule, then spread the k picks over feature space
        shortlist = select_units(
            scores,
            k=4 * k,
            costs=costs,
            budget=config.budget,
            sampling=config.sampling,
            temperature=config.temperature,
            generator=generator,
        )
        if region_features is None:
            region_features = region_scores_by_class(summary, regions)
        picks = k_center_greedy(region_features[shortlist], k, scores=scores[shortlist])
        chosen = shortlist[picks]
        if config.budget is not None:  # keep the prefix that fits the budget
            within = torch.cumsum(costs[chosen].to(torch.float64), 0) <= config.budget + 1e-9
            chosen = chosen[within]
        return chosen
    return select_units(
        scores,
        k=k,
        costs=costs,
        budget=config.budget,
        sampling=config.sampling,
        temperature=config.temperature,
        generator=generator,
    )


def region_scores_by_class(summary: MCSummary, regions: torch.Tensor) -> torch.Tensor:
    """``[R, C]`` mean class probabilities of each region (default region features for k-center)."""
    return region_means_by_class(summary.to_image_size(summary.mean), regions)
