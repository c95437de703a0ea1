"""Label Studio result JSON the backend builds: sizes and percent coordinates as the editor reads them, and a
per-region answer linked to its region by id."""

from __future__ import annotations

import numpy as np

from ls_al_backend.labeling.results import brush_result, keypoint_result, polygon_result, region_choices_result
from ls_al_backend.labeling.rle import rle_to_mask


def test_a_brush_region_carries_its_mask_at_the_image_size() -> None:
    alpha = np.zeros((30, 40), np.uint8)
    alpha[5:10, 20:35] = 255
    region = brush_result("label", "image", "road", alpha, score=0.7)
    assert (region["original_width"], region["original_height"]) == (40, 30)
    assert region["value"]["brushlabels"] == ["road"] and region["value"]["format"] == "rle"
    assert np.array_equal(rle_to_mask(region["value"]["rle"], 30, 40), alpha)
    assert region["score"] == 0.7 and region["readonly"] is False and len(region["id"]) == 10


def test_polygons_and_keypoints_are_in_percent_of_the_image() -> None:
    polygon = polygon_result("query", "image", "query", np.array([[0.0, 0.0], [40.0, 0.0], [40.0, 30.0]]), (30, 40), 1)
    assert polygon["value"]["points"] == [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0]] and polygon["value"]["closed"]
    point = keypoint_result("query", "image", "query", x=19, y=14, image_size=(30, 40), score=0.5)
    assert (point["value"]["x"], point["value"]["y"]) == (48.75, 48.3333), "the centre of pixel (19, 14): 19.5 / 40"


def test_a_region_answer_shares_its_regions_id() -> None:
    polygon = polygon_result("query", "image", "query", np.array([[1.0, 1.0], [5.0, 1.0], [5.0, 5.0]]), (10, 10), 1)
    answer = region_choices_result("region_class", "image", polygon["id"], [])
    assert answer["id"] == polygon["id"] and answer["type"] == "choices" and answer["value"] == {"choices": []}
