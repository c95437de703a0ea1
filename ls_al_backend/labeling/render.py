"""Turn model outputs (numpy arrays) into the Label Studio result list of one prediction."""

from __future__ import annotations

import math

import numpy as np
from skimage.measure import find_contours

from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.labeling.results import (
    Result,
    brush_result,
    keypoint_result,
    polygon_result,
    region_choices_result,
)


def overlay_alpha(uncertainty: np.ndarray, levels: int, max_alpha: int) -> np.ndarray:
    """Graded overlay mask: ``[H, W]`` uncertainty in [0, 1] -> uint8 alpha in ``levels`` steps up to ``max_alpha``.

    Zero uncertainty stays transparent; quantising keeps the RLE (and the JSON) small.
    """
    steps = np.ceil(np.clip(uncertainty, 0.0, 1.0) * levels)
    return np.round(steps * (max_alpha / levels)).astype(np.uint8)


def resize_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[h, w]`` array -> ``[H, W]`` (``size``) by nearest neighbour: each output pixel takes the value of the input
    pixel under its centre. Masks computed on a scaled-down grid are drawn back at the image's size with it."""
    height, width = size
    if values.shape[:2] == (height, width):
        return values
    rows = ((np.arange(height) + 0.5) * values.shape[0] / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * values.shape[1] / width).astype(np.int64)
    return values[rows[:, None], cols[None, :]]


def class_mask_results(
    config: LabelTags, class_map: np.ndarray, confidence: np.ndarray, image_size: tuple[int, int] | None = None
) -> list[Result]:
    """One brush region per predicted class on the class BrushLabels tag.

    ``class_map`` ``[h, w]`` int class index; ``confidence`` ``[h, w]`` probability of that class. The
    region score is the mean confidence over the region. Masks are drawn at ``image_size`` (H, W; default the
    map's own size), scaled up by nearest neighbour from a coarser map.
    """
    if config.class_brush is None:
        return []
    image_size = image_size or class_map.shape
    results = []
    for index in np.unique(class_map):
        region = class_map == index
        results.append(
            brush_result(
                config.class_brush.name,
                config.image_tag,
                config.class_names[int(index)],
                resize_nearest(region.astype(np.uint8) * 255, image_size),
                score=float(confidence[region].mean()),
            )
        )
    return results


