"""The label-savings goal (issue 11) across every measured regime, read from the committed summaries.

Each regime's ``summary.json`` already judges the goal (``goal``: the best acquisition strategy within 5% of its
mode's full-annotation clicks, its share of the fully supervised reference and its gap to every random baseline at
the same round). This puts those verdicts side by side, with what every superpixel of the pool answered gives
(the mode's ceiling) where it was measured, then the same goal on converged models where the regime's runs were
trained again on their final labels (``goal_converged``), and writes ``goal_across_regimes.md`` beside this file
(``README.md`` in this folder holds its tables). It also writes ``summary.json`` beside this file: the regime the
top-level README's claim rests on (:data:`CLAIM_REGIME`), with its verdict, every regime's verdicts, and the
confirmatory comparison's status. Regenerate after any summary changes:

    .venv/bin/python benchmarks/active_learning/goal_across_regimes.py
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ls_al_backend.simulation.goal import GOAL_CLICK_SHARE, GOAL_MARGIN, GOAL_REFERENCE_SHARE, SAME_CLICKS_TOLERANCE
from ls_al_backend.simulation.tables import format_percent

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "goal_across_regimes.md"
SUMMARY = HERE / "summary.json"

#: The regime the top-level README's claim rests on: the one where the best acquisition strategy clears every random
#: baseline by the goal's margin with the most seeds on both sides (the gaps of its ``goal``; the rounds' models).
CLAIM_REGIME = "gpu_inverse_sqrt_frequency"
#: The pre-registered comparison another session runs; it has no verdict until its runs are finished and summarised.
CONFIRMATORY = {
    "status": "running",
    "path": "benchmarks/active_learning/confirmatory/",
    "protocol": "benchmarks/active_learning/confirmatory/PROTOCOL.md",
}

#: Strategies whose labels are every superpixel of the pool, trained again from ImageNet weights: a mode's ceiling.
#: A strategy's mode is the prefix of its name (``sp_``: one-class answers, ``mc_``: multi-class answers).
CEILING_OF_MODE = {"sp_": "sp_dominant_every_superpixel", "mc_": "mc_every_superpixel"}


@dataclass(frozen=True)
class Regime:
    """A committed summary folder (relative to this file's folder), what sets it apart, and where its ceilings are."""

    folder: str
    setting: str
    ceilings: str | None = None  # the summary folder holding its ``*_every_superpixel`` runs, if measured


REGIMES = [
    Regime("cpu", "CPU, 240x180, 16x16 regions, unweighted loss"),
    Regime("cpu_inverse_frequency", "CPU, 240x180, 16x16 regions, inverse-frequency weighting"),
    Regime(
        "cpu_inverse_sqrt_frequency",
        "CPU, 240x180, 16x16 regions, inverse-sqrt weighting (the default)",
        ceilings="mode_ceilings/cpu_inverse_sqrt_frequency",
    ),
    Regime(
        "superpixel_8/cpu_inverse_sqrt_frequency",
        "CPU, 240x180, 8x8 regions, inverse-sqrt weighting",
        ceilings="superpixel_8/cpu_inverse_sqrt_frequency",
    ),
    Regime(
        "superpixel_8/cpu_inverse_sqrt_frequency/outline_480",
        "the same, outlines priced at 480x360",
        ceilings="superpixel_8/cpu_inverse_sqrt_frequency",
    ),
    Regime(
        "superpixel_8/cpu_inverse_sqrt_frequency_mean_teacher",
        "CPU, 240x180, 8x8 regions, inverse-sqrt weighting, with the mean teacher",
    ),
    Regime("gpu_inverse_sqrt_frequency", "GPU, 480x360, 32x32 regions, inverse-sqrt weighting"),
]


def load_summary(folder: str, root: Path = HERE) -> dict[str, Any]:
    return json.loads((root / folder / "summary.json").read_text())


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _seeds(count: int) -> str:
    return f"{count} seed{'s' if count > 1 else ''}"


def _gap(name: str, gap: dict[str, Any], seeds: int) -> str:
    """``name +9.0 (pooled std 4.7, Welch t 3.4)``: the gap, the seed-weighted pooled std and, where the summary has
    it, Welch's t; "one seed: no spread" where either side has one seed."""
    if seeds <= 1:
        return f"{name} {_points(gap['gap'])} (one seed: no spread)"
    welch = f", Welch t {gap['welch_t']:.1f}" if gap.get("welch_t") is not None else ""
    return f"{name} {_points(gap['gap'])} (pooled std {100 * gap['pooled_std']:.1f}{welch})"


def ceiling_of(strategy: str, ceilings: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``final_labels_retrained`` of the ceiling run of ``strategy``'s mode, or None where not measured."""
    if ceilings is None:
        return None
    for prefix, name in CEILING_OF_MODE.items():
        entry = ceilings["strategies"].get(name)
        if strategy.startswith(prefix) and entry is not None:
            return entry["final_labels_retrained"]
    return None


def regime_row(regime: Regime, root: Path = HERE) -> list[str]:
    """One table row: the regime's goal verdict, its best strategy's seeds, gaps and share of its mode's ceiling."""
    summary = load_summary(regime.folder, root)
    goal, reference = summary["goal"], summary["reference"]
    best = summary["strategies"][goal["best_strategy"]]
    std = best["miou_std_per_round"][goal["round"]]
    gaps = "; ".join(
        _gap(name, gap, min(best["seeds"], summary["strategies"][name]["seeds"]))
        for name, gap in sorted(goal["gaps_to_random"].items())
    )
    ceiling = ceiling_of(goal["best_strategy"], load_summary(regime.ceilings, root) if regime.ceilings else None)
    if ceiling is None:
        ceiling_cell = "not measured"
    else:
        ceiling_cell = (
            f"{format_percent(ceiling['miou_mean'], ceiling['miou_std'])}, {_seeds(ceiling['seeds'])} "
            f"({100 * ceiling['miou_mean'] / reference['miou_mean']:.0f}% of the reference); "
            f"best reaches {100 * goal['miou_mean'] / ceiling['miou_mean']:.0f}% of it"
        )
    return [
        regime.setting,
        f"{goal['best_strategy']} ({_seeds(best['seeds'])}), round {goal['round']}: {goal['clicks']:g} clicks, "
        f"{100 * goal['click_share_of_full']:.2f}% of full",
        format_percent(goal["miou_mean"], std if best["seeds"] > 1 else None),
        f"{100 * goal['share_of_reference']:.0f}% of {format_percent(reference['miou_mean'], reference['miou_std'])} "
        f"({_seeds(reference['seeds'])})",
        gaps,
        ceiling_cell,
        "**met**" if goal["met"] else "not met",
    ]


def converged_row(regime: Regime, root: Path = HERE) -> list[str] | None:
    """One row of the goal judged on converged models (``goal_converged``: the final labels trained again from
    ImageNet weights; a random baseline trained again stands for those of its query mode that were not), or None
    where the regime's best acquisition strategy was not trained again."""
    summary = load_summary(regime.folder, root)
    goal, reference = summary.get("goal_converged"), summary["reference"]
    if goal is None:
        return None
    stands_for = {
        other: sorted(n for n, o in goal["stood_in_for"].items() if o == other) for other in goal["gaps_to_random"]
    }
    gaps = "; ".join(
        _gap(name, gap, min(goal["seeds"], gap["seeds"]))
        + f", {_seeds(gap['seeds'])}"
        + (f" (standing for {', '.join(stands_for[name])}, the same query mode)" if stands_for[name] else "")
        for name, gap in sorted(goal["gaps_to_random"].items())
    )
    return [
        regime.setting,
        f"{goal['best_strategy']} ({_seeds(goal['seeds'])} trained again, "
        f"{'/'.join(str(epochs) for epochs in goal['epochs'])} epochs): {goal['clicks']:g} clicks, "
        f"{100 * goal['click_share_of_full']:.2f}% of full",
        format_percent(goal["miou_mean"], goal["miou_std"] if goal["seeds"] > 1 else None),
        f"{100 * goal['share_of_reference']:.0f}% of {format_percent(reference['miou_mean'], reference['miou_std'])}",
        gaps or "none trained again",
        ", ".join(goal["not_trained_again"]) or "none",
        "**met**" if goal["met"] else "not met",
    ]


def converged_table(root: Path = HERE) -> str:
    """The markdown table of :func:`converged_row` for every regime of :data:`REGIMES` that has one."""
    header = [
        "regime",
        f"best acquisition strategy within {100 * GOAL_CLICK_SHARE:.0f}% of its mode's full clicks, final labels "
        "trained again",
        "its mIoU % (mean ± std)",
        "of the reference",
        "gap to each random baseline trained again on no more clicks, mIoU points",
        "random baselines not trained again",
        "goal",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = [row for regime in REGIMES if (row := converged_row(regime, root)) is not None]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def goal_table(root: Path = HERE) -> str:
    """The markdown table of every regime in :data:`REGIMES`, as ``goal_across_regimes.md`` holds it."""
    header = [
        "regime",
        f"best acquisition strategy within {100 * GOAL_CLICK_SHARE:.0f}% of its mode's full clicks",
        "its mIoU % (mean ± std)",
        "of the reference",
        "gap to each random baseline at that round, mIoU points",
        "every superpixel answered, 40 epochs (the mode's ceiling)",
        "goal",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(regime_row(regime, root)) + " |" for regime in REGIMES]
    return "\n".join(lines) + "\n"


def document(root: Path = HERE) -> str:
    """The whole of ``goal_across_regimes.md``: what the goal asks, then :func:`goal_table`."""
    intro = (
        "# The label-savings goal in every measured regime\n\n"
        "Written by `benchmarks/active_learning/goal_across_regimes.py` from the committed `summary.json` files. The "
        f"goal: at no more than {100 * GOAL_CLICK_SHARE:.0f}% of full-annotation clicks (each mode's own cost), the "
        f"best acquisition strategy reaches at least {100 * GOAL_REFERENCE_SHARE:.0f}% of the fully supervised "
        f"reference and beats every random baseline by at least {100 * GOAL_MARGIN:.0f} mIoU points and more than "
        "twice the pooled std, at the same round; a gap counts only with at least 2 seeds on both sides. The pooled "
        "std weights each side's variance by its seeds less one (`ls_al_backend/simulation/stats.py`); Welch's t "
        "(each side's variance over its own seed count) stands beside it and is not part of the rule.\n\n"
    )
    converged = (
        "\n## On converged models\n\n"
        "The same goal where the last round's labels were trained again from ImageNet weights (`--final-epochs`, "
        "as the reference and the ceilings are trained), against every random baseline trained again on the same "
        f"clicks or fewer ({100 * SAME_CLICKS_TOLERANCE:.0f}% more allowed). Random labels of one query mode at one "
        "budget are one draw whether answered round by round or at once, so one trained again stands for the others "
        "of its mode at that budget; "
        "a random baseline with neither leaves the goal not met.\n\n"
    )
    return intro + goal_table(root) + converged + converged_table(root)


def claim(root: Path = HERE) -> dict[str, Any]:
    """What the top-level README claims, read from :data:`CLAIM_REGIME`'s ``goal``: the best acquisition strategy
    within the goal's clicks, its mIoU over seeds, its share of the reference, its gap to every random baseline
    (seed-weighted pooled std and Welch's t beside it) and the verdict, on the rounds' models."""
    regime = next(regime for regime in REGIMES if regime.folder == CLAIM_REGIME)
    summary = load_summary(regime.folder, root)
    goal, reference = summary["goal"], summary["reference"]
    best = summary["strategies"][goal["best_strategy"]]
    gaps = {
        name: gap | {"seeds": summary["strategies"][name]["seeds"]}
        for name, gap in sorted(goal["gaps_to_random"].items())
    }
    cleared = bool(gaps) and all(gap["met"] for gap in gaps.values())
    return {
        "regime": regime.folder,
        "setting": regime.setting,
        "models": "the rounds' models (each round fine-tunes the last by the server's rule; not trained again)",
        "strategy": goal["best_strategy"],
        "seeds": best["seeds"],
        "round": goal["round"],
        "clicks": goal["clicks"],
        "click_share_of_full": goal["click_share_of_full"],
        "miou_mean": goal["miou_mean"],
        "miou_std": best["miou_std_per_round"][goal["round"]],
        "reference_miou_mean": reference["miou_mean"],
        "reference_seeds": reference["seeds"],
        "share_of_reference": goal["share_of_reference"],
        "gaps_to_random": gaps,
        "clears_every_random_baseline": cleared,
        "goal_met": goal["met"],
        "verdict": (
            ("clears every random baseline by the goal's margin" if cleared else "does not clear every random baseline")
            + f"; goal {'met' if goal['met'] else 'not met'}: {100 * goal['share_of_reference']:.0f}% of the reference"
        ),
    }


def summary_payload(root: Path = HERE) -> dict[str, Any]:
    """The whole of ``summary.json``: the claim, every regime's verdicts and the confirmatory comparison."""
    verdicts = {}
    for regime in REGIMES:
        summary = load_summary(regime.folder, root)
        converged = summary.get("goal_converged")
        verdicts[regime.folder] = {
            "setting": regime.setting,
            "goal_met": summary["goal"]["met"],
            "converged_goal_met": None if converged is None else converged["met"],
        }
    return {
        "written_by": "benchmarks/active_learning/goal_across_regimes.py",
        "goal_rule": {
            "click_share_at_most": GOAL_CLICK_SHARE,
            "reference_share_at_least": GOAL_REFERENCE_SHARE,
            "margin_at_least": GOAL_MARGIN,
            "and_more_than_pooled_stds": 2,
            "pooled_std": "seed-weighted (ls_al_backend/simulation/stats.py); Welch's t beside it, not part of it",
        },
        "claim": claim(root),
        "regimes": verdicts,
        "confirmatory": CONFIRMATORY,
    }


def main() -> int:
    OUTPUT.write_text(document())
    SUMMARY.write_text(json.dumps(summary_payload(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUTPUT} and {SUMMARY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
