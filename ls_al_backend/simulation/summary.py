"""The ``summary.json`` payload of a set of runs: per strategy the mIoU over seeds per round, clicks, editor
actions, clicks to reach each mIoU, per-class IoU and the final labels trained again; the reference; the goal."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ls_al_backend.simulation.goal import converged_goal_check, goal_check
from ls_al_backend.simulation.results import (
    ResultSet,
    action_budgets,
    clicks_to_reach,
    mean_std,
    miou_at_actions,
    miou_targets,
    rounded,
    values_per_round,
)


def summarise(paths: Iterable[str | Path]) -> dict[str, Any]:
    """The ``summary.json`` payload of result files or run folders (mIoU as fractions, not percent)."""
    results = ResultSet.read(paths)
    summary: dict[str, Any] = {"reference": None, "strategies": {}, "in_progress": sorted(results.in_progress)}
    if results.references:
        full, full_std = mean_std(ref["miou"] for ref in results.references)
        half, half_std = mean_std(ref.get("miou_at_half_steps") for ref in results.references)
        summary["reference"] = {
            "miou_mean": rounded(full),
            "miou_std": rounded(full_std),
            "seeds": len(results.references),
            "miou_at_half_steps": rounded(half),
            "miou_at_half_steps_std": rounded(half_std),
            "train_steps": results.references[0].get("train_steps"),
            "per_class_iou": per_class_iou(results.references),
        }
    for strategy in sorted(results.strategies):
        runs = results.strategies[strategy]
        per_round = [mean_std(values) for values in values_per_round(runs, "miou")]
        last = [rows[len(per_round) - 1] for rows in runs]
        summary["strategies"][strategy] = {
            "seeds": len(runs),
            "random_baseline": strategy in results.randoms,
            "query_mode": results.modes.get(strategy),
            "final_miou_mean": rounded(per_round[-1][0]),
            "final_miou_std": rounded(per_round[-1][1]),
            "final_clicks": rounded(mean_std(row["clicks_cumulative"] for row in last)[0], 1),
            "click_share_of_full": rounded(mean_std(row.get("click_share_of_full") for row in last)[0], 5),
            "pixel_share": rounded(mean_std(row["labelled_pixel_share"] for row in last)[0], 6),
            "miou_mean_per_round": [rounded(mean) for mean, _ in per_round],
            "miou_std_per_round": [rounded(std) for _, std in per_round],
            "miou_per_seed_per_round": [[rounded(v) for v in values] for values in values_per_round(runs, "miou")],
            "clicks_per_round": [rounded(mean_std(v)[0], 1) for v in values_per_round(runs, "clicks_cumulative")],
            "click_share_per_round": [
                rounded(mean_std(v)[0], 5) for v in values_per_round(runs, "click_share_of_full")
            ],
            "train_steps_per_round": [rounded(mean_std(v)[0], 1) for v in values_per_round(runs, "train_steps")],
            "actions_per_round": [
                rounded(mean_std(v)[0], 1) for v in values_per_round(runs, "annotator_actions_cumulative")
            ],
            "miou_at_actions": {
                str(budget): [rounded(value) for value in found]
                for budget in action_budgets(results)
                if (found := miou_at_actions(runs, budget)) is not None
            },
            "clicks_to_reach": {
                f"{target:g}": {
                    "seeds_reached": len(reached),
                    "clicks_mean": rounded(mean_std(reached)[0], 1),
                    "clicks_std": rounded(mean_std(reached)[1], 1),
                }
                for target in miou_targets(results)
                if (reached := [c for rows in runs if (c := clicks_to_reach(rows, target)) is not None])
            },
            "train_seconds_total": rounded(sum(sum(r.get("train_seconds") or 0 for r in rows) for rows in runs), 1),
            "per_class_iou_last": per_class_iou(last),
            "final_labels_retrained": final_labels_retrained(results.finals.get(strategy, [])),
        }
    summary["goal"] = goal_check(summary)
    summary["goal_converged"] = converged_goal_check(summary)
    return summary


def final_labels_retrained(finals: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean and std over seeds of the runs' ``final`` (the final labels trained again from ImageNet weights), with
    the epochs and steps it trained and the same seeds' last-round mIoU (``last_round_miou_*``, which the strategy's
    ``final_miou_*`` averages over all its seeds); None when no run has one."""
    if not finals:
        return None
    miou, miou_std = mean_std(final["miou"] for final in finals)
    last_round, last_round_std = mean_std(final["last_round_miou"] for final in finals)
    return {
        "seeds": len(finals),
        "epochs": sorted({final["epochs"] for final in finals}),
        "train_steps_mean": rounded(mean_std(final["train_steps"] for final in finals)[0], 1),
        "miou_mean": rounded(miou),
        "miou_std": rounded(miou_std),
        "miou_per_seed": [rounded(final["miou"]) for final in finals],
        "last_round_miou_mean": rounded(last_round),
        "last_round_miou_std": rounded(last_round_std),
        "per_class_iou": per_class_iou(finals),
    }


def per_class_iou(rows: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """``{class: [mean, std]}`` of the rows' ``per_class_iou`` (one row per seed; a class absent from the
    evaluation images, IoU None, is left out of its mean)."""
    names = list(dict.fromkeys(name for row in rows for name in row.get("per_class_iou") or {}))
    values = {name: mean_std((row.get("per_class_iou") or {}).get(name) for row in rows) for name in names}
    return {name: [rounded(mean), rounded(std)] for name, (mean, std) in values.items()}
