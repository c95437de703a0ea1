"""One round's candidates and which of them a round takes under its budget.

The visiting order is uniform at random (round 0, the random baselines, ``task_order="random"``), the acquisition's
stochastic sampling, or decreasing ``score / estimated cost``. Random units and whole images are taken in that order
while they fit, stopping at the first that does not; scored regions and pixels by Cai et al.'s greedy knapsack,
which skips what does not fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from ls_al_backend.acquisition.api import AcquisitionConfig
from ls_al_backend.acquisition.sampling import stochastic_sample
from ls_al_backend.acquisition.selection import budgeted_greedy, cap_per_group


@dataclass
class Candidates:
    """Candidate units of one round: image index, unit (region id / flat pixel / 0), score, the cost the ranking
    divides by (the engine's estimate: predicted classes for multi-class regions, 1 for a whole image, whose outline's
    cost nobody knows before it is drawn, else the clicks), the annotator's clicks (from the ground truth) and what
    the budget is charged (the clicks, or the unit's pixels)."""

    images: list[int] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    estimated_costs: list[float] = field(default_factory=list)
    clicks: list[float] = field(default_factory=list)
    charges: list[float] = field(default_factory=list)

    def extend(
        self,
        image: int,
        units: Iterable[int],
        scores: Iterable[float],
        estimated_costs: Iterable[float],
        clicks: Iterable[float],
        charges: Iterable[float],
    ) -> None:
        units = list(units)
        self.images += [image] * len(units)
        self.units += units
        self.scores += list(scores)
        self.estimated_costs += list(estimated_costs)
        self.clicks += list(clicks)
        self.charges += list(charges)


def select_within_budget(
    candidates: Candidates,
    budget: float,
    acquisition: AcquisitionConfig,
    generator: torch.Generator,
    random_order: bool,
    in_queue_order: bool,
    max_units_per_image: int | None,
) -> list[int]:
    """Positions in ``candidates`` of the units a round takes under ``budget``, charging each unit what the annotator
    really spends on it. ``random_order`` visits them uniformly at random (``generator`` draws the order);
    ``in_queue_order`` (whole images) takes them in score order until one does not fit, as random units are taken."""
    if not candidates.units:
        return []
    scores = torch.tensor(candidates.scores, dtype=torch.float64)
    estimated = torch.tensor(candidates.estimated_costs, dtype=torch.float64)
    if random_order:
        order = torch.randperm(len(candidates.units), generator=generator)
    elif acquisition.sampling != "top":
        order = stochastic_sample(
            scores / estimated, len(candidates.units), acquisition.sampling, acquisition.temperature, generator
        )
    else:
        order = torch.argsort(scores / estimated, descending=True, stable=True)
    if random_order or in_queue_order:
        # In queue order, the first always and then while they fit, stopping at the first that does not: an
        # annotator following the queue cannot skip an image whose outline would not fit (its cost is known
        # only once drawn), and skipping a random unit for a cheaper one would favour cheap units. An overspent
        # or unspent budget carries over to the next round, so cumulative clicks stay within one unit of the plan.
        if budget <= 0:
            return []
        spent = torch.cumsum(torch.tensor(candidates.charges, dtype=torch.float64)[order], 0)
        chosen = order[: max(1, int((spent <= budget + 1e-9).sum()))]
        if max_units_per_image:
            chosen = cap_per_group(chosen, torch.tensor(candidates.images), max_units_per_image)
        return chosen.tolist()
    chosen = budgeted_greedy(
        scores,
        torch.tensor(candidates.charges, dtype=torch.float64),
        budget,
        groups=torch.tensor(candidates.images) if max_units_per_image else None,
        max_per_group=max_units_per_image,
        order=order,
    )
    return chosen.tolist()
