"""Pool-based active-learning simulation with an annotator simulated from ground-truth masks.

The simulation runs exactly the server's code path: :func:`~ls_al_backend.model.inference.mc_dropout` and
:func:`~ls_al_backend.acquisition.api.score_image` score every unlabelled unit of the pool,
:func:`~ls_al_backend.acquisition.selection.select_units` picks across the whole pool under a budget (clicks by
default, or labelled pixels with ``budget_unit="pixels"``), and
:func:`~ls_al_backend.model.training.train` trains on :class:`~ls_al_backend.labeling.annotations.LabelTarget` s.

Query modes and the simulated annotator (ground truth ``gt``, void pixels = ``ignore_index``):

* ``image``: a chosen image gets its dense ground truth (void stays unlabelled). Cost: the image's number of
  superpixels (the acquisition's superpixel settings; SLIC when ``superpixel_method`` is ``none``), i.e. what
  labelling it region by region with one click each would cost.
* ``superpixel_dominant``: a chosen region gets its majority non-void ground-truth class, on every pixel of the
  region (void pixels included; an all-void region stays unlabelled). Cost: ``region_costs`` with
  ``label_mode="dominant"`` (1 click).
* ``superpixel_multiclass``: a chosen region gets the set of ground-truth classes present in the region eroded by
  ``boundary_erosion`` pixels (3x3 structuring element), so classes that only touch the region's boundary are left
  out (MulActSeg's construction); the majority class is always in the set (it also counts when the erosion
  empties the region). A one-class set also labels the region's pixels. Cost: ``region_costs`` with
  ``label_mode="multiclass"`` (one click per PREDICTED class, the engine's estimate used for selection);
  ``annotator_clicks_cumulative`` records the size of the revealed candidate sets.
* ``pixels``: a chosen pixel gets its ground-truth class (a void pixel stays unlabelled). Cost: 1 click.
  Candidates per image are the engine's pixel selector (``pixel_selection``: ``top`` or ``pixelpick``) over the
  class-balanced score map with labelled pixels masked, at most ``budget`` per image.

Round 0 picks units uniformly at random under ``initial_budget``; every later round scores with the current model
and picks under ``budget``. Results (``results.json``, ``rounds.csv``) and the state needed to resume (labelled
units and the model of every round, under ``state/``) are written after every round.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage import measure

from ls_al_backend.acquisition.api import AcquisitionConfig, score_image
from ls_al_backend.acquisition.balance import class_prior, dominant_class_share
from ls_al_backend.acquisition.reductions import PIXEL_SELECTORS, region_class_counts
from ls_al_backend.acquisition.sampling import stochastic_sample
from ls_al_backend.acquisition.selection import budgeted_greedy
from ls_al_backend.acquisition.superpixels import SuperpixelCache
from ls_al_backend.labeling.annotations import IGNORE, LabelTarget
from ls_al_backend.labeling.config import QueryMode
from ls_al_backend.model.inference import mc_dropout, pad_to_multiple, to_tensor
from ls_al_backend.model.network import NetworkSpec, SegmentationNet, build_network, select_device
from ls_al_backend.model.precision import PRECISIONS, resolve_precision
from ls_al_backend.model.semi_supervised import SEMI_SUPERVISED_MODES
from ls_al_backend.model.training import TrainConfig, TrainingSample, train

CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)

#: Simulation query modes -> the training mode used for them.
QUERY_MODES: dict[str, QueryMode] = {
    "image": QueryMode.DENSE_BRUSH,
    "superpixel_dominant": QueryMode.DENSE_BRUSH,
    "superpixel_multiclass": QueryMode.SUPERPIXEL_MULTICLASS,
    "pixels": QueryMode.DENSE_BRUSH,
}

#: Named settings for ``simulate --preset`` (explicit options win). ``superpixel_size`` goes into the acquisition
#: mapping unless it sets one. Measured run times are in ``benchmarks/active_learning.md``.
PRESETS: dict[str, dict[str, Any]] = {
    # CamVid on 2 CPU cores: half resolution (240x180, ~170 superpixels per image), 5 rounds of 600 clicks (3000
    # in all: about 5% of the clicks that answering every superpixel of the pool costs). Every round fine-tunes the
    # last round's network by the server's rule: 8 epochs over the labelled images, at least 300 steps of 8
    # crops of 128x128 that hold labels. The reference trains 40 epochs over the whole pool (and 20, to show
    # how much doubling adds).
    "cpu": {
        "resolution": 240,
        "crop_size": 128,
        "rounds": 5,
        "budget": 600.0,
        "initial_budget": 600.0,
        "epochs": 8,
        "min_steps": 300,
        "reference_epochs": 40,
        "batch_size": 8,
        "mc_samples": 20,
        "superpixel_size": 16,
    },
    # Close to PixelPick's CamVid setting: full resolution (480x360), the model retrained from ImageNet weights for
    # 50 epochs every round. Not run yet (no GPU here).
    "gpu": {
        "resolution": 480,
        "rounds": 6,
        "budget": 1000.0,
        "initial_budget": 1000.0,
        "epochs": 50,
        "min_steps": 1000,
        "reference_epochs": 100,
        "batch_size": 8,
        "mc_samples": 20,
        "warm_start": False,
        "superpixel_size": 32,
    },
}

#: What a budget counts: annotator clicks (each mode's cost model) or labelled pixels (a unit's pixel count).
BUDGET_UNITS = ("clicks", "pixels")

#: Fields that may differ between a run and the run it resumes.
RESUMABLE_FIELDS = ("rounds", "device", "precision", "out_dir", "keep_all_checkpoints")


@dataclass(frozen=True)
class SimulationConfig:
    """One simulated active-learning run (one strategy, one seed).

    Budgets are in clicks (see the module docstring for each mode's cost) or, with ``budget_unit="pixels"``, in
    labelled pixels (an image's, a superpixel's or 1 for a pixel query); result rows count clicks either way.
    ``rounds`` counts every round, the random initial round 0 included. ``resolution`` is the longest side images
    and masks are resized to (never up); training crops are ``crop_size`` square (None: ``resolution``), placed
    to hold a labelled pixel.
    ``acquisition`` is passed to :meth:`AcquisitionConfig.from_mapping`; the simulation overrides ``label_mode``
    (from ``query_mode``), ``top_k_regions``/``top_n_pixels``/``budget`` (selection happens over the whole pool)
    and ``seed`` (derived from ``seed`` and the round). ``max_units_per_image`` caps the units one image may give
    per round (``select_units`` groups). ``pool_limit`` / ``eval_limit`` keep that many images, evenly spaced in
    file-name order. Every round's labelled units are kept under ``state/``; its model only for the last round
    unless ``keep_all_checkpoints`` (about 23 MB each for the default network). Each round trains by the server's
    rule (:func:`~ls_al_backend.model.training.train`): ``epochs`` passes over every labelled image, at least
    ``min_steps`` optimizer steps, nothing held out. The fully supervised reference trains ``reference_epochs``
    epochs (None: ``rounds * epochs``) over the whole pool, and half as many to show how far from converged it is.
    ``semi_supervised="mean_teacher"`` passes every pool image to training as unlabelled (the reference stays
    supervised).
    """

    pool_dir: str
    eval_dir: str
    out_dir: str
    query_mode: str = "superpixel_dominant"
    acquisition: Mapping[str, Any] = field(default_factory=lambda: {"heuristic": "predictive_entropy"})
    budget: float = 100.0
    initial_budget: float = 100.0
    budget_unit: str = "clicks"
    rounds: int = 5
    seed: int = 0
    class_names: tuple[str, ...] = CAMVID_CLASSES
    ignore_index: int = 11
    resolution: int = 240
    crop_size: int | None = None
    pool_limit: int | None = None
    eval_limit: int | None = None
    max_units_per_image: int | None = None
    boundary_erosion: int = 2
    epochs: int = 10
    min_steps: int = 0
    reference_epochs: int | None = None
    stage2_epochs: int = 5
    batch_size: int = 4
    lr: float = 1e-3
    class_weighting: str = "none"
    semi_supervised: str = "none"
    mc_samples: int = 20
    mc_resolution: float = 0.25
    warm_start: bool = True
    arch: str = "Unet"
    encoder: str = "timm-tf_efficientnet_lite0"
    encoder_weights: str = "imagenet"
    head_dropout: float = 0.2
    device: str = "auto"
    precision: str = "auto"
    name: str | None = None
    keep_all_checkpoints: bool = False

    def __post_init__(self) -> None:
        if self.query_mode not in QUERY_MODES:
            raise ValueError(f"query_mode {self.query_mode!r} is not one of: {', '.join(QUERY_MODES)}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.budget <= 0 or self.initial_budget <= 0:
            raise ValueError("budget and initial_budget must be > 0")
        if self.budget_unit not in BUDGET_UNITS:
            raise ValueError(f"budget_unit must be one of {', '.join(BUDGET_UNITS)}, got {self.budget_unit!r}")
        if self.resolution < 32:
            raise ValueError(f"resolution must be >= 32, got {self.resolution}")
        if self.boundary_erosion < 0 or self.mc_samples < 1:
            raise ValueError("boundary_erosion must be >= 0 and mc_samples >= 1")
        if self.reference_epochs is not None and self.reference_epochs < 1:
            raise ValueError(f"reference_epochs must be >= 1, got {self.reference_epochs}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {self.min_steps}")
        if self.max_units_per_image is not None and self.max_units_per_image < 1:
            raise ValueError("max_units_per_image must be >= 1")
        if self.semi_supervised not in SEMI_SUPERVISED_MODES:
            raise ValueError(f"semi_supervised must be one of {', '.join(SEMI_SUPERVISED_MODES)}")
        base = self.acquisition_config(0)  # validates the mapping
        if self.query_mode.startswith("superpixel") and base.superpixel_method == "none":
            raise ValueError(f"query_mode {self.query_mode!r} needs superpixels (superpixel_method is 'none')")
        if base.diversity != "none":
            raise ValueError("diversity='kcenter' is per image in the engine; the simulation's pool selection has none")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_mode(self) -> QueryMode:
        return QUERY_MODES[self.query_mode]

    @property
    def strategy(self) -> str:
        """Name of the strategy (one line per strategy in the plots): ``name`` or mode + heuristic + balance
        (+ sampling, + ``mean_teacher``)."""
        if self.name:
            return self.name
        acquisition = self.acquisition_config(0)
        parts = [self.query_mode, acquisition.heuristic]
        if acquisition.class_balance != "none":
            parts.append(acquisition.class_balance)
        if acquisition.sampling != "top":
            parts.append(acquisition.sampling)
        if self.semi_supervised != "none":
            parts.append(self.semi_supervised)
        return ":".join(parts)

    def acquisition_config(self, round_index: int) -> AcquisitionConfig:
        mapping = dict(self.acquisition)
        if self.query_mode in ("image", "pixels"):
            mapping.setdefault("superpixel_method", "none")
        return AcquisitionConfig.from_mapping(
            mapping,
            label_mode="multiclass" if self.query_mode == "superpixel_multiclass" else "dominant",
            top_k_regions=0,
            top_n_pixels=0,
            budget=None,
            seed=derive_seed(self.seed, "acquisition", round_index) % (2**31),
        )

    def network_spec(self) -> NetworkSpec:
        return NetworkSpec(self.arch, self.encoder, self.num_classes, self.head_dropout, self.encoder_weights)

    def train_config(self, round_index: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            min_steps=self.min_steps,
            precision=self.precision,
            stage2_epochs=self.stage2_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            crop_size=self.crop_size or self.resolution,
            class_weighting=self.class_weighting,
            semi_supervised=self.semi_supervised,
            seed=derive_seed(self.seed, "train", round_index) % (2**31),
        )

    def reference_train_config(self, share: float = 1.0) -> TrainConfig:
        """The reference's training: ``reference_epochs`` (or ``rounds * epochs``) times ``share``, at least 1."""
        epochs = max(1, round(share * (self.reference_epochs or self.rounds * self.epochs)))
        return dataclasses.replace(
            self.train_config(0), epochs=epochs, min_steps=0, stage2_epochs=0, semi_supervised="none"
        )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["acquisition"] = dict(self.acquisition)
        values["class_names"] = list(self.class_names)
        return values


def config_from_preset(preset: str | None, **options: Any) -> SimulationConfig:
    """A :class:`SimulationConfig` from a :data:`PRESETS` entry (or none) overridden by ``options`` that are not
    None; ``options`` must hold ``pool_dir``, ``eval_dir`` and ``out_dir``."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is not one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset]) if preset else {}
    superpixel_size = values.pop("superpixel_size", None)
    values |= {key: value for key, value in options.items() if value is not None}
    acquisition = dict(values.get("acquisition") or {})
    if superpixel_size is not None:
        acquisition.setdefault("superpixel_size", superpixel_size)
    values["acquisition"] = acquisition or {"heuristic": "predictive_entropy"}
    return SimulationConfig(**values)


def derive_seed(*parts: Any) -> int:
    """A reproducible 63-bit seed from any printable parts."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big") >> 1


