"""Reading results back: ``summary.json``, summary tables and learning curves over strategies and seeds.

Every figure over seeds is a mean with the sample standard deviation (``ddof=1``; None with a single seed). Only
finished runs count (every configured round present); unfinished ones are listed as in progress.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ls_al_backend.modes import Unit, registered
from ls_al_backend.simulation.annotator import editor_actions
from ls_al_backend.simulation.config import LEGACY_MODE_NAMES

#: The label-savings goal (issue 11): at no more than this share of the full-annotation clicks...
GOAL_CLICK_SHARE = 0.05
#: ... the best acquisition strategy reaches this share of the reference's mIoU ...
GOAL_REFERENCE_SHARE = 0.90
#: ... and beats every random baseline by at least this many mIoU points, and by more than twice the pooled std.
GOAL_MARGIN = 0.03
#: Clicks that differ by at most this share count as the same budget (runs trained again on their final labels).
SAME_CLICKS_TOLERANCE = 0.05
#: The editor-action budgets at which strategies are compared at equal actions (every this many actions).
ACTION_STEP = 1000
#: The mIoU levels at which the clicks each strategy needs are compared (every this many mIoU points, as fractions).
MIOU_TARGET_STEP = 0.03


def result_files(paths: Iterable[str | Path]) -> list[Path]:
    """``results.json`` / ``reference.json`` files from files or run folders (a folder gives the ones it holds)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [path / name for name in ("results.json", "reference.json") if (path / name).is_file()]
        elif path.is_file():
            found.append(path)
    return found


@dataclass
class ResultSet:
    """Result files read back: every finished run's rows per strategy, the finished runs' ``final`` (their final
    labels trained again, where a run has it, with that run's ``last_round_miou``) per strategy, the references,
    the strategies whose heuristic is ``random`` (the baselines), each strategy's query mode (under its current
    name) and the runs still in progress (``strategy seed N``)."""

    strategies: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    finals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    references: list[dict[str, Any]] = field(default_factory=list)
    randoms: set[str] = field(default_factory=set)
    modes: dict[str, str | None] = field(default_factory=dict)
    in_progress: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, paths: Iterable[str | Path]) -> ResultSet:
        found = cls()
        for file in result_files(paths):
            payload = json.loads(file.read_text())
            if payload.get("kind") == "reference":
                if payload.get("miou") is not None:
                    found.references.append(payload)
                continue
            query_mode = payload.get("config", {}).get("query_mode")
            rows = with_editor_actions(payload.get("rows") or [], query_mode)
            if len(rows) < payload.get("config", {}).get("rounds", len(rows)) or not rows:
                found.in_progress.append(f"{payload.get('strategy')} seed {payload.get('seed')}")
                continue
            found.strategies.setdefault(payload["strategy"], []).append(rows)
            found.modes[payload["strategy"]] = LEGACY_MODE_NAMES.get(query_mode or "", query_mode)
            if payload.get("final"):
                final = payload["final"] | {"last_round_miou": rows[-1]["miou"]}
                found.finals.setdefault(payload["strategy"], []).append(final)
            if str(payload.get("config", {}).get("acquisition", {}).get("heuristic", "")).lower() == "random":
                found.randoms.add(payload["strategy"])
        return found

    @property
    def reference_miou(self) -> float | None:
        return float(np.mean([ref["miou"] for ref in self.references])) if self.references else None


def with_editor_actions(rows: list[dict[str, Any]], query_mode: str | None) -> list[dict[str, Any]]:
    """The rows with ``annotator_actions_cumulative`` (:func:`editor_actions`) filled in where a run recorded
    before it lacks them, from its clicks, queries (``queries_cumulative``; in a query mode the units selected
    so far) and labelled images. Left out for an unknown mode and for whole images without
    ``queries_cumulative`` (their outlined regions are not in the row)."""
    mode = LEGACY_MODE_NAMES.get(query_mode or "", query_mode)
    handlers = {handler.name: handler for handler in registered()}
    if mode not in handlers:
        return rows
    filled, selected = [], 0
    for row in rows:
        selected += row.get("units_selected", 0)
        queries = row.get("queries_cumulative", None if handlers[mode].unit is Unit.IMAGE else selected)
        needed = {"clicks_cumulative", "labelled_images"} <= row.keys() and queries is not None
        if "annotator_actions_cumulative" not in row and needed:
            actions = editor_actions(mode, row["clicks_cumulative"], queries, row["labelled_images"])
            row = {**row, "annotator_actions_cumulative": actions}
        filled.append(row)
    return filled


