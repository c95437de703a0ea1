"""What a handler is: a mode that leaves out a part cannot be created; a mode without queries draws none."""

from __future__ import annotations

import numpy as np
import pytest

from ls_al_backend.labeling.annotations import LabelTarget
from ls_al_backend.modes import ImageLabels, Queries, QueryModeHandler, Unit
from tests.modes.test_registry import CONFIGS


def test_a_handler_that_leaves_out_a_part_of_its_mode_cannot_be_created() -> None:
    class NoAnnotator(QueryModeHandler):
        name = "incomplete"
        unit = Unit.REGION

        def target(self, results, config, height, width):
            raise NotImplementedError

        def unit_clicks(self, gt, superpixels, num_classes, erosion):
            raise NotImplementedError

    with pytest.raises(TypeError, match="simulate"):
        NoAnnotator()


def test_a_mode_draws_no_queries_unless_it_says_how() -> None:
    class Whole(QueryModeHandler):
        name = "whole"
        unit = Unit.IMAGE

        def target(self, results, config, height, width):
            return LabelTarget(np.zeros((height, width), dtype=np.int64))

        def unit_clicks(self, gt, superpixels, num_classes, erosion):
            return np.ones(1)

        def simulate(self, gt, revealed, superpixels, num_classes, erosion):
            return LabelTarget(np.zeros_like(gt)), int(revealed.dense)

    queries = Queries([(0, 0.9)], [(1, 1, 0.5)], np.zeros((2, 2), dtype=np.int64), (2, 2))
    assert Whole().query_results(CONFIGS["superpixel_dominant"], queries, (2, 2)) == []
    assert Whole().simulate(np.zeros((2, 2), dtype=np.int64), ImageLabels(dense=True), None, 3, 0)[1] == 1
    assert Whole.query_tag is None and not Whole.partial_labels and Whole.acquisition_defaults == {}
