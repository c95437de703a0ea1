"""Reductions: a score map ``[H, W]`` (higher = more informative) -> scores per unit.

Units are the image (one float), superpixels (one score per region id) or single pixels (the top ones). Also the
labelling cost of each unit in clicks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ImageReduction = Callable[[torch.Tensor, float], torch.Tensor]


def _check_map(score_map: torch.Tensor) -> None:
    if score_map.ndim != 2:
        raise ValueError(f"expected a score map shaped [H, W], got {tuple(score_map.shape)}")


def image_mean(score_map: torch.Tensor, top_fraction: float = 0.0) -> torch.Tensor:
    """Mean of the map (``top_fraction`` unused)."""
    _check_map(score_map)
    return score_map.mean()


def image_max(score_map: torch.Tensor, top_fraction: float = 0.0) -> torch.Tensor:
    """Maximum of the map (``top_fraction`` unused)."""
    _check_map(score_map)
    return score_map.max()


def image_topk_mean(score_map: torch.Tensor, top_fraction: float = 0.05) -> torch.Tensor:
    """Mean of the ``ceil(top_fraction * H * W)`` highest pixels (at least one)."""
    _check_map(score_map)
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    flat = score_map.reshape(-1)
    k = max(1, int(-(-top_fraction * flat.numel() // 1)))
    return torch.topk(flat, min(k, flat.numel())).values.mean()


IMAGE_REDUCTIONS: dict[str, ImageReduction] = {
    "mean": image_mean,
    "max": image_max,
    "topk_mean": image_topk_mean,
}


def _check_regions(score_map: torch.Tensor, regions: torch.Tensor) -> None:
    _check_map(score_map)
    if regions.shape != score_map.shape:
        raise ValueError(f"region ids {tuple(regions.shape)} and score map {tuple(score_map.shape)} differ in shape")


def num_regions_of(regions: torch.Tensor) -> int:
    """``R = max id + 1`` of a region map with ids ``0..R-1``."""
    return int(regions.max().item()) + 1 if regions.numel() else 0


def region_pixel_counts(regions: torch.Tensor, num_regions: int | None = None) -> torch.Tensor:
    """``[R]`` number of pixels per region id."""
    size = num_regions_of(regions) if num_regions is None else num_regions
    return torch.bincount(regions.reshape(-1).long(), minlength=size)[:size]


def region_scores(
    score_map: torch.Tensor, regions: torch.Tensor, num_regions: int | None = None, reduce: str = "mean"
) -> torch.Tensor:
    """Scatter-reduce the map by region id: ``[H, W]`` scores + ``[H, W]`` int ids -> ``[R]`` float32 on the map's
    device.

    ``reduce`` is ``"mean"`` (default; the mean uncertainty of the region's pixels, Cai et al. 2021) or ``"max"``.
    Ids absent from the map get 0. The sums run on the CPU in float64: CUDA's scatter sums add in an arbitrary
    order, so near-equal regions would swap ranks from one call to the next and the same model would query
    different regions.
    """
    _check_regions(score_map, regions)
    if reduce not in ("mean", "max"):
        raise ValueError(f"unknown region reduction {reduce!r}; known: max, mean")
    size = num_regions_of(regions) if num_regions is None else num_regions
    ids = regions.reshape(-1).long().cpu()
    out = torch.zeros(size, dtype=torch.float64)
    torch_reduce = "mean" if reduce == "mean" else "amax"
    reduced = out.scatter_reduce(0, ids, score_map.reshape(-1).cpu().double(), torch_reduce, include_self=False)
    return reduced.to(device=score_map.device, dtype=torch.float32)


def region_means_by_class(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` maps + ``[H, W]`` int ids -> ``[R, C]`` float32 mean of each map over each region, on the
    maps' device.

    The same numbers as ``region_scores`` per map, in one pass: one copy to the CPU and one float64 sum, whatever C.
    Ids absent from the map get 0.
    """
    if maps.ndim != 3 or maps.shape[1:] != regions.shape:
        raise ValueError(
            f"expected maps [C, H, W] over region ids [H, W], got {tuple(maps.shape)} and {tuple(regions.shape)}"
        )
    size = num_regions_of(regions)
    ids = regions.reshape(-1).long().cpu()
    values = maps.reshape(maps.shape[0], -1).T.cpu().double()
    sums = torch.zeros(size, maps.shape[0], dtype=torch.float64).index_add_(0, ids, values)
    counts = torch.bincount(ids, minlength=size)[:size].clamp_min(1)
    return (sums / counts[:, None]).to(device=maps.device, dtype=torch.float32)


def region_class_counts(
    predicted: torch.Tensor, regions: torch.Tensor, num_classes: int, num_regions: int | None = None
) -> torch.Tensor:
    """``[R, C]`` how many pixels of each region are predicted as each class."""
    size = num_regions_of(regions) if num_regions is None else num_regions
    flat = regions.reshape(-1).long() * num_classes + predicted.reshape(-1).long().to(regions.device)
    return torch.bincount(flat, minlength=size * num_classes)[: size * num_classes].reshape(size, num_classes)


def region_dominant_class(
    predicted: torch.Tensor, regions: torch.Tensor, num_classes: int, num_regions: int | None = None
) -> torch.Tensor:
    """``[R]`` the class predicted for most pixels of each region (ties -> lowest class id)."""
    return region_class_counts(predicted, regions, num_classes, num_regions).argmax(dim=1)


def _cost_dominant(class_counts: torch.Tensor) -> torch.Tensor:
    return torch.ones(class_counts.shape[0], dtype=torch.float32, device=class_counts.device)


def _cost_multiclass(class_counts: torch.Tensor) -> torch.Tensor:
    return (class_counts > 0).sum(dim=1).clamp_min(1).to(torch.float32)


#: Clicks to label one superpixel, by label mode, from its ``[R, C]`` predicted-class pixel counts.
REGION_COSTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "dominant": _cost_dominant,  # one click: the region's dominant class (Cai et al. CVPR 2021)
    "multiclass": _cost_multiclass,  # one click per class present (MulActSeg, Hwang et al. NeurIPS 2023)
}