# --------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class Example:
    """One image at simulation resolution: ``image`` ``[H, W, 3]`` uint8 and ``gt`` ``[H, W]`` int64 (void=IGNORE)."""

    name: str
    image: np.ndarray
    gt: np.ndarray


def _resize_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_split(folder: str | Path, resolution: int, ignore_index: int = 11, limit: int | None = None) -> list[Example]:
    """``<folder>/images/<stem>.jpg|png`` and ``<folder>/masks/<stem>.png``, resized to longest side ``resolution``
    (bilinear / nearest). Mask values ``ignore_index`` and ``>= 255`` become :data:`IGNORE`."""
    root = Path(folder)
    paths = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise ValueError(f"no images under {root / 'images'}")
    if limit is not None and limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    examples = []
    for path in paths:
        mask_path = root / "masks" / f"{path.stem}.png"
        if not mask_path.is_file():
            raise ValueError(f"image {path.name} has no mask {mask_path}")
        image = Image.open(path).convert("RGB")
        mask = Image.open(mask_path)
        if mask.size != image.size:
            raise ValueError(f"{mask_path.name} is {mask.size}, its image {image.size}")
        size = _resize_size(*image.size, resolution)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
            mask = mask.resize(size, Image.NEAREST)
        gt = np.asarray(mask, dtype=np.int64).copy()
        if gt.ndim != 2:
            raise ValueError(f"{mask_path.name} must be a single-channel mask of class ids")
        gt[(gt == ignore_index) | (gt >= 255) | (gt < 0)] = IGNORE
        examples.append(Example(path.stem, np.asarray(image, dtype=np.uint8), gt))
    return examples


