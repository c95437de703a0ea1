"""``summary.md``: the markdown tables of a ``summary.json`` payload (mIoU per round, the goal, the final labels
trained again, equal editor actions, clicks to reach an mIoU, IoU per class)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ls_al_backend.simulation.goal import GOAL_CLICK_SHARE, GOAL_MARGIN, GOAL_REFERENCE_SHARE, SAME_CLICKS_TOLERANCE
from ls_al_backend.simulation.summary import summarise


def format_percent(mean: float | None, std: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal, "52.8 ± 3.8" (no std: "52.8"; no mean: "-")."""
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def gap_spread(gap: dict[str, Any]) -> str:
    """How a gap of the goal compares with the seeds' spread: "pooled std 4.7, Welch t 3.4, df 5.6" (the
    seed-weighted pooled std and Welch's test of :mod:`.goal`), or "one seed: no spread"."""
    if gap["pooled_std"] is None:
        return "one seed: no spread"
    welch_t = "inf" if gap["welch_t"] is None else f"{gap['welch_t']:.1f}"
    welch_df = "-" if gap["welch_df"] is None else f"{gap['welch_df']:.1f}"
    return f"pooled std {100 * gap['pooled_std']:.1f}, Welch t {welch_t}, df {welch_df}"


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
            f"{name} {100 * gap['gap']:+.1f} ({gap_spread(gap)})" for name, gap in goal["gaps_to_random"].items()
        )
        lines += [
            "",
            f"Goal (≤ {100 * GOAL_CLICK_SHARE:.0f}% of full-annotation clicks, ≥ {100 * GOAL_REFERENCE_SHARE:.0f}% "
            f"of the reference, ≥ {100 * GOAL_MARGIN:.0f} mIoU points and > 2 seed-weighted pooled std over every "
            f"random baseline at the same round): best acquisition strategy {goal['best_strategy']}, round "
            f"{goal['round']} ({goal['clicks']:g} clicks, {100 * goal['click_share_of_full']:.2f}% of full), "
            f"{100 * goal['miou_mean']:.1f} mIoU = {100 * goal['share_of_reference']:.0f}% of the reference; gaps: "
            f"{gaps or 'no baseline finished'}; **{'met' if goal['met'] else 'not met'}** (a gap counts only with at "
            "least 2 seeds on both sides).",
        ]
    converged = summary["goal_converged"]
    if converged:
        gaps = ", ".join(
            f"{name} {100 * gap['gap']:+.1f} ({gap_spread(gap)}; {gap['seeds']} seed(s))"
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
