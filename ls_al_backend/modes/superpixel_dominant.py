"""Superpixel queries with a dominant-class answer: a query polygon outlines one superpixel, and the annotator
ticks the one class that covers most of it.

Annotation -> target: the polygon's pixels (centres inside) get the chosen class.
Simulated annotator: a region gets its majority non-void class on every pixel of the region (void and minority
pixels included, as a one-click answer paints them; an all-void region stays unlabelled). Cost: 1 click.
"""

from __future__ import annotations

import numpy as np

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget, polygon_mask, query_answers
from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.labeling.render import superpixel_polygons, with_empty_answers
from ls_al_backend.labeling.results import Result
from ls_al_backend.modes.base import ImageLabels, Queries, QueryModeHandler, Unit
from ls_al_backend.modes.registry import QueryMode, register


def dominant_class(gt_region: np.ndarray, num_classes: int) -> int | None:
    """Majority non-void class of the ground-truth pixels given (1-D), lowest id on ties; None if all void."""
    valid = gt_region[gt_region != IGNORE]
    if valid.size == 0:
        return None
    return int(np.bincount(valid, minlength=num_classes).argmax())


def polygon_queries(config: LabelTags, queries: Queries, image_size: tuple[int, int]) -> list[Result]:
    """The selected superpixels outlined as polygon queries, each with its empty answer (both superpixel modes)."""
    if queries.superpixels is None:
        return []
    polygons = superpixel_polygons(config, queries.superpixels, queries.regions, image_size, queries.grid_size)
    return with_empty_answers(config, polygons)


class SuperpixelDominant(QueryModeHandler):
    name = QueryMode.SUPERPIXEL_DOMINANT
    query_tag = "PolygonLabels"
    acquisition_defaults = {
        "label_mode": "dominant",
        "superpixel_method": "slic",
        "top_k_regions": 10,
        "class_balance": "classbal",  # the benchmark's best in this mode (sp_entropy_classbal)
    }
    unit = Unit.REGION

    def query_results(self, config: LabelTags, queries: Queries, image_size: tuple[int, int]) -> list[Result]:
        return polygon_queries(config, queries, image_size)

    def target(self, results: list[dict], config: LabelTags, height: int, width: int) -> LabelTarget:
        labels = np.full((height, width), IGNORE, dtype=np.int64)
        for region, (index,) in query_answers(results, config):
            labels[polygon_mask(region, height, width)] = index
        return LabelTarget(labels=labels)

    def unit_clicks(self, gt: np.ndarray, superpixels: np.ndarray | None, num_classes: int, erosion: int) -> np.ndarray:
        return np.ones(int(superpixels.max()) + 1, dtype=np.float64)

    def simulate(
        self, gt: np.ndarray, revealed: ImageLabels, superpixels: np.ndarray | None, num_classes: int, erosion: int
    ) -> tuple[LabelTarget, int]:
        labels = np.full(gt.shape, IGNORE, dtype=np.int64)
        for region in revealed.regions:
            mask = superpixels == region
            majority = dominant_class(gt[mask], num_classes)
            if majority is not None:
                labels[mask] = majority
        return LabelTarget(labels), len(revealed.regions)


register(SuperpixelDominant())