# --------------------------------------------------------------------------------------------------------------
# Simulated annotator


def dominant_class(gt_region: np.ndarray, num_classes: int) -> int | None:
    """Majority non-void class of the ground-truth pixels given (1-D), lowest id on ties; None if all void."""
    valid = gt_region[gt_region != IGNORE]
    if valid.size == 0:
        return None
    return int(np.bincount(valid, minlength=num_classes).argmax())


def multiclass_candidates(gt: np.ndarray, region_mask: np.ndarray, num_classes: int, erosion: int = 2) -> np.ndarray:
    """``[C]`` bool: the classes the annotator ticks for a region (see the module docstring); all False if void."""
    candidates = np.zeros(num_classes, dtype=bool)
    majority = dominant_class(gt[region_mask], num_classes)
    if majority is None:
        return candidates
    core = ndimage.binary_erosion(region_mask, iterations=erosion) if erosion > 0 else region_mask
    present = gt[core]
    present = present[present != IGNORE]
    candidates[np.unique(present)] = True
    candidates[majority] = True
    return candidates


#: Whole-image annotation by polygons (Cai et al., CVPR 2021): regions smaller than this many pixels are not traced
#: (they stay unlabelled), and a traced outline keeps a vertex wherever it leaves the boundary by this many pixels.
POLYGON_MIN_REGION = 20
POLYGON_TOLERANCE = 1.5


def trace_polygons(gt: np.ndarray, num_classes: int) -> tuple[np.ndarray, int]:
    """What an annotator who outlines every ground-truth region of an image as a polygon produces, and its cost.

    Every connected region (8-connected) of one class with at least :data:`POLYGON_MIN_REGION` pixels is traced;
    its outline (and those of its holes) simplified with Douglas-Peucker at :data:`POLYGON_TOLERANCE` pixels costs
    one click per vertex. Returns the labels ``[H, W]`` (the traced regions' classes, IGNORE elsewhere: void and
    regions too small to trace) and the vertex count.
    """
    labels = np.full(gt.shape, IGNORE, dtype=np.int64)
    vertices = 0
    for class_id in range(num_classes):
        components, count = ndimage.label(gt == class_id, structure=np.ones((3, 3), dtype=bool))
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())
        for component in np.flatnonzero(sizes >= POLYGON_MIN_REGION):
            if component == 0:
                continue
            mask = components == component
            labels[mask] = class_id
            rows, cols = np.nonzero(mask)
            window = np.pad(mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], 1).astype(np.float32)
            for contour in measure.find_contours(window, 0.5):
                polygon = measure.approximate_polygon(contour, POLYGON_TOLERANCE)
                vertices += max(3, len(polygon) - 1)  # closed: the last point repeats the first
    return labels, vertices


def multiclass_candidate_matrix(
    gt: np.ndarray, superpixels: np.ndarray, num_classes: int, erosion: int = 2
) -> np.ndarray:
    """``[R, C]`` bool: :func:`multiclass_candidates` of every region of ``superpixels`` at once (rows all False
    for all-void regions). The core of a region is where the diamond of radius ``erosion`` around the pixel lies
    wholly in the region and inside the image, as ``erosion`` iterations of a 3x3 cross erosion give."""
    regions = int(superpixels.max()) + 1
    valid = gt != IGNORE
    counts = np.bincount(superpixels[valid] * num_classes + gt[valid], minlength=regions * num_classes).reshape(
        regions, num_classes
    )
    if erosion > 0:
        diamond = ndimage.iterate_structure(ndimage.generate_binary_structure(2, 1), erosion)
        high = ndimage.maximum_filter(superpixels, footprint=diamond, mode="constant", cval=-1)
        low = ndimage.minimum_filter(superpixels, footprint=diamond, mode="constant", cval=-1)
        core = (high == low) & (low >= 0)
    else:
        core = np.ones(gt.shape, dtype=bool)
    inner = core & valid
    present = (
        np.bincount(superpixels[inner] * num_classes + gt[inner], minlength=regions * num_classes).reshape(
            regions, num_classes
        )
        > 0
    )
    has_label = counts.sum(axis=1) > 0
    present[np.flatnonzero(has_label), counts[has_label].argmax(axis=1)] = True
    present[~has_label] = False
    return present


