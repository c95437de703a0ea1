"""The label-savings goal (issue 11), judged on a ``summary.json`` payload: on the rounds' models
(:func:`goal_check`) and on converged ones (:func:`converged_goal_check`).

The pooled-std rule: a gap between the best strategy and a random baseline counts when it is at least
:data:`GOAL_MARGIN` and more than twice the seed-weighted pooled std of the two arms' per-seed mIoU
(:func:`~ls_al_backend.simulation.stats.seed_weighted_pooled_std`: each arm's sample variance weighted by its seed
count less one), with at least two seeds on both sides. Welch's t and its degrees of freedom
(:func:`~ls_al_backend.simulation.stats.welch`) are reported beside every gap; they are not part of the rule.
"""

from __future__ import annotations

import math
from typing import Any

from ls_al_backend.simulation.results import rounded
from ls_al_backend.simulation.stats import seed_weighted_pooled_std, welch

#: The label-savings goal (issue 11): at no more than this share of the full-annotation clicks...
GOAL_CLICK_SHARE = 0.05
#: ... the best acquisition strategy reaches this share of the reference's mIoU ...
GOAL_REFERENCE_SHARE = 0.90
#: ... and beats every random baseline by at least this many mIoU points, and by more than twice the pooled std.
GOAL_MARGIN = 0.03
#: Clicks that differ by at most this share count as the same budget (runs trained again on their final labels).
SAME_CLICKS_TOLERANCE = 0.05


def _finite(value: float, digits: int = 4) -> float | None:
    return rounded(value, digits) if math.isfinite(value) else None


def compare_arms(gap: float, best: list[float], other: list[float]) -> dict[str, Any]:
    """One gap of the goal: ``gap`` (mean of ``best`` less mean of ``other``, per-seed mIoU as fractions), the
    seed-weighted pooled std, Welch's t and degrees of freedom (None for an arm with one seed, and for a t or df that
    is not finite), and whether the gap counts (the module's pooled-std rule)."""
    both = len(best) >= 2 and len(other) >= 2
    pooled = seed_weighted_pooled_std(best, other) if both else None
    test = welch(best, other) if both else None
    return {
        "gap": rounded(gap),
        "pooled_std": None if pooled is None else rounded(pooled),
        "welch_t": None if test is None else _finite(test.t, 2),
        "welch_df": None if test is None else _finite(test.df, 1),
        "met": both and gap >= GOAL_MARGIN and gap > 2 * pooled,
    }


def goal_check(summary: dict[str, Any]) -> dict[str, Any] | None:
    """Whether the best non-random strategy meets the goal (the ``GOAL_*`` constants), with its numbers.

    Each strategy is judged at its last round within :data:`GOAL_CLICK_SHARE` of its mode's full-annotation clicks,
    against every random baseline at the same round (every run spends the same budget per round).
    """
    strategies, reference = summary["strategies"], summary["reference"]
    if reference is None or reference["miou_mean"] is None:
        return None

    def budget_round(entry: dict[str, Any]) -> int | None:
        within = [i for i, share in enumerate(entry["click_share_per_round"]) if (share or 0.0) <= GOAL_CLICK_SHARE]
        return within[-1] if within else None

    candidates = {
        name: (entry, budget_round(entry))
        for name, entry in strategies.items()
        if not entry["random_baseline"] and budget_round(entry) is not None
    }
    baselines = {name: entry for name, entry in strategies.items() if entry["random_baseline"]}
    if not candidates:
        return None
    best_name = max(candidates, key=lambda name: candidates[name][0]["miou_mean_per_round"][candidates[name][1]])
    best, index = candidates[best_name]
    best_miou = best["miou_mean_per_round"][index]
    gaps = {}
    for name, baseline in baselines.items():
        if index >= len(baseline["miou_mean_per_round"]):
            continue
        gaps[name] = compare_arms(
            best_miou - baseline["miou_mean_per_round"][index],
            best["miou_per_seed_per_round"][index],
            baseline["miou_per_seed_per_round"][index],
        )
    share = best_miou / reference["miou_mean"]
    return {
        "best_strategy": best_name,
        "round": index,
        "clicks": best["clicks_per_round"][index],
        "click_share_of_full": best["click_share_per_round"][index],
        "miou_mean": rounded(best_miou),
        "share_of_reference": rounded(share),
        "gaps_to_random": gaps,
        "met": share >= GOAL_REFERENCE_SHARE and bool(gaps) and all(gap["met"] for gap in gaps.values()),
    }


