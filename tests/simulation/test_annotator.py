"""The simulated annotator of a run: each mode's answer labels and costs, through its handler (details per mode in
tests/modes/)."""

from __future__ import annotations

import numpy as np
import pytest

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.modes import ImageLabels
from ls_al_backend.simulation import build_target
from ls_al_backend.simulation.annotator import editor_actions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_targets_per_mode_follow_the_annotator():
    gt = np.array([[0, 0, 1, 1], [0, IGNORE, 1, 2], [IGNORE, IGNORE, 2, 2]])
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1]])
    example = type("E", (), {"gt": gt, "image": None})()

    dominant, clicks, queries = build_target(example, ImageLabels(regions=[0, 2]), regions, "superpixel_dominant", 3, 0)
    assert clicks == 2 and queries == 2
    expected = np.full(gt.shape, IGNORE)
    expected[regions == 0] = 0  # the void pixel of region 0 gets the region's class too; region 2 is all void
    assert np.array_equal(dominant.labels, expected)

    multi, clicks, queries = build_target(example, ImageLabels(regions=[1, 0]), regions, "superpixel_multiclass", 3, 0)
    assert multi.candidates.tolist() == [[False, True, True], [True, False, False]] and clicks == 3 and queries == 2
    assert np.array_equal(multi.region_ids, np.where(regions == 1, 0, np.where(regions == 0, 1, -1)))
    assert np.array_equal(multi.labels, np.where(regions == 0, 0, IGNORE))  # one-class regions also label pixels

    pixels, clicks, queries = build_target(example, ImageLabels(pixels=[(0, 2), (1, 1)]), None, "sparse_points", 3, 0)
    assert clicks == 2 and queries == 2 and pixels.labelled_pixels == 1 and pixels.labels[0, 2] == 1

    dense, clicks, queries = build_target(example, ImageLabels(dense=True), None, "dense_brush", 3, 0)
    assert (dense.labels == IGNORE).all() and clicks == queries == 0, "regions under 20 pixels are not traced"


def test_editor_actions_add_the_selects_of_every_query_and_one_submit_per_image():
    """The cost measured in Label Studio's editor (tests/e2e/test_browser.py): a one-class query is ``alt+.`` and a
    hotkey, a multi-class query ``alt+.`` and one hotkey per class, each labelled image one ``ctrl+enter``; a
    whole image's outlined region is its class hotkey, its vertices (the clicks) and the click closing it."""
    assert editor_actions("superpixel_dominant", clicks=10, queries=10, images=3) == 23
    assert editor_actions("sparse_points", clicks=4, queries=4, images=1) == 9
    assert editor_actions("superpixel_multiclass", clicks=7, queries=4, images=2) == 13, "k classes: 1 + k each"
    assert editor_actions("dense_brush", clicks=250, queries=12, images=2) == 250 + 2 * 12 + 2