def region_outline(region: np.ndarray, tolerance: float = 0.25) -> np.ndarray:
    """Outline ``[N, 2]`` (x, y in pixels, image plane) of the largest connected part of a boolean mask.

    Pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``. The outline is the mask's iso-contour at
    0.5 (through the midpoints of the boundary pixel edges), simplified by less than the 0.35 px that separates
    it from any pixel centre, so a pixel centre lies inside the polygon exactly when the pixel is in the
    mask: training rasterises the polygon back to the same pixels.
    """
    padded = np.pad(region.astype(np.float32), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        raise ValueError("empty region")
    outline = douglas_peucker(max(contours, key=len), tolerance)
    rows, cols = outline[:, 0] - 1.0, outline[:, 1] - 1.0  # undo the padding
    return np.stack([cols + 0.5, rows + 0.5], axis=1)


def douglas_peucker(points: np.ndarray, tolerance: float) -> np.ndarray:
    """The points ``[N, 2]`` of a chain that Douglas-Peucker keeps at ``tolerance`` (the rule and distances of
    ``skimage.measure.approximate_polygon``: perpendicular distance where a point projects inside the chord, else
    the distance to its nearer end; the same points), in plain Python: for the ~170 points of a 32x32 superpixel's
    outline 8x faster than scikit-image's NumPy calls per step, which were half of a prediction's rendering."""
    coords = points.tolist()
    keep = [False] * len(coords)
    keep[0] = keep[-1] = True
    stack = [(0, len(coords) - 1)]
    while stack:
        start, end = stack.pop()
        (r0, c0), (r1, c1) = coords[start], coords[end]
        dr, dc = r1 - r0, c1 - c0
        angle = -math.atan2(dr, dc)
        sin_a, cos_a = math.sin(angle), math.cos(angle)
        chord = c0 * sin_a + r0 * cos_a
        farthest, farthest_index = -1.0, start
        for index in range(start + 1, end):
            r, c = coords[index]
            if (r - r0) * dr + (c - c0) * dc > 0 and -(r - r1) * dr - (c - c1) * dc > 0:
                distance = abs(r * cos_a + c * sin_a - chord)
            else:
                distance = min(math.hypot(c - c0, r - r0), math.hypot(c - c1, r - r1))
            if distance > farthest:
                farthest, farthest_index = distance, index
        if farthest > tolerance:
            stack.append((farthest_index, end))
            stack.append((start, farthest_index))
            keep[farthest_index] = True
    return points[np.asarray(keep)]


def grid_scale(image_size: tuple[int, int], grid_size: tuple[int, int] | None) -> tuple[float, float]:
    """``(scale_y, scale_x)`` from a scaled-down analysis grid (``grid_size`` h, w; None: the image's own) to the
    image (``image_size`` H, W)."""
    grid_height, grid_width = grid_size or image_size
    return image_size[0] / grid_height, image_size[1] / grid_width


def superpixel_polygons(
    config: LabelTags,
    superpixels: np.ndarray,
    regions: list[tuple[int, float]],
    image_size: tuple[int, int],
    grid_size: tuple[int, int] | None = None,
) -> list[Result]:
    """One ``polygonlabels`` query per ``(superpixel id, score)``, outlined from ``superpixels`` ``[h, w]`` on
    ``grid_size`` (default ``image_size``) and scaled up to ``image_size`` (H, W)."""
    scale_y, scale_x = grid_scale(image_size, grid_size)
    label = config.query.labels[0]
    return [
        polygon_result(
            config.query.name,
            config.image_tag,
            label,
            region_outline(superpixels == region_id) * np.array([scale_x, scale_y]),
            image_size,
            score,
        )
        for region_id, score in regions
    ]


def pixel_keypoints(
    config: LabelTags,
    pixels: list[tuple[int, int, float]],
    image_size: tuple[int, int],
    grid_size: tuple[int, int] | None = None,
) -> list[Result]:
    """One ``keypointlabels`` query per ``(row, col, score)`` of the grid (``grid_size``, default ``image_size``),
    placed at the grid pixel's centre on the image."""
    scale_y, scale_x = grid_scale(image_size, grid_size)
    label = config.query.labels[0]
    return [
        keypoint_result(
            config.query.name,
            config.image_tag,
            label,
            (col + 0.5) * scale_x - 0.5,
            (row + 0.5) * scale_y - 0.5,
            image_size,
            score,
        )
        for row, col, score in pixels
    ]


def with_empty_answers(config: LabelTags, queries: list[Result]) -> list[Result]:
    """Each query region followed by an empty per-region class answer (linked by id) for the annotator."""
    if config.region_choices is None:
        return []
    results: list[Result] = []
    for region in queries:
        results += [region, region_choices_result(config.region_choices, config.image_tag, region["id"], [])]
    return results


def overlay_results(
    config: LabelTags,
    uncertainty: np.ndarray,
    levels: int,
    max_alpha: int,
    image_size: tuple[int, int] | None = None,
) -> list[Result]:
    """The graded uncertainty overlay region, when the config has an overlay tag; ``uncertainty`` ``[h, w]`` is
    drawn at ``image_size`` (H, W; default its own size)."""
    if config.overlay is None:
        return []
    alpha = resize_nearest(overlay_alpha(uncertainty, levels, max_alpha), image_size or uncertainty.shape)
    result = brush_result(
        config.overlay.name, config.image_tag, config.overlay.labels[0], alpha, score=float(uncertainty.mean())
    )
    result["readonly"] = True
    return [result]
