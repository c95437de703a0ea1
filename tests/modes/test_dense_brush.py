"""Dense mode: no queries; a whole image is traced as polygons, one click per vertex."""

from __future__ import annotations

import numpy as np

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.modes import ImageLabels, Queries, QueryMode, handler_for
from ls_al_backend.modes.dense_brush import trace_polygons
from tests.modes.test_registry import CONFIGS

HANDLER = handler_for(QueryMode.DENSE_BRUSH)


def test_dense_mode_has_no_queries() -> None:
    queries = Queries([(0, 1.0)], [(1, 1, 1.0)], np.zeros((4, 4), dtype=np.int64), (4, 4))
    assert HANDLER.query_results(CONFIGS["dense_brush"], queries, (4, 4)) == []


def test_a_whole_image_costs_the_vertices_of_its_traced_regions():
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[:, 5:] = 1
    gt[0:2, 9] = 2  # a 2-pixel region: too small to trace
    traced, clicks = HANDLER.simulate(gt, ImageLabels(dense=True), None, 3, 0)
    assert np.array_equal(traced.labels, np.where(gt == 2, IGNORE, gt))
    assert 8 <= clicks <= 12, "a rectangle (4 vertices) and a notched rectangle (about 6)"
    labels, vertices, regions = trace_polygons(gt, 3)
    assert vertices == clicks and np.array_equal(labels, traced.labels)
    assert HANDLER.unit_clicks(gt, None, 3, 0).tolist() == [float(vertices)]
    assert regions == HANDLER.queries_answered(gt, ImageLabels(dense=True), 3) == 2, "each a polygon drawn"
    assert HANDLER.queries_answered(gt, ImageLabels(), 3) == 0


def test_regions_under_twenty_pixels_are_not_traced_and_an_unrevealed_image_costs_nothing():
    gt = np.array([[0, 0, 1, 1], [0, IGNORE, 1, 2], [IGNORE, IGNORE, 2, 2]])
    traced, clicks = HANDLER.simulate(gt, ImageLabels(dense=True), None, 3, 0)
    assert (traced.labels == IGNORE).all() and clicks == 0
    untouched, clicks = HANDLER.simulate(np.zeros((10, 10), dtype=np.int64), ImageLabels(), None, 3, 0)
    assert (untouched.labels == IGNORE).all() and clicks == 0
