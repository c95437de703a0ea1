"""The simulated annotator: what each mode's answer labels and what it costs."""

from __future__ import annotations

import numpy as np
import pytest

from ls_al_backend.acquisition.superpixels import SuperpixelCache
from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.simulation import (
    ImageLabels,
    build_target,
    dominant_class,
    load_split,
    multiclass_candidate_matrix,
    multiclass_candidates,
    trace_polygons,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_multiclass_annotator_keeps_interior_classes_and_drops_boundary_ones():
    gt = np.full((12, 12), 9, dtype=np.int64)  # class 9 only outside the region
    region = np.zeros((12, 12), dtype=bool)
    region[2:10, 2:10] = True
    gt[2:10, 2:10] = 3  # majority
    gt[5:7, 5:7] = 5  # interior
    gt[2, 2:10] = 7  # only on the region's outer row
    gt[9, 2:4] = IGNORE
    candidates = multiclass_candidates(gt, region, num_classes=11, erosion=2)
    assert np.flatnonzero(candidates).tolist() == [3, 5]
    # no erosion: every non-void class of the region, still nothing from outside
    assert np.flatnonzero(multiclass_candidates(gt, region, 11, erosion=0)).tolist() == [3, 5, 7]
    # an all-void region gives no answer
    assert not multiclass_candidates(np.full((12, 12), IGNORE), region, 11).any()


def test_multiclass_candidates_on_real_regions_hold_the_majority_and_only_present_classes(data):
    cache = SuperpixelCache()
    checked = 0
    for example in load_split(data[0], resolution=64):
        regions = cache.get(example.image, "slic", 16, None)
        for region in range(int(regions.max()) + 1):
            mask = regions == region
            candidates = set(np.flatnonzero(multiclass_candidates(example.gt, mask, 11, erosion=2)).tolist())
            present = set(np.unique(example.gt[mask]).tolist()) - {IGNORE}
            majority = dominant_class(example.gt[mask], 11)
            assert candidates <= present
            assert (majority in candidates) if majority is not None else not candidates
            checked += 1
    assert checked > 10


def test_targets_per_mode_follow_the_annotator():
    gt = np.array([[0, 0, 1, 1], [0, IGNORE, 1, 2], [IGNORE, IGNORE, 2, 2]])
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1]])
    example = type("E", (), {"gt": gt, "image": None})()

    dominant, clicks = build_target(example, ImageLabels(regions=[0, 2]), regions, "superpixel_dominant", 3, 0)
    assert clicks == 2
    expected = np.full(gt.shape, IGNORE)
    expected[regions == 0] = 0  # the void pixel of region 0 gets the region's class too; region 2 is all void
    assert np.array_equal(dominant.labels, expected)

    multi, clicks = build_target(example, ImageLabels(regions=[1, 0]), regions, "superpixel_multiclass", 3, 0)
    assert multi.candidates.tolist() == [[False, True, True], [True, False, False]] and clicks == 3
    assert np.array_equal(multi.region_ids, np.where(regions == 1, 0, np.where(regions == 0, 1, -1)))
    assert np.array_equal(multi.labels, np.where(regions == 0, 0, IGNORE))  # one-class regions also label pixels

    pixels, clicks = build_target(example, ImageLabels(pixels=[(0, 2), (1, 1)]), None, "pixels", 3, 0)
    assert clicks == 2 and pixels.labelled_pixels == 1 and pixels.labels[0, 2] == 1

    dense, clicks = build_target(example, ImageLabels(dense=True), None, "image", 3, 0)
    assert (dense.labels == IGNORE).all() and clicks == 0, "regions under 20 pixels are not traced"


def test_a_whole_image_costs_the_vertices_of_its_traced_regions():
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[:, 5:] = 1
    gt[0:2, 9] = 2  # a 2-pixel region: too small to trace
    example = type("E", (), {"gt": gt, "image": None})()
    traced, clicks = build_target(example, ImageLabels(dense=True), None, "image", 3, 0)
    assert np.array_equal(traced.labels, np.where(gt == 2, IGNORE, gt))
    assert 8 <= clicks <= 12, "a rectangle (4 vertices) and a notched rectangle (about 6)"
    labels, vertices = trace_polygons(gt, 3)
    assert vertices == clicks and np.array_equal(labels, traced.labels)


def test_the_vectorised_multiclass_answers_match_the_per_region_annotator(data):
    cache = SuperpixelCache()
    for example in load_split(data[0], resolution=64):
        regions = cache.get(example.image, "slic", 16, None)
        matrix = multiclass_candidate_matrix(example.gt, regions, 11, erosion=2)
        for region in range(int(regions.max()) + 1):
            expected = multiclass_candidates(example.gt, regions == region, 11, erosion=2)
            assert matrix[region].tolist() == expected.tolist(), region