@dataclass
class ImageLabels:
    """What the simulated annotator revealed for one pool image, in reveal order."""

    dense: bool = False
    regions: list[int] = field(default_factory=list)
    pixels: list[tuple[int, int]] = field(default_factory=list)


def build_target(
    example: Example, revealed: ImageLabels, superpixels: np.ndarray | None, mode: str, num_classes: int, erosion: int
) -> tuple[LabelTarget, int]:
    """The :class:`LabelTarget` of one image from what was revealed, and the annotator's clicks for it."""
    gt = example.gt
    labels = np.full(gt.shape, IGNORE, dtype=np.int64)
    if mode == "image":
        if not revealed.dense:
            return LabelTarget(labels), 0
        traced, vertices = trace_polygons(gt, num_classes)
        return LabelTarget(traced), vertices
    if mode == "pixels":
        for row, col in revealed.pixels:
            labels[row, col] = gt[row, col]
        return LabelTarget(labels), len(revealed.pixels)
    assert superpixels is not None
    if mode == "superpixel_dominant":
        for region in revealed.regions:
            mask = superpixels == region
            majority = dominant_class(gt[mask], num_classes)
            if majority is not None:
                labels[mask] = majority
        return LabelTarget(labels), len(revealed.regions)
    region_ids = np.full(gt.shape, -1, dtype=np.int64)
    rows: list[np.ndarray] = []
    answers = multiclass_candidate_matrix(gt, superpixels, num_classes, erosion)
    for region in revealed.regions:
        mask = superpixels == region
        candidates = answers[region]
        if not candidates.any():
            continue
        region_ids[mask] = len(rows)
        rows.append(candidates)
        if candidates.sum() == 1:
            labels[mask] = int(np.flatnonzero(candidates)[0])
    matrix = np.stack(rows) if rows else np.zeros((0, num_classes), dtype=bool)
    clicks = int(np.maximum(answers[revealed.regions].sum(axis=1), 1).sum()) if revealed.regions else 0
    return LabelTarget(labels, region_ids, matrix), clicks


# --------------------------------------------------------------------------------------------------------------
# Metrics