def miou_at_actions(runs: list[list[dict[str, Any]]], actions: float) -> tuple[float, float | None] | None:
    """Mean and std over seeds of the mIoU at ``actions`` editor actions, each seed's curve interpolated linearly
    between its rounds; None unless every seed's rounds span ``actions`` (no extrapolation)."""
    values = []
    for rows in runs:
        x = [row.get("annotator_actions_cumulative") for row in rows]
        if None in x or not x[0] <= actions <= x[-1]:
            return None
        values.append(float(np.interp(actions, x, [row["miou"] for row in rows])))
    return mean_std(values)


def clicks_to_reach(rows: list[dict[str, Any]], target: float) -> float | None:
    """Cumulative clicks at which one run's mIoU first reaches ``target``, interpolated linearly between the round
    below it and the round that reaches it (the first round's clicks when that round already does); None when no
    round reaches it. Fewer clicks to the same mIoU is the label saving."""
    previous = None
    for row in rows:
        if row["miou"] >= target:
            if previous is None:
                return float(row["clicks_cumulative"])
            fraction = (target - previous["miou"]) / (row["miou"] - previous["miou"])
            return float(
                previous["clicks_cumulative"] + fraction * (row["clicks_cumulative"] - previous["clicks_cumulative"])
            )
        previous = row
    return None


def miou_targets(results: ResultSet) -> list[float]:
    """Every :data:`MIOU_TARGET_STEP` of mIoU from the lowest first-round mIoU up to the highest any run reached."""
    runs = [rows for seeds in results.strategies.values() for rows in seeds if rows]
    if not runs:
        return []
    low = min(rows[0]["miou"] for rows in runs)
    high = max(row["miou"] for rows in runs for row in rows)
    first, last = math.ceil(low / MIOU_TARGET_STEP - 1e-9), math.floor(high / MIOU_TARGET_STEP + 1e-9)
    return [round(step * MIOU_TARGET_STEP, 4) for step in range(first, last + 1)]


def mean_std(values: Iterable[float | None]) -> tuple[float, float | None]:
    """Mean and sample std (None for one value) of the values that are not None."""
    array = np.array([value for value in values if value is not None], dtype=float)
    if array.size == 0:
        return float("nan"), None
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def _per_round(runs: list[list[dict[str, Any]]], key: str) -> list[list[float | None]]:
    length = min(len(rows) for rows in runs)
    return [[rows[i].get(key) for rows in runs] for i in range(length)]


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def summarise(paths: Iterable[str | Path]) -> dict[str, Any]:
    """The ``summary.json`` payload of result files or run folders (mIoU as fractions, not percent)."""
    results = ResultSet.read(paths)
    summary: dict[str, Any] = {"reference": None, "strategies": {}, "in_progress": sorted(results.in_progress)}
    if results.references:
        full, full_std = mean_std(ref["miou"] for ref in results.references)
        half, half_std = mean_std(ref.get("miou_at_half_steps") for ref in results.references)
        summary["reference"] = {
            "miou_mean": _rounded(full),
            "miou_std": _rounded(full_std),
            "seeds": len(results.references),
            "miou_at_half_steps": _rounded(half),
            "miou_at_half_steps_std": _rounded(half_std),
            "train_steps": results.references[0].get("train_steps"),
            "per_class_iou": per_class_iou(results.references),
        }
    for strategy in sorted(results.strategies):
        runs = results.strategies[strategy]
        per_round = [mean_std(values) for values in _per_round(runs, "miou")]
        last = [rows[len(per_round) - 1] for rows in runs]
        summary["strategies"][strategy] = {
            "seeds": len(runs),
            "random_baseline": strategy in results.randoms,
            "query_mode": results.modes.get(strategy),
            "final_miou_mean": _rounded(per_round[-1][0]),
            "final_miou_std": _rounded(per_round[-1][1]),
            "final_clicks": _rounded(mean_std(row["clicks_cumulative"] for row in last)[0], 1),
            "click_share_of_full": _rounded(mean_std(row.get("click_share_of_full") for row in last)[0], 5),
            "pixel_share": _rounded(mean_std(row["labelled_pixel_share"] for row in last)[0], 6),
            "miou_mean_per_round": [_rounded(mean) for mean, _ in per_round],
            "miou_std_per_round": [_rounded(std) for _, std in per_round],
            "clicks_per_round": [_rounded(mean_std(v)[0], 1) for v in _per_round(runs, "clicks_cumulative")],
            "click_share_per_round": [_rounded(mean_std(v)[0], 5) for v in _per_round(runs, "click_share_of_full")],
            "train_steps_per_round": [_rounded(mean_std(v)[0], 1) for v in _per_round(runs, "train_steps")],
            "actions_per_round": [
                _rounded(mean_std(v)[0], 1) for v in _per_round(runs, "annotator_actions_cumulative")
            ],
            "miou_at_actions": {
                str(budget): [_rounded(value) for value in found]
                for budget in action_budgets(results)
                if (found := miou_at_actions(runs, budget)) is not None
            },
            "clicks_to_reach": {
                f"{target:g}": {
                    "seeds_reached": len(reached),
                    "clicks_mean": _rounded(mean_std(reached)[0], 1),
                    "clicks_std": _rounded(mean_std(reached)[1], 1),
                }
                for target in miou_targets(results)
                if (reached := [c for rows in runs if (c := clicks_to_reach(rows, target)) is not None])
            },
            "train_seconds_total": _rounded(sum(sum(r.get("train_seconds") or 0 for r in rows) for rows in runs), 1),
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
        "train_steps_mean": _rounded(mean_std(final["train_steps"] for final in finals)[0], 1),
        "miou_mean": _rounded(miou),
        "miou_std": _rounded(miou_std),
        "last_round_miou_mean": _rounded(last_round),
        "last_round_miou_std": _rounded(last_round_std),
        "per_class_iou": per_class_iou(finals),
    }