def region_costs(
    predicted: torch.Tensor,
    regions: torch.Tensor,
    num_classes: int,
    label_mode: str = "dominant",
    num_regions: int | None = None,
) -> torch.Tensor:
    """``[R]`` float clicks per superpixel: 1 for ``"dominant"``; the number of distinct predicted classes in the
    region (>= 1) for ``"multiclass"``. A single pixel costs 1 click (see :func:`pixel_costs`)."""
    try:
        cost = REGION_COSTS[label_mode]
    except KeyError:
        raise ValueError(f"unknown label mode {label_mode!r}; known: {', '.join(sorted(REGION_COSTS))}") from None
    return cost(region_class_counts(predicted, regions, num_classes, num_regions))


def pixel_costs(num_pixels: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[n]`` ones: one click per labelled pixel."""
    return torch.ones(num_pixels, dtype=torch.float32, device=device)


def _flat_to_coords(flat: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack((flat // width, flat % width), dim=1)


def top_pixels(
    score_map: torch.Tensor, n: int, top_fraction: float = 0.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` highest pixels: ``(coords [n, 2] int64 (row, col), scores [n])``, best first."""
    _check_map(score_map)
    n = max(0, min(n, score_map.numel()))
    values, flat = torch.topk(score_map.reshape(-1), n)
    return _flat_to_coords(flat, score_map.shape[1]), values


def pixelpick(
    score_map: torch.Tensor, n: int, top_fraction: float = 0.05, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """PixelPick: ``n`` pixels drawn uniformly without replacement among the top ``top_fraction`` of the map.

    Shin, Lee, Kwak & Cipolla, "All you need are a few pixels: semantic segmentation with PixelPick" (ICCVW 2021).
    The candidate set has ``max(n, ceil(top_fraction * H * W))`` pixels; the draw uses ``generator`` on CPU.
    Returns ``(coords [n, 2] int64 (row, col), scores [n])`` in draw order.
    """
    _check_map(score_map)
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    total = score_map.numel()
    n = max(0, min(n, total))
    pool = min(total, max(n, int(-(-top_fraction * total // 1))))
    values, flat = torch.topk(score_map.reshape(-1), pool)
    pick = torch.randperm(pool, generator=generator)[:n].to(flat.device)
    return _flat_to_coords(flat[pick], score_map.shape[1]), values[pick]


PixelSelector = Callable[..., tuple[torch.Tensor, torch.Tensor]]

PIXEL_SELECTORS: dict[str, PixelSelector] = {
    "top": top_pixels,
    "pixelpick": pixelpick,
}