def confusion_matrix(predicted: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` int64 counts (rows: ground truth, columns: prediction); pixels with ``gt == IGNORE`` skipped."""
    valid = (gt != IGNORE) & (gt >= 0) & (gt < num_classes)
    index = gt[valid].astype(np.int64) * num_classes + predicted[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """``[C]`` IoU = TP / (TP + FP + FN); NaN for a class absent from both ground truth and prediction."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean of the defined per-class IoUs (NaN classes left out)."""
    ious = iou_per_class(confusion)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


@torch.no_grad()
def predict_classes(net: SegmentationNet, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Argmax ``[H, W]`` of one deterministic (dropout-off) pass."""
    net.eval()
    height, width = image.shape[:2]
    batch = pad_to_multiple(to_tensor(image)[None].to(device), net.output_stride)
    logits = net(batch)[0, :, :height, :width]
    return logits.argmax(dim=0).cpu().numpy()


def evaluate(net: SegmentationNet, examples: Sequence[Example], num_classes: int, device: torch.device) -> np.ndarray:
    """Confusion matrix of the network over ``examples`` (void ignored)."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for done, example in enumerate(examples, 1):
        confusion += confusion_matrix(predict_classes(net, example.image, device), example.gt, num_classes)
        progress_bar("evaluating", done, len(examples))
    return confusion


# --------------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class _Units:
    """Candidate units of one round: image index, unit (region id / flat pixel / 0), score, the cost the ranking
    divides by (the engine's estimate: predicted classes for multi-class regions, else the clicks), the annotator's
    clicks (from the ground truth) and what the budget is charged (the clicks, or the unit's pixels)."""

    images: list[int] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    estimated_costs: list[float] = field(default_factory=list)
    clicks: list[float] = field(default_factory=list)
    charges: list[float] = field(default_factory=list)

    def extend(
        self,
        image: int,
        units: Iterable[int],
        scores: Iterable[float],
        estimated_costs: Iterable[float],
        clicks: Iterable[float],
        charges: Iterable[float],
    ) -> None:
        units = list(units)
        self.images += [image] * len(units)
        self.units += units
        self.scores += list(scores)
        self.estimated_costs += list(estimated_costs)
        self.clicks += list(clicks)
        self.charges += list(charges)


def log_line(line: str) -> None:
    """The default log: one line on stdout, flushed (runs are often followed through a redirected log file)."""
    print(line, flush=True)


def progress_bar(label: str, done: int, total: int) -> None:
    """Redraw a one-line progress bar on stderr; silent unless stderr is a terminal (logs get the round lines)."""
    if not sys.stderr.isatty():
        return
    filled = 30 * done // max(total, 1)
    sys.stderr.write(f"\r{label:<12} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
    sys.stderr.write("\n" if done >= total else "")
    sys.stderr.flush()


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    return value


class Simulation:
    """A resumable run of :class:`SimulationConfig`; :meth:`run` returns the rows of every finished round."""

    def __init__(self, config: SimulationConfig, log: Callable[[str], None] | None = log_line):
        self.config = config
        self.log = log or (lambda _line: None)
        self.out = Path(config.out_dir)
        self.device = select_device(config.device)
        self.pool = load_split(config.pool_dir, config.resolution, config.ignore_index, config.pool_limit)
        self.eval = load_split(config.eval_dir, config.resolution, config.ignore_index, config.eval_limit)
        self.cache = SuperpixelCache(max_items=len(self.pool) + 16)
        self.revealed = [ImageLabels() for _ in self.pool]
        self.total_pixels = sum(example.gt.size for example in self.pool)
        self.precision = resolve_precision(self.device, config.precision)
        self._polygon_clicks: dict[int, int] = {}
        self._region_answers: dict[int, np.ndarray] = {}

    # --- superpixels and costs ---

    def superpixels(self, index: int) -> np.ndarray:
        """The image's superpixels under the acquisition's settings (SLIC when its method is ``none``), cached."""
        acquisition = self.config.acquisition_config(0)
        method = "slic" if acquisition.superpixel_method == "none" else acquisition.superpixel_method
        return self.cache.get(self.pool[index].image, method, acquisition.superpixel_size, acquisition.superpixel_count)

    # --- state ---

    def _state_path(self, round_index: int) -> Path:
        return self.out / "state" / f"round_{round_index:03d}.json"

    def _model_path(self, round_index: int) -> Path:
        return self.out / "state" / f"model_{round_index:03d}.pt"

    def _results(self) -> dict[str, Any]:
        path = self.out / "results.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _check_config(self) -> None:
        path = self.out / "config.json"
        mine = {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_FIELDS}
        if path.is_file():
            # a field added after the run was started reads as its default
            defaults = {
                spec.name: spec.default
                for spec in dataclasses.fields(SimulationConfig)
                if spec.default is not dataclasses.MISSING
            }
            saved = {**defaults, **json.loads(path.read_text())}
            saved = {k: v for k, v in saved.items() if k not in RESUMABLE_FIELDS}
            if saved != mine:
                changed = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
                raise ValueError(
                    f"{self.out} holds a run with other settings ({', '.join(changed)}); use a new out dir"
                )
        _write_atomic(path, json.dumps(self.config.to_dict(), indent=2).encode())

    def _save_round(self, round_index: int, net: SegmentationNet, rows: list[dict[str, Any]]) -> None:
        state = [dataclasses.asdict(labels) for labels in self.revealed]
        _write_atomic(self._state_path(round_index), json.dumps({"round": round_index, "images": state}).encode())
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        _write_atomic(self._model_path(round_index), buffer.getvalue())
        payload = {"kind": "active_learning", "strategy": self.config.strategy, "seed": self.config.seed}
        payload |= {"config": self.config.to_dict(), "rows": rows}
        _write_atomic(self.out / "results.json", json.dumps(_json_value(payload), indent=2).encode())
        _write_atomic(self.out / "rounds.csv", rows_to_csv(rows, self.config.class_names).encode())
        if not self.config.keep_all_checkpoints:  # resuming needs only the last round's model
            for older in range(round_index):
                self._model_path(older).unlink(missing_ok=True)

    def _restore(self) -> tuple[list[dict[str, Any]], SegmentationNet | None]:
        rows = self._results().get("rows", [])
        while rows:
            last = rows[-1]["round"]
            if self._state_path(last).is_file() and self._model_path(last).is_file():
                break
            rows = rows[:-1]
        if not rows:
            return [], None
        last = rows[-1]["round"]
        state = json.loads(self._state_path(last).read_text())["images"]
        self.revealed = [
            ImageLabels(item["dense"], list(item["regions"]), [tuple(p) for p in item["pixels"]]) for item in state
        ]
        net = build_network(self.config.network_spec(), seed=self.config.seed)
        net.load_state_dict(torch.load(self._model_path(last), map_location="cpu", weights_only=True))
        net.to(self.device).eval()
        self.log(f"resuming {self.out} after round {last}")
        return rows, net

    # --- scoring and selection ---

    def _mc_summary(self, net: SegmentationNet, index: int, round_index: int):
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(derive_seed(self.config.seed, "mc", round_index, index) % (2**63))
            return mc_dropout(
                net,
                self.pool[index].image,
                self.config.mc_samples,
                max_side=self.config.resolution,
                mc_scale=self.config.mc_resolution,
                precision=self.precision,
            )

    def _pool_statistics(
        self, net: SegmentationNet, round_index: int, acquisition: AcquisitionConfig
    ) -> dict[str, torch.Tensor]:
        """Pool-level class-balance statistics (a first MC pass over the pool, reproduced exactly by the second)."""
        if acquisition.class_balance == "pixbal":
            means = (self._mc_summary(net, i, round_index).mean for i in range(len(self.pool)))
            return {"class_prior": class_prior(means)}
        if acquisition.class_balance == "classbal":  # without superpixels every pixel is its own region
            dominant = []
            for index in range(len(self.pool)):
                summary = self._mc_summary(net, index, round_index)
                predicted = summary.image_predicted
                if acquisition.superpixel_method == "none":
                    dominant.append(predicted.reshape(-1).cpu())
                    continue
                regions = torch.from_numpy(self.superpixels(index)).to(predicted.device)
                counts = region_class_counts(predicted, regions, summary.num_classes)
                dominant.append(counts.argmax(dim=1).cpu())
            return {"dominant_share": dominant_class_share(torch.cat(dominant), self.config.num_classes)}
        return {}

    def _candidates(self, net: SegmentationNet, round_index: int, budget: float, random_order: bool) -> _Units:
        """Every unlabelled unit with its score and costs. With ``random_order`` (round 0 and the random baselines)
        the model is not consulted: the selection visits units in a uniform random order."""
        config, mode = self.config, self.config.query_mode
        acquisition = config.acquisition_config(round_index)
        statistics = {} if random_order else self._pool_statistics(net, round_index, acquisition)
        found = _Units()
        for index, example in enumerate(self.pool):
            progress_bar("sampling" if random_order else "scoring", index + 1, len(self.pool))
            if mode == "image" and self.revealed[index].dense:
                continue
            scores = None
            if not random_order:
                summary = self._mc_summary(net, index, round_index)
                scores = score_image(summary, example.image, acquisition, cache=self.cache, **statistics)
            if mode == "image":
                clicks = float(self.image_clicks(index))
                units, unit_scores, estimated, unit_clicks = (
                    [0],
                    [0.0 if scores is None else scores.image_score],
                    [clicks],
                    [clicks],
                )
            elif mode == "pixels":
                units, unit_scores = self._pixel_candidates(index, scores, acquisition, budget)
                estimated = unit_clicks = [1.0] * len(units)
            else:
                units, unit_scores, estimated, unit_clicks = self._region_candidates(index, scores)
            charges = unit_clicks if config.budget_unit == "clicks" else self._pixel_counts(index, units)
            found.extend(index, units, unit_scores, estimated, unit_clicks, charges)
        return found

    def image_clicks(self, index: int) -> int:
        """Clicks to outline every region of pool image ``index`` as polygons (:func:`trace_polygons`), cached."""
        if index not in self._polygon_clicks:
            self._polygon_clicks[index] = trace_polygons(self.pool[index].gt, self.config.num_classes)[1]
        return self._polygon_clicks[index]

    def region_answers(self, index: int) -> np.ndarray:
        """``[R, C]`` the classes the annotator ticks in each superpixel of pool image ``index`` (multi-class)."""
        if index not in self._region_answers:
            self._region_answers[index] = multiclass_candidate_matrix(
                self.pool[index].gt, self.superpixels(index), self.config.num_classes, self.config.boundary_erosion
            )
        return self._region_answers[index]

    def full_annotation_clicks(self) -> float:
        """Clicks that labelling the whole pool costs under this mode's cost model: every image traced, every
        superpixel answered (one click, or one per class ticked) or every pixel clicked."""
        mode = self.config.query_mode
        if mode == "image":
            return float(sum(self.image_clicks(i) for i in range(len(self.pool))))
        if mode == "pixels":
            return float(self.total_pixels)
        if mode == "superpixel_dominant":
            return float(sum(int(self.superpixels(i).max()) + 1 for i in range(len(self.pool))))
        return float(sum(np.maximum(self.region_answers(i).sum(axis=1), 1).sum() for i in range(len(self.pool))))

    def _pixel_counts(self, index: int, units: list[int]) -> list[float]:
        """Pixels each unit of pool image ``index`` labels: the image, a superpixel or 1."""
        if self.config.query_mode == "image":
            return [float(self.pool[index].gt.size)] * len(units)
        if self.config.query_mode == "pixels":
            return [1.0] * len(units)
        sizes = np.bincount(self.superpixels(index).ravel())
        return [float(sizes[unit]) for unit in units]

    def _region_candidates(self, index: int, scores: Any) -> tuple[list[int], list[float], list[float], list[float]]:
        """Unlabelled regions of image ``index``: scores (0 without a model), the engine's cost estimate (the
        annotator's clicks without a model) and the annotator's clicks (1, or one per class ticked)."""
        count = int(self.superpixels(index).max() + 1)
        if self.config.query_mode == "superpixel_multiclass":
            clicks = torch.from_numpy(np.maximum(self.region_answers(index).sum(axis=1), 1).astype(np.float32))
        else:
            clicks = torch.ones(count)
        estimated = clicks if scores is None else scores.region_costs.detach().cpu().float()
        unit_scores = torch.zeros(count) if scores is None else scores.region_scores.detach().cpu()
        labelled = set(self.revealed[index].regions)
        keep = [region for region in range(count) if region not in labelled]
        return keep, unit_scores[keep].tolist(), estimated[keep].tolist(), clicks[keep].tolist()

    def _pixel_candidates(
        self, index: int, scores: Any, acquisition: AcquisitionConfig, budget: float
    ) -> tuple[list[int], list[float]]:
        """Flat pixel indices of image ``index`` and their scores: without a model every unlabelled pixel (scored
        0, the selection's random order decides), else the engine's pixel selector over the class-balanced score
        map, at most ``budget`` per image."""
        height, width = self.pool[index].gt.shape
        if scores is None:  # a uniform sample of the unlabelled pixels; the selection's random order decides
            taken = np.array([row * width + col for row, col in self.revealed[index].pixels], dtype=np.int64)
            free = np.setdiff1d(np.arange(height * width), taken)
            rng = np.random.default_rng(derive_seed(self.config.seed, "random_pixels", index, acquisition.seed))
            units = rng.choice(free, size=min(int(budget), free.size), replace=False).tolist()
            return units, [0.0] * len(units)
        score_map = scores.score_map if scores.weight_map is None else scores.score_map * scores.weight_map
        score_map = score_map.detach().cpu().to(torch.float64).clone()
        for row, col in self.revealed[index].pixels:
            score_map[row, col] = -math.inf
        selector, fraction = PIXEL_SELECTORS[acquisition.pixel_selection], acquisition.top_fraction
        generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "pixels", index, acquisition.seed))
        coords, values = selector(score_map, int(budget), fraction, generator=generator)
        keep = torch.isfinite(values)
        flat = (coords[keep, 0] * width + coords[keep, 1]).tolist()
        return flat, values[keep].tolist()

    def _select(self, units: _Units, budget: float, round_index: int, random_order: bool) -> list[int]:
        """Greedy under the budget, charging each unit what the annotator really spends on it. The visiting
        order is uniform at random (``random_order``), the acquisition's stochastic sampling, or decreasing
        ``score / estimated cost`` (Cai et al.'s greedy knapsack)."""
        if not units.units:
            return []
        acquisition = self.config.acquisition_config(round_index)
        generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "select", round_index) % (2**63))
        scores = torch.tensor(units.scores, dtype=torch.float64)
        estimated = torch.tensor(units.estimated_costs, dtype=torch.float64)
        if random_order:
            order = torch.randperm(len(units.units), generator=generator)
        elif acquisition.sampling != "top":
            order = stochastic_sample(
                scores / estimated, len(units.units), acquisition.sampling, acquisition.temperature, generator
            )
        else:
            order = torch.argsort(scores / estimated, descending=True, stable=True)
        chosen = budgeted_greedy(
            scores,
            torch.tensor(units.charges, dtype=torch.float64),
            budget,
            groups=torch.tensor(units.images) if self.config.max_units_per_image else None,
            max_per_group=self.config.max_units_per_image,
            order=order,
        )
        return chosen.tolist()

    def _reveal(self, units: _Units, chosen: list[int]) -> float:
        """Reveal the chosen units to the annotator; returns the clicks spent."""
        clicks = 0.0
        for position in chosen:
            index, unit = units.images[position], units.units[position]
            revealed = self.revealed[index]
            if self.config.query_mode == "image":
                revealed.dense = True
            elif self.config.query_mode == "pixels":
                width = self.pool[index].gt.shape[1]
                revealed.pixels.append((unit // width, unit % width))
            else:
                revealed.regions.append(unit)
            clicks += units.clicks[position]
        return clicks

    # --- training ---

    def targets(self) -> tuple[list[TrainingSample], int, int]:
        """Training samples from everything revealed, the labelled pixels and the annotator's clicks."""
        samples, pixels, annotator = [], 0, 0
        for index, example in enumerate(self.pool):
            revealed = self.revealed[index]
            if not (revealed.dense or revealed.regions or revealed.pixels):
                continue
            regions = self.superpixels(index) if revealed.regions else None
            target, clicks = build_target(
                example,
                revealed,
                regions,
                self.config.query_mode,
                self.config.num_classes,
                self.config.boundary_erosion,
            )
            annotator += clicks
            if target.labelled_pixels > 0:
                pixels += target.labelled_pixels
                samples.append(TrainingSample(index, example.image, target))
        return samples, pixels, annotator

    def _train(self, net: SegmentationNet, round_index: int, samples: list[TrainingSample]):
        config = self.config
        if not config.warm_start:
            net = build_network(config.network_spec(), seed=config.seed)
        unlabelled = [example.image for example in self.pool] if config.semi_supervised != "none" else None
        return train(
            net,
            samples,
            config.train_config(round_index),
            self.device,
            _training_progress,
            mode=config.train_mode,
            unlabelled=unlabelled,
        )

    # --- run ---

    def run(self) -> list[dict[str, Any]]:
        """Run (or resume) up to ``config.rounds`` rounds; returns every finished round's row."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "state").mkdir(exist_ok=True)
        self._check_config()
        rows, net = self._restore()
        clicks_total = rows[-1]["clicks_cumulative"] if rows else 0.0
        for round_index in range(len(rows), self.config.rounds):
            started = time.monotonic()
            budget = self.config.initial_budget if round_index == 0 else self.config.budget
            if net is None:  # round 0 trains the seeded ImageNet network
                net = build_network(self.config.network_spec(), seed=self.config.seed).to(self.device)
            random_order = round_index == 0 or self.config.acquisition_config(round_index).heuristic == "random"
            units = self._candidates(net, round_index, budget, random_order)
            chosen = self._select(units, budget, round_index, random_order)
            if not chosen:
                self.log(f"round {round_index}: nothing left to label within the budget; stopping")
                break
            clicks = self._reveal(units, chosen)
            clicks_total += clicks
            samples, pixels, annotator = self.targets()
            result = self._train(net, round_index, samples)
            net = result.net
            confusion = evaluate(net, self.eval, self.config.num_classes, self.device)
            ious = iou_per_class(confusion)
            row = {
                "round": round_index,
                "strategy": self.config.strategy,
                "seed": self.config.seed,
                "units_selected": len(chosen),
                "clicks_round": clicks,
                "clicks_cumulative": clicks_total,
                "annotator_clicks_cumulative": annotator,
                "labelled_pixels": pixels,
                "labelled_pixel_share": pixels / self.total_pixels,
                "labelled_images": len(samples),
                "miou": mean_iou(confusion),
                "per_class_iou": {name: float(iou) for name, iou in zip(self.config.class_names, ious, strict=True)},
                "click_share_of_full": clicks_total / self.full_annotation_clicks(),
                "epochs_run": result.metrics["epochs_run"],
                "train_steps": result.metrics["steps"],
                "train_seconds": result.metrics["seconds"],
                "precision": result.metrics["precision"],
                "seconds": round(time.monotonic() - started, 3),
            }
            rows.append(_json_value(row))  # NaN -> None, as a resumed run reads it back
            self._save_round(round_index, net, rows)
            self.log(
                f"[{self.config.strategy} seed {self.config.seed}] round {round_index + 1}/{self.config.rounds}: "
                f"{len(chosen)} units, {clicks_total:g} clicks, {100 * row['labelled_pixel_share']:.3f}% pixels, "
                f"mIoU {100 * row['miou']:.2f} ({row['seconds']:.1f} s)"
            )
        return rows


def _training_progress(update: dict[str, Any]) -> None:
    progress_bar("training", update["epoch"], update["epochs"])


def run_simulation(config: SimulationConfig, log: Callable[[str], None] | None = log_line) -> list[dict[str, Any]]:
    """Run or resume one simulation; results land in ``config.out_dir`` (``results.json``, ``rounds.csv``)."""
    return Simulation(config, log).run()


def fully_supervised_reference(
    config: SimulationConfig, log: Callable[[str], None] | None = log_line
) -> dict[str, Any]:
    """Train on every pool label (dense ground truth) once; writes and returns ``<out_dir>/reference.json``.

    Uses the config's network, resolution, seed and :meth:`SimulationConfig.reference_train_config` (query mode
    and acquisition are ignored), and trains a second network for half the epochs from the same start
    (``miou_at_half_steps``: a converged reference gains little from the second half). An existing
    ``reference.json`` is returned as is.
    """
    out = Path(config.out_dir)
    path = out / "reference.json"
    if path.is_file():
        return json.loads(path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda _line: None)
    started = time.monotonic()
    device = select_device(config.device)
    pool = load_split(config.pool_dir, config.resolution, config.ignore_index, config.pool_limit)
    evaluation = load_split(config.eval_dir, config.resolution, config.ignore_index, config.eval_limit)
    samples = [TrainingSample(i, example.image, LabelTarget(example.gt.copy())) for i, example in enumerate(pool)]
    runs = {}
    for share in (0.5, 1.0):  # from the same start: how much doubling the training adds
        train_config = config.reference_train_config(share)
        net = build_network(config.network_spec(), seed=config.seed)
        result = train(net, samples, train_config, device, _training_progress, QueryMode.DENSE_BRUSH)
        confusion = evaluate(result.net, evaluation, config.num_classes, device)
        runs[share] = (train_config, result, confusion)
        log(f"[fully supervised seed {config.seed}] {train_config.epochs} epochs: mIoU {100 * mean_iou(confusion):.2f}")
    train_config, result, confusion = runs[1.0]
    ious = iou_per_class(confusion)
    payload = {
        "kind": "reference",
        "strategy": "fully supervised",
        "seed": config.seed,
        "miou": mean_iou(confusion),
        "per_class_iou": {name: float(iou) for name, iou in zip(config.class_names, ious, strict=True)},
        "miou_at_half_steps": mean_iou(runs[0.5][2]),
        "labelled_pixel_share": sum(int((e.gt != IGNORE).sum()) for e in pool) / sum(e.gt.size for e in pool),
        "images": len(pool),
        "epochs_run": result.metrics["epochs_run"],
        "train_steps": result.metrics["steps"],
        "train_steps_half": runs[0.5][1].metrics["steps"],
        "precision": result.metrics["precision"],
        "seconds": round(time.monotonic() - started, 3),
        "config": config.to_dict(),
    }
    _write_atomic(path, json.dumps(_json_value(payload), indent=2).encode())
    log(f"[fully supervised seed {config.seed}] mIoU {100 * payload['miou']:.2f} ({payload['seconds']:.1f} s)")
    return payload


def rows_to_csv(rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """CSV text of result rows, one ``iou_<class>`` column per class."""
    buffer = io.StringIO()
    scalar = [key for key in (rows[0] if rows else {}) if key != "per_class_iou"]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*scalar, *(f"iou_{name}" for name in class_names)])
    for row in rows:
        ious = row.get("per_class_iou", {})
        values = [row[key] for key in scalar] + [ious.get(name) for name in class_names]
        writer.writerow(["" if value is None or value != value else value for value in values])
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------------------
# Plot


@dataclass
class ResultSet:
    """``results.json`` / ``reference.json`` files read back: every run's rows per strategy, the reference mIoUs,
    and the strategies whose heuristic is ``random`` (the baselines)."""

    strategies: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    references: list[float] = field(default_factory=list)
    randoms: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, result_files: Iterable[str | Path]) -> ResultSet:
        found = cls()
        for file in result_files:
            payload = json.loads(Path(file).read_text())
            if payload.get("kind") == "reference":
                if payload.get("miou") is not None:
                    found.references.append(float(payload["miou"]))
            elif payload.get("rows"):
                found.strategies.setdefault(payload["strategy"], []).append(payload["rows"])
                if str(payload.get("config", {}).get("acquisition", {}).get("heuristic", "")).lower() == "random":
                    found.randoms.add(payload["strategy"])
        return found


def summary_table(result_files: Iterable[str | Path]) -> str:
    """Markdown table of ``results.json`` / ``reference.json`` files: per strategy (mean over seeds) the mIoU after
    every round with its cumulative clicks and labelled pixel share, and the last mIoU as a share of the fully
    supervised reference's (when one is given)."""
    results = ResultSet.read(result_files)
    strategies, references = results.strategies, results.references
    reference = float(np.mean(references)) if references else None
    lines = [
        "| strategy | seeds | mIoU % per round (clicks; labelled pixels %) | last mIoU / fully supervised |",
        "|---|---|---|---|",
    ]
    for strategy in sorted(strategies):
        runs = strategies[strategy]
        length = min(len(rows) for rows in runs)
        cells, last = [], float("nan")
        for i in range(length):
            mious = [rows[i]["miou"] for rows in runs if rows[i]["miou"] is not None]
            last = float(np.mean(mious)) if mious else float("nan")
            clicks = np.mean([rows[i]["clicks_cumulative"] for rows in runs])
            share = np.mean([rows[i]["labelled_pixel_share"] for rows in runs])
            cells.append(f"{100 * last:.1f} ({clicks:g}; {100 * share:.3g})")
        ratio = f"{100 * last / reference:.0f}%" if reference and math.isfinite(last) else "-"
        lines.append(f"| {strategy} | {len(runs)} | {' → '.join(cells)} | {ratio} |")
    if reference is not None:
        lines.append(f"| fully supervised (every pool pixel) | {len(references)} | {100 * reference:.1f} | 100% |")
    return "\n".join(lines) + "\n"


#: What a learning-curve plot puts on its x axis: row key, axis label, scale factor, log scale.
PLOT_AXES: dict[str, tuple[str, str, float, bool]] = {
    "clicks": ("clicks_cumulative", "clicks (cumulative)", 1.0, False),
    "pixels": ("labelled_pixel_share", "labelled pixels (% of the pool, log scale)", 100.0, True),
}


def plot_learning_curves(
    result_files: Iterable[str | Path], out_png: str | Path, title: str | None = None, x_axis: str = "clicks"
) -> Path:
    """PNG of mIoU vs cumulative clicks (``x_axis="clicks"``) or vs the labelled pixel share (``"pixels"``): one
    line per strategy (mean over seeds, min-max band), strategies whose heuristic is ``random`` drawn grey (dotted,
    dash-dotted, ...) as baselines, ``reference.json`` files as a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if x_axis not in PLOT_AXES:
        raise ValueError(f"x_axis must be one of {', '.join(PLOT_AXES)}, got {x_axis!r}")
    x_key, x_label, x_scale, x_log = PLOT_AXES[x_axis]
    results = ResultSet.read(result_files)
    strategies, references, randoms = results.strategies, results.references, results.randoms

    figure, axes = plt.subplots(figsize=(8, 5))
    random_styles = iter([":", "-.", (0, (5, 2, 1, 2, 1, 2)), (0, (1, 3))] * 4)
    for strategy in sorted(strategies, key=lambda name: (name not in randoms, name)):
        runs = strategies[strategy]
        length = min(len(rows) for rows in runs)
        x = np.array([[x_scale * rows[i][x_key] for i in range(length)] for rows in runs], dtype=float).mean(axis=0)
        miou = np.array(
            [[np.nan if rows[i]["miou"] is None else 100 * rows[i]["miou"] for i in range(length)] for rows in runs]
        )
        style = {"color": "grey", "linestyle": next(random_styles)} if strategy in randoms else {}
        label = f"{strategy} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        (line,) = axes.plot(x, np.nanmean(miou, axis=0), marker="o", markersize=3, label=label, **style)
        if len(runs) > 1:
            axes.fill_between(x, np.nanmin(miou, axis=0), np.nanmax(miou, axis=0), color=line.get_color(), alpha=0.2)
    if references:
        axes.axhline(100 * float(np.mean(references)), color="black", linestyle="--", label="fully supervised")
    if x_log:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel("mIoU (%)")
    axes.set_title(title or f"Active learning: mIoU vs {x_label.split(' (')[0]}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out
