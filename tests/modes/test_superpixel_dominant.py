"""Dominant-class superpixel mode: polygon queries that rasterise back to their superpixel, one class per answer."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label
from skimage.segmentation import felzenszwalb, slic

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.modes import ImageLabels, Queries, QueryMode, annotation_to_target, handler_for
from ls_al_backend.modes.superpixel_dominant import dominant_class
from tests.conftest import random_rgb
from tests.modes.test_registry import CONFIGS, answered

HANDLER = handler_for(QueryMode.SUPERPIXEL_DOMINANT)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("segmentation", ["slic", "felzenszwalb"])
def test_a_query_polygon_rasterises_back_to_exactly_its_superpixel(seed: int, segmentation: str) -> None:
    config = CONFIGS["superpixel_dominant"]
    image = random_rgb(48, 64, seed)
    if segmentation == "slic":
        superpixels = slic(image, n_segments=12, start_label=0)
    else:  # irregular, thin regions
        superpixels = label(felzenszwalb(image, scale=20, min_size=5), connectivity=1, background=-1)
    region = int(np.bincount(superpixels.ravel()).argmax())
    results = HANDLER.query_results(config, Queries([(region, 0.9)], [], superpixels, (48, 64)), (48, 64))
    polygon, choice = results
    assert polygon["type"] == "polygonlabels" and polygon["value"]["polygonlabels"] == ["query"]
    assert choice == {
        "id": polygon["id"],
        "from_name": "region_class",
        "to_name": "image",
        "type": "choices",
        "value": {"choices": []},
    }
    target = annotation_to_target(answered(results, ["Road"]), config, 48, 64)
    road = config.class_names.index("Road")
    assert np.array_equal(target.labels == road, superpixels == region)


def test_the_simulated_answer_paints_the_majority_class_over_the_whole_region_for_one_click():
    gt = np.array([[0, 0, 1, 1], [0, IGNORE, 1, 2], [IGNORE, IGNORE, 2, 2]])
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1]])
    target, clicks = HANDLER.simulate(gt, ImageLabels(regions=[0, 2]), regions, 3, 0)
    assert clicks == 2 and HANDLER.unit_clicks(gt, regions, 3, 0).tolist() == [1.0, 1.0, 1.0]
    expected = np.full(gt.shape, IGNORE)
    expected[regions == 0] = 0  # the void pixel of region 0 gets the region's class too; region 2 is all void
    assert np.array_equal(target.labels, expected)
    assert dominant_class(np.array([2, 1, 1, 2]), 3) == 1, "lowest id on ties"
    assert dominant_class(np.array([IGNORE, IGNORE]), 3) is None
