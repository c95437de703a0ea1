"""Sparse point queries (PixelPick): a query keypoint marks one pixel, and the annotator ticks its class.

Annotation -> target: the pixel under each answered keypoint gets the chosen class.
Simulated annotator: a pixel gets its ground-truth class (a void pixel stays unlabelled). Cost: 1 click.
"""

from __future__ import annotations

import numpy as np

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget, keypoint_pixel, query_answers
from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.labeling.render import pixel_keypoints, with_empty_answers
from ls_al_backend.labeling.results import Result
from ls_al_backend.modes.base import ImageLabels, Queries, QueryModeHandler, Unit
from ls_al_backend.modes.registry import QueryMode, register


class SparsePoints(QueryModeHandler):
    name = QueryMode.SPARSE_POINTS
    query_tag = "KeyPointLabels"
    acquisition_defaults = {
        "superpixel_method": "none",
        "top_k_regions": 0,
        "top_n_pixels": 10,
        "pixel_selection": "pixelpick",  # random among the top 5 %: spread out, unlike the 10 top pixels
        "heuristic": "balanced_entropy",  # with pixelpick, the benchmark's pixel strategy (px_balent_pixelpick)
    }
    unit = Unit.PIXEL

    def query_results(self, config: LabelTags, queries: Queries, image_size: tuple[int, int]) -> list[Result]:
        return with_empty_answers(config, pixel_keypoints(config, queries.pixels, image_size, queries.grid_size))

    def target(self, results: list[dict], config: LabelTags, height: int, width: int) -> LabelTarget:
        labels = np.full((height, width), IGNORE, dtype=np.int64)
        for region, (index,) in query_answers(results, config):
            labels[keypoint_pixel(region, height, width)] = index
        return LabelTarget(labels=labels)

    def unit_clicks(self, gt: np.ndarray, superpixels: np.ndarray | None, num_classes: int, erosion: int) -> np.ndarray:
        return np.ones(gt.size, dtype=np.float64)

    def simulate(
        self, gt: np.ndarray, revealed: ImageLabels, superpixels: np.ndarray | None, num_classes: int, erosion: int
    ) -> tuple[LabelTarget, int]:
        labels = np.full(gt.shape, IGNORE, dtype=np.int64)
        for row, col in revealed.pixels:
            labels[row, col] = gt[row, col]
        return LabelTarget(labels), len(revealed.pixels)


register(SparsePoints())
