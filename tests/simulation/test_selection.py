"""What a round takes under its budget: random units and whole images in order until one does not fit, scored
regions by the greedy knapsack that skips what does not fit."""

from __future__ import annotations

import torch

from ls_al_backend.acquisition.api import AcquisitionConfig
from ls_al_backend.simulation.selection import Candidates, select_within_budget


def candidates() -> Candidates:
    """Three units of three images: scores 3, 2, 1 and charges 50, 100, 10 clicks."""
    found = Candidates()
    for image, (score, clicks) in enumerate([(3.0, 50.0), (2.0, 100.0), (1.0, 10.0)]):
        found.extend(image, [0], [score], [1.0], [clicks], [clicks])
    return found


def select(in_queue_order: bool, random_order: bool = False, budget: float = 120.0) -> list[int]:
    generator = torch.Generator().manual_seed(0)
    acquisition = AcquisitionConfig.from_mapping({"heuristic": "predictive_entropy"})
    return select_within_budget(candidates(), budget, acquisition, generator, random_order, in_queue_order, None)


def test_scored_regions_skip_what_does_not_fit_and_queued_images_stop_at_it():
    assert select(in_queue_order=False) == [0, 2], "the knapsack skips the 100-click unit"
    assert select(in_queue_order=True) == [0], "the queue stops at the image whose outline does not fit"


def test_a_random_order_always_takes_its_first_unit_and_nothing_without_budget():
    assert len(select(in_queue_order=False, random_order=True, budget=1.0)) == 1, "the first, even over budget"
    assert select(in_queue_order=True, budget=0.0) == []
    assert select_within_budget(Candidates(), 10.0, AcquisitionConfig(), torch.Generator(), False, False, None) == []