def converged_goal_check(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The goal (the ``GOAL_*`` constants) judged on converged models: every run's final labels trained again from
    ImageNet weights (``final_labels_retrained``) in place of its last round's model.

    The best non-random strategy trained again, with its final labels within :data:`GOAL_CLICK_SHARE` of its mode's
    full-annotation clicks, against every random baseline trained again on no more clicks (up to
    :data:`SAME_CLICKS_TOLERANCE` over the best one's). A random baseline with no final training is stood in for
    by one of its query mode trained again on the same clicks (within that tolerance; ``stood_in_for``: random
    labels of one mode at one budget are one draw whether answered round by round or at once);
    ``not_trained_again`` names those with neither, and a verdict that leaves one out is not met. None when no
    non-random strategy was trained again.
    """
    strategies, reference = summary["strategies"], summary["reference"]
    if reference is None or reference["miou_mean"] is None:
        return None
    candidates = {
        name: entry
        for name, entry in strategies.items()
        if not entry["random_baseline"]
        and entry["final_labels_retrained"] is not None
        and (entry["click_share_of_full"] or 0.0) <= GOAL_CLICK_SHARE
    }
    if not candidates:
        return None
    best_name = max(candidates, key=lambda name: candidates[name]["final_labels_retrained"]["miou_mean"])
    best = candidates[best_name]
    retrained = best["final_labels_retrained"]
    baselines = {
        name: entry
        for name, entry in strategies.items()
        if entry["random_baseline"] and entry["final_clicks"] <= (1 + SAME_CLICKS_TOLERANCE) * best["final_clicks"]
    }
    gaps = {}
    for name, baseline in baselines.items():
        other = baseline["final_labels_retrained"]
        if other is None:
            continue
        gap = retrained["miou_mean"] - other["miou_mean"]
        gaps[name] = compare_arms(gap, retrained["miou_per_seed"], other["miou_per_seed"]) | {"seeds": other["seeds"]}
    stood_in_for = {}
    for name, entry in sorted(baselines.items()):
        if entry["final_labels_retrained"] is not None or entry["query_mode"] is None:
            continue
        stand_ins = [
            other
            for other in sorted(gaps)
            if baselines[other]["query_mode"] == entry["query_mode"]
            and abs(baselines[other]["final_clicks"] - entry["final_clicks"])
            <= SAME_CLICKS_TOLERANCE * entry["final_clicks"]
        ]
        if stand_ins:
            stood_in_for[name] = stand_ins[0]
    not_trained_again = sorted(
        name
        for name, entry in baselines.items()
        if entry["final_labels_retrained"] is None and name not in stood_in_for
    )
    share = retrained["miou_mean"] / reference["miou_mean"]
    return {
        "best_strategy": best_name,
        "seeds": retrained["seeds"],
        "epochs": retrained["epochs"],
        "clicks": best["final_clicks"],
        "click_share_of_full": best["click_share_of_full"],
        "miou_mean": retrained["miou_mean"],
        "miou_std": retrained["miou_std"],
        "share_of_reference": rounded(share),
        "gaps_to_random": gaps,
        "stood_in_for": stood_in_for,
        "not_trained_again": not_trained_again,
        "met": share >= GOAL_REFERENCE_SHARE
        and bool(gaps)
        and all(gap["met"] for gap in gaps.values())
        and not not_trained_again,
    }
