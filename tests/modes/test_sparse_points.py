"""Point mode: keypoint queries at grid pixel centres, one pixel labelled per answer."""

from __future__ import annotations

import numpy as np
import pytest

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.modes import ImageLabels, Queries, QueryMode, annotation_to_target, handler_for
from tests.modes.test_registry import CONFIGS, answered

HANDLER = handler_for(QueryMode.SPARSE_POINTS)


def test_point_queries_are_keypoints_with_an_empty_class_answer() -> None:
    config = CONFIGS["sparse_points"]
    queries = Queries([], [(10, 20, 0.5), (0, 63, 0.4)], None, (48, 64))
    results = HANDLER.query_results(config, queries, (48, 64))
    assert [r["type"] for r in results] == ["keypointlabels", "choices"] * 2
    first = results[0]
    assert first["value"]["x"] == pytest.approx(100 * 20.5 / 64, abs=1e-3)
    assert first["value"]["y"] == pytest.approx(100 * 10.5 / 48, abs=1e-3)
    target = annotation_to_target(answered(results, ["Car"]), config, 48, 64)
    assert target.labels[10, 20] == target.labels[0, 63] == config.class_names.index("Car")
    assert target.labelled_pixels == 2


def test_points_on_a_scaled_down_grid_land_on_the_grid_pixel_centre_of_the_image() -> None:
    config = CONFIGS["sparse_points"]
    results = HANDLER.query_results(config, Queries([], [(1, 2, 0.5)], None, (24, 32)), (48, 64))
    assert results[0]["value"]["x"] == pytest.approx(100 * 5.0 / 64, abs=1e-3)  # grid pixel 2 spans image 4..6
    assert results[0]["value"]["y"] == pytest.approx(100 * 3.0 / 48, abs=1e-3)


def test_the_simulated_annotator_labels_the_pixel_unless_it_is_void():
    gt = np.array([[0, 0, 1, 1], [0, IGNORE, 1, 2]])
    target, clicks = HANDLER.simulate(gt, ImageLabels(pixels=[(0, 2), (1, 1)]), None, 3, 0)
    assert clicks == 2 and target.labelled_pixels == 1 and target.labels[0, 2] == 1
