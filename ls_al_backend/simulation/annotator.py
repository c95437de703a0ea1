"""The simulated annotator: what a person answering each kind of query produces from the ground truth, and what
it costs them in clicks (ground truth ``gt``, void pixels = IGNORE).

* ``image``: the annotator outlines every ground-truth region as a polygon (Cai et al., CVPR 2021): regions of at
  least :data:`POLYGON_MIN_REGION` pixels get their class, smaller ones and void stay unlabelled. Cost: the
  outlines' vertices after Douglas-Peucker at :data:`POLYGON_TOLERANCE` pixels (:func:`trace_polygons`).
* ``superpixel_dominant``: a region gets its majority non-void class on every pixel of the region (void and
  minority pixels included, as a one-click answer paints them; an all-void region stays unlabelled). Cost: 1 click.
* ``superpixel_multiclass``: a region gets the set of classes present in the region eroded by
  ``boundary_erosion`` pixels (3x3 cross), so classes that only touch its boundary are left out (MulActSeg); the
  majority class is always in the set. A one-class set also labels the region's pixels. Cost: one click per class
  ticked (at least 1).
* ``pixels``: a pixel gets its ground-truth class (a void pixel stays unlabelled). Cost: 1 click.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage import measure

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget
from ls_al_backend.simulation.data import Example


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
