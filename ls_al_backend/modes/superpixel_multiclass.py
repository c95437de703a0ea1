"""Superpixel queries with a multi-class answer (MulActSeg): the annotator ticks every class present in the
query polygon, and training learns from the candidate sets with the partial-label losses.

Annotation -> target: the polygon becomes a region (``region_ids``) with its ticked classes (``candidates``);
a region with exactly one ticked class also labels its pixels (``labels``). Later regions win where polygons
overlap.
Simulated annotator: a region gets the set of classes present in the region eroded by ``erosion`` pixels (3x3
cross), so classes that only touch its boundary are left out; the majority class is always in the set. Cost: one
click per class ticked (at least 1).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget, polygon_mask, query_answers
from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.labeling.results import Result
from ls_al_backend.modes.base import ImageLabels, Queries, QueryModeHandler, Unit
from ls_al_backend.modes.registry import QueryMode, register
from ls_al_backend.modes.superpixel_dominant import dominant_class, polygon_queries


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


class SuperpixelMulticlass(QueryModeHandler):
    name = QueryMode.SUPERPIXEL_MULTICLASS
    query_tag = "PolygonLabels"
    multiple_choice = True
    acquisition_defaults = {
        "label_mode": "multiclass",
        "superpixel_method": "slic",
        "top_k_regions": 10,
        "class_balance": "pixbal",  # the benchmark's acquisition strategy in this mode (mc_entropy_pixbal)
    }
    partial_labels = True
    unit = Unit.REGION

    def query_results(self, config: LabelTags, queries: Queries, image_size: tuple[int, int]) -> list[Result]:
        return polygon_queries(config, queries, image_size)

    def target(self, results: list[dict], config: LabelTags, height: int, width: int) -> LabelTarget:
        answered = query_answers(results, config)
        labels = np.full((height, width), IGNORE, dtype=np.int64)
        region_ids = np.full((height, width), -1, dtype=np.int64)
        candidates = np.zeros((len(answered), len(config.class_names)), dtype=bool)
        for row, (region, indices) in enumerate(answered):
            mask = polygon_mask(region, height, width)
            region_ids[mask] = row
            candidates[row, indices] = True
            labels[mask] = indices[0] if len(indices) == 1 else IGNORE
        return LabelTarget(labels=labels, region_ids=region_ids, candidates=candidates)

    def unit_clicks(self, gt: np.ndarray, superpixels: np.ndarray | None, num_classes: int, erosion: int) -> np.ndarray:
        answers = multiclass_candidate_matrix(gt, superpixels, num_classes, erosion)
        return np.maximum(answers.sum(axis=1), 1).astype(np.float64)

    def simulate(
        self, gt: np.ndarray, revealed: ImageLabels, superpixels: np.ndarray | None, num_classes: int, erosion: int
    ) -> tuple[LabelTarget, int]:
        labels = np.full(gt.shape, IGNORE, dtype=np.int64)
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


register(SuperpixelMulticlass())
