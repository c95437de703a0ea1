"""Annotations -> training targets: what each query mode trains on, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from ls_al_backend.labeling.annotations import (
    IGNORE,
    LabelTarget,
    MalformedAnnotation,
    latest_annotation,
)
from ls_al_backend.labeling.results import (
    brush_result,
    keypoint_result,
    polygon_result,
    region_choices_result,
)
from ls_al_backend.modes import LabelConfig, QueryMode, annotation_to_target, parse_label_config
from tests.conftest import REPO_ROOT

H, W = 6, 8


def config_for(mode: str) -> LabelConfig:
    return parse_label_config((REPO_ROOT / "label_configs" / f"{mode}.xml").read_text())


DENSE = config_for("dense_brush")
DOMINANT = config_for("superpixel_dominant")
MULTI = config_for("superpixel_multiclass")
POINTS = config_for("sparse_points")
SKY, BUILDING, ROAD = (DENSE.class_names.index(name) for name in ("Sky", "Building", "Road"))


def block(rows: slice, cols: slice, value: int = 255) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[rows, cols] = value
    return mask


def rectangle(region_id: str, top: int, left: int, bottom: int, right: int) -> dict:
    """Query polygon along the pixel edges of rows top..bottom-1 and columns left..right-1."""
    corners = np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
    return polygon_result("query", "image", "query", corners, (H, W), score=0.5, region_id=region_id)


def answer(region_id: str, *classes: str) -> dict:
    return region_choices_result("region_class", "image", region_id, list(classes))


def as_prediction(result: dict) -> dict:
    """A region as it comes back after the annotator accepted the prediction."""
    return {**result, "origin": "prediction"}


def test_mode_configs_are_the_shipped_ones() -> None:
    assert [c.mode for c in (DENSE, DOMINANT, MULTI, POINTS)] == [
        QueryMode.DENSE_BRUSH,
        QueryMode.SUPERPIXEL_DOMINANT,
        QueryMode.SUPERPIXEL_MULTICLASS,
        QueryMode.SPARSE_POINTS,
    ]


# ---------------------------------------------------------------------------------------------------- dense brush


def test_dense_brush_paints_classes_and_leaves_the_rest_unlabelled() -> None:
    result = [
        brush_result("label", "image", "Sky", block(slice(0, 2), slice(None)), 1.0),
        brush_result("label", "image", "Road", block(slice(4, 6), slice(0, 4), value=80), 1.0),
    ]
    target = annotation_to_target(result, DENSE, H, W)
    expected = np.full((H, W), IGNORE)
    expected[0:2, :] = SKY
    expected[4:6, 0:4] = ROAD
    np.testing.assert_array_equal(target.labels, expected)
    assert target.labels.dtype == np.int64
    assert target.region_ids is None and target.candidates is None
    assert target.labelled_pixels == 2 * W + 2 * 4


def test_dense_brush_later_strokes_overwrite_earlier_ones() -> None:
    result = [
        brush_result("label", "image", "Sky", block(slice(0, 4), slice(None)), 1.0),
        brush_result("label", "image", "Building", block(slice(2, 6), slice(None)), 1.0),
    ]
    labels = annotation_to_target(result, DENSE, H, W).labels
    assert (labels[:2] == SKY).all() and (labels[2:] == BUILDING).all()


def test_dense_brush_keeps_accepted_predictions_and_drops_the_uncertainty_overlay() -> None:
    result = [
        as_prediction(brush_result("label", "image", "Road", block(slice(0, 3), slice(None)), 0.7)),
        as_prediction(brush_result("uncertainty", "image", "uncertainty", block(slice(None), slice(None)), 0.3)),
    ]
    labels = annotation_to_target(result, DENSE, H, W).labels
    assert (labels[:3] == ROAD).all() and (labels[3:] == IGNORE).all()


def test_relations_between_regions_are_skipped() -> None:
    relation = {"from_id": "a", "to_id": "b", "type": "relation", "direction": "right"}
    result = [brush_result("label", "image", "Sky", block(slice(0, 2), slice(None)), 1.0), relation]
    assert annotation_to_target(result, DENSE, H, W).labelled_pixels == 2 * W


def test_an_empty_annotation_labels_nothing() -> None:
    assert annotation_to_target([], DENSE, H, W).labelled_pixels == 0


# ---------------------------------------------------------------------------------------------------- query modes


def model_layers() -> list[dict]:
    """What every query-mode prediction carries besides queries: class masks and the overlay."""
    return [
        as_prediction(brush_result("prediction", "image", "Sky", block(slice(None), slice(None)), 0.9)),
        as_prediction(brush_result("uncertainty", "image", "uncertainty", block(slice(None), slice(None)), 0.2)),
    ]


def test_dominant_superpixel_gets_its_chosen_class_and_model_layers_are_ignored() -> None:
    result = [
        *model_layers(),
        as_prediction(rectangle("q1", 0, 0, 2, 3)),
        answer("q1", "Building"),
        rectangle("q2", 3, 4, 6, 8),
        answer("q2", "Road"),
    ]
    target = annotation_to_target(result, DOMINANT, H, W)
    expected = np.full((H, W), IGNORE)
    expected[0:2, 0:3] = BUILDING
    expected[3:6, 4:8] = ROAD
    np.testing.assert_array_equal(target.labels, expected)
    assert target.region_ids is None


def test_query_regions_without_an_answer_are_ignored() -> None:
    result = [rectangle("q1", 0, 0, 2, 3), answer("q1"), rectangle("q2", 3, 4, 6, 8)]
    assert annotation_to_target(result, DOMINANT, H, W).labelled_pixels == 0


def test_polygon_percent_coordinates_are_scaled_by_the_image_size() -> None:
    # A triangle covering the lower-left half (below the diagonal) of a 4x4 image, written by hand in percent.
    region = {
        "id": "t",
        "from_name": "query",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": 4,
        "original_height": 4,
        "value": {"points": [[0, 0], [0, 100], [100, 100]], "closed": True, "polygonlabels": ["query"]},
    }
    labels = annotation_to_target([region, answer("t", "Sky")], DOMINANT, 4, 4).labels
    # Pixel centres strictly below the diagonal y = x are inside; centres on it are excluded or included by the
    # rasteriser's tie rule, so only the unambiguous pixels are checked.
    rows, cols = np.indices((4, 4))
    assert (labels[rows > cols] == SKY).all()
    assert (labels[rows < cols] == IGNORE).all()


def test_multiclass_regions_get_candidate_sets_and_single_answers_also_become_labels() -> None:
    result = [
        *model_layers(),
        rectangle("a", 0, 0, 3, 4),
        answer("a", "Sky", "Building"),
        rectangle("b", 3, 0, 6, 4),
        answer("b", "Road"),
        rectangle("unanswered", 0, 4, 6, 8),
    ]
    target = annotation_to_target(result, MULTI, H, W)
    expected_ids = np.full((H, W), -1)
    expected_ids[0:3, 0:4] = 0
    expected_ids[3:6, 0:4] = 1
    np.testing.assert_array_equal(target.region_ids, expected_ids)
    expected_candidates = np.zeros((2, len(MULTI.class_names)), dtype=bool)
    expected_candidates[0, [SKY, BUILDING]] = True
    expected_candidates[1, ROAD] = True
    np.testing.assert_array_equal(target.candidates, expected_candidates)
    expected_labels = np.full((H, W), IGNORE)
    expected_labels[3:6, 0:4] = ROAD
    np.testing.assert_array_equal(target.labels, expected_labels)
    assert target.labelled_pixels == 6 * 4


def test_sparse_points_label_single_pixels() -> None:
    result = [
        *model_layers(),
        keypoint_result("query", "image", "query", 3, 1, (H, W), 0.8, region_id="p1"),
        answer("p1", "Road"),
        keypoint_result("query", "image", "query", 7, 5, (H, W), 0.8, region_id="p2"),
        answer("p2", "Sky"),
        keypoint_result("query", "image", "query", 0, 0, (H, W), 0.8, region_id="unanswered"),
    ]
    labels = annotation_to_target(result, POINTS, H, W).labels
    assert labels[1, 3] == ROAD and labels[5, 7] == SKY
    assert (labels != IGNORE).sum() == 2


def test_a_point_on_the_far_edge_labels_the_last_pixel() -> None:
    point = keypoint_result("query", "image", "query", 0, 0, (H, W), 0.8, region_id="p")
    point["value"].update(x=100.0, y=100.0)
    labels = annotation_to_target([point, answer("p", "Sky")], POINTS, H, W).labels
    assert labels[H - 1, W - 1] == SKY


# ---------------------------------------------------------------------------------------------------- choosing


def test_latest_annotation_skips_cancelled_and_prefers_the_newest() -> None:
    task = {
        "annotations": [
            {"id": 1, "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-03T10:00:00Z", "result": []},
            {"id": 2, "created_at": "2024-05-02T10:00:00Z", "updated_at": "2024-05-02T10:00:00Z", "result": []},
            {
                "id": 3,
                "created_at": "2024-06-01T10:00:00Z",
                "updated_at": "2024-06-01T10:00:00Z",
                "was_cancelled": True,
            },
        ]
    }
    assert latest_annotation(task)["id"] == 1  # edited last, although created first


def test_latest_annotation_breaks_ties_by_created_at_then_id() -> None:
    same = "2024-05-01T10:00:00.000000Z"
    task = {
        "annotations": [
            {"id": 7, "created_at": "2024-04-01T00:00:00Z", "updated_at": same},
            {"id": 5, "created_at": "2024-04-02T00:00:00Z", "updated_at": same},
            {"id": 4, "created_at": "2024-04-02T00:00:00Z", "updated_at": same},
        ]
    }
    assert latest_annotation(task)["id"] == 5


def test_latest_annotation_is_none_without_usable_annotations() -> None:
    assert latest_annotation({"annotations": []}) is None
    assert latest_annotation({}) is None
    assert latest_annotation({"annotations": [{"id": 1, "was_cancelled": True}]}) is None


# ---------------------------------------------------------------------------------------------------- malformed


def brush(label: str = "Sky", **changes) -> dict:
    return {**brush_result("label", "image", label, block(slice(0, 2), slice(None)), 1.0), **changes}


MALFORMED = {
    "unknown class": (DENSE, [brush("Unicorn")], "unknown class 'Unicorn'"),
    "wrong type on the class tag": (DENSE, [brush(type="polygonlabels")], "expects 'brushlabels'"),
    "broken RLE": (DENSE, [brush(value={"format": "rle", "rle": [0, 0, 0], "brushlabels": ["Sky"]})], "RLE"),
    "RLE of another size": (
        DENSE,
        [{**brush(), "value": brush_result("label", "image", "Sky", np.zeros((3, 3), np.uint8), 1)["value"]}],
        "RLE",
    ),
    "drawn on another image size": (DENSE, [brush(original_width=W * 2)], "was drawn on a 16x6 image"),
    "unknown tag": (DENSE, [brush(from_name="scribbles")], "does not use"),
    "not a list": (DENSE, {"result": []}, "must be a list"),
    "two labels on one brush": (
        DENSE,
        [brush(value={**brush()["value"], "brushlabels": ["Sky", "Road"]})],
        "exactly one label",
    ),
    "query of the wrong type": (
        DOMINANT,
        [keypoint_result("query", "image", "query", 1, 1, (H, W), 0.5, region_id="q")],
        "expects 'polygonlabels'",
    ),
    "point outside the image": (
        POINTS,
        [
            {
                **keypoint_result("query", "image", "query", 1, 1, (H, W), 0.5, region_id="q"),
                "value": {"x": 120.0, "y": 10.0, "width": 0.6, "keypointlabels": ["query"]},
            },
            answer("q", "Sky"),
        ],
        "outside 0..100",
    ),
    "polygon with two points": (
        DOMINANT,
        [
            {**rectangle("q", 0, 0, 2, 2), "value": {"points": [[0, 0], [50, 50]], "polygonlabels": ["query"]}},
            answer("q", "Sky"),
        ],
        "at least 3 points",
    ),
    "unknown choice": (DOMINANT, [rectangle("q", 0, 0, 2, 2), answer("q", "Unicorn")], "unknown class"),
    "several classes in dominant mode": (
        DOMINANT,
        [rectangle("q", 0, 0, 2, 2), answer("q", "Sky", "Road")],
        "this mode takes one",
    ),
    "query drawn on another size": (
        DOMINANT,
        [{**rectangle("q", 0, 0, 2, 2), "original_height": H + 1}, answer("q", "Sky")],
        "was drawn on",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_annotations_are_refused_with_a_reason(case: str) -> None:
    config, result, message = MALFORMED[case]
    with pytest.raises(MalformedAnnotation, match=message):
        annotation_to_target(result, config, H, W)


def test_malformed_annotation_is_a_value_error() -> None:
    assert issubclass(MalformedAnnotation, ValueError)


def test_labelled_pixels_counts_labels_and_region_members() -> None:
    labels = np.array([[0, IGNORE], [IGNORE, IGNORE]])
    region_ids = np.array([[-1, 0], [0, -1]])
    target = LabelTarget(labels=labels, region_ids=region_ids, candidates=np.ones((1, 2), dtype=bool))
    assert target.labelled_pixels == 3
