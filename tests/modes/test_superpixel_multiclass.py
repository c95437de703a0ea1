"""Multi-class superpixel mode: the annotator ticks the classes inside a region, one click per class."""

from __future__ import annotations

import numpy as np

from ls_al_backend.acquisition.superpixels import SuperpixelCache
from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.modes import ImageLabels, QueryMode, handler_for
from ls_al_backend.modes.superpixel_dominant import dominant_class
from ls_al_backend.modes.superpixel_multiclass import multiclass_candidate_matrix, multiclass_candidates

HANDLER = handler_for(QueryMode.SUPERPIXEL_MULTICLASS)


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


def test_multiclass_candidates_on_real_regions_hold_the_majority_and_only_present_classes(examples):
    cache = SuperpixelCache()
    checked = 0
    for example in examples:
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


def test_the_vectorised_multiclass_answers_match_the_per_region_annotator(examples):
    cache = SuperpixelCache()
    for example in examples:
        regions = cache.get(example.image, "slic", 16, None)
        matrix = multiclass_candidate_matrix(example.gt, regions, 11, erosion=2)
        for region in range(int(regions.max()) + 1):
            expected = multiclass_candidates(example.gt, regions == region, 11, erosion=2)
            assert matrix[region].tolist() == expected.tolist(), region


def test_a_region_costs_one_click_per_ticked_class_and_at_least_one():
    gt = np.array([[0, 0, 1, 1], [0, IGNORE, 1, 2], [IGNORE, IGNORE, 2, 2]])
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1]])
    assert HANDLER.unit_clicks(gt, regions, 3, 0).tolist() == [1.0, 2.0, 1.0]  # region 2 is all void: 1 click
    target, clicks = HANDLER.simulate(gt, ImageLabels(regions=[1, 0]), regions, 3, 0)
    assert target.candidates.tolist() == [[False, True, True], [True, False, False]] and clicks == 3
    assert HANDLER.partial_labels, "training needs the candidate-set losses"