def per_class_iou(rows: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """``{class: [mean, std]}`` of the rows' ``per_class_iou`` (one row per seed; a class absent from the
    evaluation images, IoU None, is left out of its mean)."""
    names = list(dict.fromkeys(name for row in rows for name in row.get("per_class_iou") or {}))
    values = {name: mean_std((row.get("per_class_iou") or {}).get(name) for row in rows) for name in names}
    return {name: [_rounded(mean), _rounded(std)] for name, (mean, std) in values.items()}


def action_budgets(results: ResultSet) -> list[int]:
    """Every :data:`ACTION_STEP` editor actions up to the most any finished run spent."""
    last_rows = [rows[-1] for runs in results.strategies.values() for rows in runs]
    spent = [row.get("annotator_actions_cumulative") or 0.0 for row in last_rows]
    return list(range(ACTION_STEP, int(max(spent, default=0.0)) + 1, ACTION_STEP))


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
    best_miou, best_std = best["miou_mean_per_round"][index], best["miou_std_per_round"][index] or 0.0
    gaps = {}
    for name, baseline in baselines.items():
        if index >= len(baseline["miou_mean_per_round"]):
            continue
        other, other_std = baseline["miou_mean_per_round"][index], baseline["miou_std_per_round"][index] or 0.0
        pooled = math.sqrt((best_std**2 + other_std**2) / 2)
        gaps[name] = {
            "gap": _rounded(best_miou - other),
            "pooled_std": _rounded(pooled),
            "met": best_miou - other >= GOAL_MARGIN
            and best_miou - other > 2 * pooled
            and min(best["seeds"], baseline["seeds"]) >= 2,
        }
    share = best_miou / reference["miou_mean"]
    return {
        "best_strategy": best_name,
        "round": index,
        "clicks": best["clicks_per_round"][index],
        "click_share_of_full": best["click_share_per_round"][index],
        "miou_mean": _rounded(best_miou),
        "share_of_reference": _rounded(share),
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
        pooled = math.sqrt(((retrained["miou_std"] or 0.0) ** 2 + (other["miou_std"] or 0.0) ** 2) / 2)
        gap = retrained["miou_mean"] - other["miou_mean"]
        gaps[name] = {
            "gap": _rounded(gap),
            "pooled_std": _rounded(pooled),
            "seeds": other["seeds"],
            "met": gap >= GOAL_MARGIN and gap > 2 * pooled and min(retrained["seeds"], other["seeds"]) >= 2,
        }
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
        "share_of_reference": _rounded(share),
        "gaps_to_random": gaps,
        "stood_in_for": stood_in_for,
        "not_trained_again": not_trained_again,
        "met": share >= GOAL_REFERENCE_SHARE
        and bool(gaps)
        and all(gap["met"] for gap in gaps.values())
        and not not_trained_again,
    }


def format_percent(mean: float | None, std: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal, "52.8 ± 3.8" (no std: "52.8"; no mean: "-")."""
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def summary_table(paths: Iterable[str | Path]) -> str:
    """Markdown of :func:`summarise`: per strategy the mIoU (mean ± std over seeds) after every round with its
    cumulative clicks, the final click share of full annotation and labelled-pixel share, and the share of the
    fully supervised reference; then the reference and the goal check."""
    summary = summarise(paths)
    reference = summary["reference"]
    lines = [
        "| strategy | seeds | mIoU % per round (mean ± std; clicks) | clicks / full | labelled pixels | "
        "last / fully supervised |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in summary["strategies"].items():
        cells = [
            f"{format_percent(mean, std)} ({clicks:g})"
            for mean, std, clicks in zip(
                entry["miou_mean_per_round"], entry["miou_std_per_round"], entry["clicks_per_round"], strict=True
            )
        ]
        ratio = "-"
        if reference and reference["miou_mean"] and entry["final_miou_mean"] is not None:
            ratio = f"{100 * entry['final_miou_mean'] / reference['miou_mean']:.0f}%"
        share = entry["click_share_of_full"]
        lines.append(
            f"| {name} | {entry['seeds']} | {' → '.join(cells)} | {'-' if share is None else f'{100 * share:.2f}%'} "
            f"| {100 * entry['pixel_share']:.3g}% | {ratio} |"
        )
    if reference:
        lines.append(
            f"| fully supervised (every pool pixel) | {reference['seeds']} | "
            f"{format_percent(reference['miou_mean'], reference['miou_std'])} (half the steps: "
            f"{format_percent(reference['miou_at_half_steps'], reference['miou_at_half_steps_std'])}) "
            "| 100% | - | 100% |"
        )
    goal = summary["goal"]
    if goal:
        gaps = ", ".join(
            f"{name} {100 * gap['gap']:+.1f} (pooled std {100 * gap['pooled_std']:.1f})"
            for name, gap in goal["gaps_to_random"].items()
        )
        lines += [
            "",
            f"Goal (≤ {100 * GOAL_CLICK_SHARE:.0f}% of full-annotation clicks, ≥ {100 * GOAL_REFERENCE_SHARE:.0f}% "
            f"of the reference, ≥ {100 * GOAL_MARGIN:.0f} mIoU points and > 2 pooled std over every random "
            f"baseline at the same round): best acquisition strategy {goal['best_strategy']}, round "
            f"{goal['round']} ({goal['clicks']:g} clicks, {100 * goal['click_share_of_full']:.2f}% of full), "
            f"{100 * goal['miou_mean']:.1f} mIoU = {100 * goal['share_of_reference']:.0f}% of the reference; gaps: "
            f"{gaps or 'no baseline finished'}; **{'met' if goal['met'] else 'not met'}** (a gap counts only with at "
            "least 2 seeds on both sides).",
        ]
    converged = summary["goal_converged"]
    if converged:
        gaps = ", ".join(
            f"{name} {100 * gap['gap']:+.1f} (pooled std {100 * gap['pooled_std']:.1f}, {gap['seeds']} seed(s))"
            for name, gap in converged["gaps_to_random"].items()
        )
        left_out = converged["not_trained_again"]
        stood_in = "; ".join(f"{other} stands for {name}" for name, other in converged["stood_in_for"].items())
        lines += [
            "",
            "The same goal on converged models (each run's final labels trained again from ImageNet weights; random "
            f"baselines on no more clicks, {100 * SAME_CLICKS_TOLERANCE:.0f}% allowed): best acquisition strategy "
            f"{converged['best_strategy']} ({converged['seeds']} seed(s) trained again, "
            f"{converged['clicks']:g} clicks, "
            f"{100 * converged['click_share_of_full']:.2f}% of full), "
            f"{format_percent(converged['miou_mean'], converged['miou_std'])} mIoU = "
            f"{100 * converged['share_of_reference']:.0f}% of the reference; "
            f"gaps: {gaps or 'no baseline trained again'}"
            f"{' (' + stood_in + ': the same query mode)' if stood_in else ''}"
            f"{'; random baselines not trained again: ' + ', '.join(left_out) if left_out else ''}; "
            f"**{'met' if converged['met'] else 'not met'}**.",
        ]
    lines += final_labels_table(summary)
    lines += actions_table(summary)
    lines += clicks_to_reach_table(summary)
    lines += per_class_table(summary)
    if summary["in_progress"]:
        lines += ["", f"In progress (not counted): {', '.join(summary['in_progress'])}."]
    return "\n".join(lines) + "\n"


def _markdown_section(intro: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown lines: a blank line, the intro, a blank line and a table of ``columns`` with ``rows`` of cells."""
    return [
        "",
        intro,
        "",
        f"| {' | '.join(columns)} |",
        f"|{'---|' * len(columns)}",
        *(f"| {' | '.join(cells)} |" for cells in rows),
    ]


def final_labels_table(summary: dict[str, Any]) -> list[str]:
    """Markdown lines: the last round's mIoU beside the same labels trained again (``final_labels_retrained``), both
    over the seeds that were trained again, and its share of the reference; no lines when no run has a final
    training."""
    entries = {
        name: entry for name, entry in summary["strategies"].items() if entry["final_labels_retrained"] is not None
    }
    if not entries:
        return []
    reference = summary["reference"]
    rows = []
    for name, entry in entries.items():
        final = entry["final_labels_retrained"]
        ratio = "-"
        if reference and reference["miou_mean"] and final["miou_mean"] is not None:
            ratio = f"{100 * final['miou_mean'] / reference['miou_mean']:.0f}%"
        rows.append(
            [
                name,
                str(final["seeds"]),
                format_percent(final["last_round_miou_mean"], final["last_round_miou_std"]),
                "/".join(str(epochs) for epochs in final["epochs"]),
                f"{final['train_steps_mean']:g}",
                format_percent(final["miou_mean"], final["miou_std"]),
                ratio,
            ]
        )
    return _markdown_section(
        "The final labels trained again from ImageNet weights (`--final-epochs`), beside the last round's mIoU under "
        "the rounds' training rule (both mean ± std over the seeds that were trained again):",
        [
            "strategy",
            "seeds",
            "last round mIoU %",
            "epochs",
            "steps",
            "retrained mIoU %",
            "retrained / fully supervised",
        ],
        rows,
    )


def actions_table(summary: dict[str, Any]) -> list[str]:
    """Markdown lines: every strategy's mIoU at equal editor actions (``miou_at_actions``) and its actions per
    round; no lines when no run records actions."""
    budgets = sorted({int(budget) for entry in summary["strategies"].values() for budget in entry["miou_at_actions"]})
    if not budgets:
        return []
    rows = []
    for name, entry in summary["strategies"].items():
        at = entry["miou_at_actions"]
        cells = [format_percent(*at[str(budget)]) if str(budget) in at else "-" for budget in budgets]
        spent = " → ".join(f"{actions:g}" for actions in entry["actions_per_round"] if actions is not None)
        rows.append([name, spent or "-", *cells])
    return _markdown_section(
        "At equal editor actions (key presses and clicks in Label Studio: the clicks above, one press selecting "
        "each query, two per region a whole image outlines, one submit per labelled image); mIoU % interpolated "
        "between a run's rounds, mean ± std, - outside its rounds:",
        ["strategy", "actions per round", *(f"{budget:g}" for budget in budgets)],
        rows,
    )


def clicks_to_reach_table(summary: dict[str, Any]) -> list[str]:
    """Markdown lines: the clicks every strategy needs to first reach each mIoU level (``clicks_to_reach``, mean ±
    std over the seeds that reach it, with their count where some do not); no lines when no run reached one."""
    targets = sorted({float(target) for entry in summary["strategies"].values() for target in entry["clicks_to_reach"]})
    if not targets:
        return []
    rows = []
    for name, entry in summary["strategies"].items():
        cells = [name]
        for target in targets:
            found = entry["clicks_to_reach"].get(f"{target:g}")
            if found is None:
                cells.append("-")
                continue
            std = found["clicks_std"]
            cell = f"{found['clicks_mean']:.0f}" + ("" if std is None else f" ± {std:.0f}")
            if found["seeds_reached"] < entry["seeds"]:
                cell += f" ({found['seeds_reached']}/{entry['seeds']})"
            cells.append(cell)
        rows.append(cells)
    return _markdown_section(
        "Clicks to first reach an mIoU (each seed's curve interpolated between the round below the level and the "
        "round that reaches it, or the first round's clicks where that round already does; mean ± std over the seeds "
        "that reach it, (k/n) where only k of n seeds do, - where none does; fewer clicks to the same level is the "
        "label saving):",
        ["strategy", *(f"{100 * target:g}%" for target in targets)],
        rows,
    )


def per_class_table(summary: dict[str, Any]) -> list[str]:
    """Markdown lines: every strategy's IoU per class at its last round and the reference's (mean over seeds),
    where a strategy's mIoU comes from; no lines when no run records classes."""
    entries = {name: entry["per_class_iou_last"] for name, entry in summary["strategies"].items()}
    if summary["reference"]:
        entries["fully supervised"] = summary["reference"]["per_class_iou"]
    names = list(dict.fromkeys(name for classes in entries.values() for name in classes))
    if not names:
        return []
    rows = [
        [strategy, *(format_percent(classes[name][0], None) if name in classes else "-" for name in names)]
        for strategy, classes in entries.items()
    ]
    return _markdown_section("IoU % per class at the last round (mean over seeds):", ["strategy", *names], rows)


#: What a learning-curve plot puts on its x axis: row key, axis label, scale factor, log scale.
PLOT_AXES: dict[str, tuple[str, str, float, bool]] = {
    "clicks": ("clicks_cumulative", "clicks (cumulative)", 1.0, False),
    "actions": ("annotator_actions_cumulative", "editor actions (cumulative key presses and clicks)", 1.0, False),
    "pixels": ("labelled_pixel_share", "labelled pixels (% of the pool, log scale)", 100.0, True),
}


def plot_learning_curves(
    paths: Iterable[str | Path], out_png: str | Path, title: str | None = None, x_axis: str = "clicks"
) -> Path:
    """PNG of mIoU vs cumulative clicks (``x_axis="clicks"``), editor actions (``"actions"``) or the labelled
    pixel share (``"pixels"``): one line per strategy (mean over seeds, a band of one std), strategies whose
    heuristic is ``random`` drawn grey (dotted, dash-dotted, ...) as baselines, the reference as a dashed
    horizontal line. Strategies whose runs lack the axis (editor actions of an unknown mode) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if x_axis not in PLOT_AXES:
        raise ValueError(f"x_axis must be one of {', '.join(PLOT_AXES)}, got {x_axis!r}")
    x_key, x_label, x_scale, x_log = PLOT_AXES[x_axis]
    results = ResultSet.read(paths)
    strategies, randoms = results.strategies, results.randoms

    figure, axes = plt.subplots(figsize=(8, 5))
    random_styles = iter([":", "-.", (0, (5, 2, 1, 2, 1, 2)), (0, (1, 3))] * 4)
    for strategy in sorted(strategies, key=lambda name: (name not in randoms, name)):
        runs = strategies[strategy]
        per_round = _per_round(runs, x_key)
        if any(v is None for values in per_round for v in values):
            continue  # runs that do not record this axis (editor actions of an unknown mode)
        x = np.array([[x_scale * v for v in values] for values in per_round], dtype=float).mean(axis=1)
        stats = [mean_std(None if v is None else 100 * v for v in values) for values in _per_round(runs, "miou")]
        mean = np.array([m for m, _ in stats])
        std = np.array([np.nan if s is None else s for _, s in stats])
        style = {"color": "grey", "linestyle": next(random_styles)} if strategy in randoms else {}
        label = f"{strategy} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        (line,) = axes.plot(x, mean, marker="o", markersize=3, label=label, **style)
        if len(runs) > 1:
            axes.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if results.reference_miou is not None:
        axes.axhline(100 * results.reference_miou, color="black", linestyle="--", label="fully supervised")
    if x_log:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel("mIoU (%), mean ± one std over seeds")
    axes.set_title(title or f"Active learning: mIoU vs {x_label.split(' (')[0]}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def write_summary(paths: Iterable[str | Path], out_dir: str | Path) -> list[Path]:
    """Write ``summary.json``, ``summary.md`` and the learning-curve PNGs (vs clicks, editor actions and labelled
    pixels) into ``out_dir``; returns their paths."""
    paths = list(paths)
    if not result_files(paths):
        raise ValueError(f"no results.json or reference.json in {', '.join(map(str, paths)) or 'no path given'}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summarise(paths), indent=2) + "\n")
    (out / "summary.md").write_text(summary_table(paths))
    return [
        out / "summary.json",
        out / "summary.md",
        plot_learning_curves(paths, out / "learning_curves.png"),
        plot_learning_curves(paths, out / "learning_curves_actions.png", x_axis="actions"),
        plot_learning_curves(paths, out / "learning_curves_pixels.png", x_axis="pixels"),
    ]
