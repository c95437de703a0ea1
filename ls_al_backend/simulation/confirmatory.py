"""The confirmatory comparison of ``benchmarks/active_learning/confirmatory/PROTOCOL.md``, judged from its runs.

One command reads every run the protocol names and writes ``summary.json``, ``summary.md`` and
``learning_curves.png`` into the folder::

    python -m ls_al_backend.simulation.confirmatory benchmarks/active_learning/confirmatory
    python -m ls_al_backend.simulation.confirmatory benchmarks/active_learning/confirmatory/gpu --protocol gpu

A run counts when its results hold every round and its final labels trained again (``final``), and its config,
clicks, code and precision are the protocol's; otherwise it is listed as not finished or not valid and the verdict
is ``incomplete``. Only finished runs are read (a run in progress is ``not finished`` whatever it has written so
far), so the summary written in a checkout with runs going on is the one the committed runs give.

The rule (mIoU in points): at the last round within 5% of the full clicks, the gap (acquisition arm minus random
arm) is at least 3 and Welch's t (:func:`~ls_al_backend.simulation.stats.welch`) at least 2; judged on the rounds'
models and, separately, on the final labels trained again.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ls_al_backend.simulation.confirmatory_report import plot_curves, summary_markdown
from ls_al_backend.simulation.output import write_atomic
from ls_al_backend.simulation.stats import seed_weighted_pooled_std, welch

#: The rule: at the last round within this share of the full clicks ...
CLICK_SHARE_LIMIT = 0.05
#: ... the gap is at least this many mIoU points ...
MIN_GAP_POINTS = 3.0
#: ... and Welch's t at least this.
MIN_T = 2.0

PRECISION_NOTE = (
    "The server's PRECISION=auto is fp32 on a CPU without native bf16, bf16 autocast on a CPU with AMX or AVX-512 "
    "BF16, and fp16 autocast on CUDA. fp32 runs match a server on a CPU without native bf16 (or one set to "
    "PRECISION=fp32), not a server left on auto on a CPU with native bf16; runs with precision auto on CUDA match "
    "a GPU server."
)


@dataclass(frozen=True)
class Protocol:
    """What the protocol fixes: where its runs are (under the summary's folder), the two arms, the seeds, the
    config every run must hold (``acquisition.<key>`` for a key of the acquisition mapping), the clicks at the
    judged round, the precision every row and ``final`` must report (None: any one precision, the same for all) and
    the commit whose package every run must have used with no uncommitted change (None: not checked)."""

    name: str
    runs_dir: str
    acquisition_arm: str
    baseline_arm: str
    seeds: tuple[int, ...]
    config: Mapping[str, Any]
    judged_clicks: float
    precision: str | None
    code_commit: str | None = None

    @property
    def arms(self) -> tuple[str, str]:
        return self.acquisition_arm, self.baseline_arm


SEEDS = (100, 101, 102, 103, 104)
_SHARED = {"query_mode": "superpixel_dominant", "class_weighting": "inverse_sqrt_frequency", "epochs": 8}
_SHARED |= {"min_steps": 300, "final_epochs": 40, "final_min_steps": 1500, "warm_start": True}
PROTOCOLS = {
    "cpu": Protocol(
        "cpu",
        "superpixel_8/cpu_inverse_sqrt_frequency",
        "sp_entropy_classbal",
        "sp_random",
        SEEDS,
        _SHARED
        | {"resolution": 240, "crop_size": 128, "rounds": 5, "budget": 2300, "initial_budget": 2300}
        | {"precision": "fp32", "acquisition.superpixel_size": 8},
        11500,
        "fp32",
        "7041826ca9ec3e196aee7d8f956a329387ffc9a4",  # the protocol's commit, checked out in a worktree
    ),
    "gpu": Protocol(
        "gpu",
        "gpu_inverse_sqrt_frequency",
        "sp_entropy_classbal",
        "sp_random",
        SEEDS,
        _SHARED
        | {"resolution": 480, "crop_size": 256, "rounds": 6, "budget": 450, "initial_budget": 450}
        | {"precision": "auto", "acquisition.superpixel_size": 32},
        2700,
        None,
    ),
}


@dataclass
class Run:
    """One run of the protocol read back: ``status`` is ``finished``, ``not finished`` (no results, or rounds or
    ``final`` missing: nothing else is read) or ``invalid`` (``problems`` say why); mIoU in points at the judged
    round."""

    arm: str
    seed: int
    status: str = "not finished"
    problems: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    judged_round: int | None = None
    last_round_miou: float | None = None
    final_miou: float | None = None
    seconds: float = 0.0
    precisions: list[str] = field(default_factory=list)
    machine: str | None = None
    code: str | None = None
    restarts: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        keys = ("arm", "seed", "status", "problems", "judged_round", "last_round_miou", "final_miou")
        values = {key: getattr(self, key) for key in keys}
        return values | {
            "clicks": self.rows[self.judged_round]["clicks_cumulative"] if self.judged_round is not None else None,
            "cpu_hours": round(self.seconds / 3600, 3),
            "precisions": self.precisions,
            "machine": self.machine,
            "code": self.code,
            "restarts": self.restarts,
        }


def _config_value(config: Mapping[str, Any], key: str) -> Any:
    if key.startswith("acquisition."):
        return (config.get("acquisition") or {}).get(key.removeprefix("acquisition."))
    return config.get(key)


def _code_version(folder: Path) -> tuple[str | None, str | None]:
    """The commit and CPU lines of a run's ``code_version.txt`` (None where absent)."""
    path = folder / "code_version.txt"
    lines = [line.strip() for line in path.read_text().splitlines()] if path.is_file() else []
    code = next((line for line in lines if line.startswith("commit")), None)
    machine = next((line.removeprefix("cpu: ") for line in lines if line.startswith("cpu:")), None)
    gpu = next((line.removeprefix("gpu: ") for line in lines if line.startswith("gpu:")), None)
    return code, (f"{gpu}; {machine}" if gpu else machine)


def read_run(folder: Path, protocol: Protocol, arm: str, seed: int) -> Run:
    """The run ``<folder>/<runs_dir>/<arm>/seed_<seed>`` checked against the protocol."""
    run = Run(arm, seed)
    run_dir = folder / protocol.runs_dir / arm / f"seed_{seed}"
    results = run_dir / "results.json"
    payload = json.loads(results.read_text()) if results.is_file() else {}
    config, rows, final = payload.get("config", {}), payload.get("rows") or [], payload.get("final")
    if not rows or len(rows) < config.get("rounds", math.inf) or final is None:
        return run
    run.rows = rows
    restarts = run_dir / "restarts.txt"
    run.restarts = restarts.read_text().splitlines() if restarts.is_file() else []
    run.code, run.machine = _code_version(run_dir)
    run.seconds = sum(row.get("seconds") or 0.0 for row in run.rows) + ((final or {}).get("seconds") or 0.0)
    run.precisions = sorted({str(row.get("precision")) for row in [*run.rows, *([final] if final else [])]})
    run.problems = [
        f"{key} is {_config_value(config, key)!r}, the protocol's is {expected!r}"
        for key, expected in protocol.config.items()
        if _config_value(config, key) != expected
    ]
    frozen = f"commit {protocol.code_commit}, 0 uncommitted"
    if protocol.code_commit is not None and not (run.code or "").startswith(frozen):
        run.problems.append(f"code {run.code!r}, the protocol's is {protocol.code_commit[:7]} unchanged")
    if protocol.precision is not None and run.precisions not in ([], [protocol.precision]):
        run.problems.append(f"precision {'/'.join(run.precisions)}, the protocol's is {protocol.precision}")
    within = [i for i, row in enumerate(run.rows) if (row.get("click_share_of_full") or 1.0) <= CLICK_SHARE_LIMIT]
    if within:
        run.judged_round = within[-1]
        judged = run.rows[run.judged_round]
        run.last_round_miou = 100 * judged["miou"]
        run.final_miou = 100 * final["miou"]
        if judged["clicks_cumulative"] != protocol.judged_clicks:
            run.problems.append(f"{judged['clicks_cumulative']:g} clicks, the protocol's {protocol.judged_clicks:g}")
        if final.get("after_round") != judged["round"]:
            run.problems.append(f"final labels of round {final.get('after_round')}, judged round {judged['round']}")
    else:
        run.problems.append(f"no round within {CLICK_SHARE_LIMIT:.0%} of the full clicks")
    run.status = "invalid" if run.problems else "finished"
    return run


def judge(acquisition: Sequence[float], baseline: Sequence[float], complete: bool) -> dict[str, Any]:
    """The rule on the per-seed mIoU (points) of both arms: ``met`` / ``not met``, or ``incomplete`` (no
    statistics) while a run of the protocol is not finished or not valid."""
    if not complete:
        return {"verdict": "incomplete"}
    result = welch(acquisition, baseline)
    met = result.gap >= MIN_GAP_POINTS and result.t >= MIN_T
    return {
        "verdict": "met" if met else "not met",
        "gap": round(result.gap, 3),
        "welch_t": round(result.t, 3),
        "welch_df": None if math.isnan(result.df) else round(result.df, 2),
        "standard_error": round(result.standard_error, 3),
        "seed_weighted_pooled_std": round(seed_weighted_pooled_std(acquisition, baseline), 3),
        "acquisition": _arm_stats(acquisition),
        "baseline": _arm_stats(baseline),
    }


def _arm_stats(values: Sequence[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))
    return {"seeds": len(values), "mean": round(mean, 3), "std": round(std, 3), "values": [round(v, 3) for v in values]}


def curves(runs: list[Run], arm: str) -> dict[str, Any] | None:
    """Mean and std (ddof 1) per round of the arm's finished, valid runs (mIoU in points); None without any."""
    kept = [run.rows for run in runs if run.arm == arm and run.status == "finished"]
    if not kept:
        return None
    length = min(len(rows) for rows in kept)
    per_round = [[100 * rows[i]["miou"] for rows in kept] for i in range(length)]
    means = [sum(values) / len(values) for values in per_round]
    stds = [
        math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        for values, m in zip(per_round, means, strict=True)
    ]
    finals = [run.final_miou for run in runs if run.arm == arm and run.status == "finished"]
    return {
        "seeds": len(kept),
        "clicks": [kept[0][i]["clicks_cumulative"] for i in range(length)],
        "miou_mean": [round(m, 3) for m in means],
        "miou_std": [None if s is None else round(s, 3) for s in stds],
        "trained_again": finals,
    }


def summarise_protocol(folder: Path, protocol: Protocol) -> dict[str, Any]:
    """The ``summary.json`` payload: the verdicts, every run's state and values, cost, machines and precision."""
    runs = [read_run(folder, protocol, arm, seed) for seed in protocol.seeds for arm in protocol.arms]
    complete = all(run.status == "finished" for run in runs)
    if complete and protocol.precision is None and len({p for run in runs for p in run.precisions}) > 1:
        complete = False  # one precision for every run, whichever it is
    by_arm = {arm: [run for run in runs if run.arm == arm] for arm in protocol.arms}

    def values(arm: str, key: str) -> list[float]:
        return [getattr(run, key) for run in by_arm[arm] if run.status == "finished"]

    verdict = {
        name: judge(values(protocol.acquisition_arm, key), values(protocol.baseline_arm, key), complete)
        for name, key in (("rounds_models", "last_round_miou"), ("trained_again", "final_miou"))
    }
    return {
        "protocol": protocol.name,
        "arms": {"acquisition": protocol.acquisition_arm, "baseline": protocol.baseline_arm},
        "seeds": list(protocol.seeds),
        "config": dict(protocol.config),
        "judged_clicks": protocol.judged_clicks,
        "rule": {"click_share_limit": CLICK_SHARE_LIMIT, "min_gap_points": MIN_GAP_POINTS, "min_welch_t": MIN_T},
        "verdict": verdict,
        "not_counted": [
            f"{run.label}: {run.status}" + "".join(f"; {p}" for p in run.problems)
            for run in runs
            if run.status != "finished"
        ],
        "restarted": [f"{run.label}: {line}" for run in runs for line in run.restarts],
        "cpu_hours": round(sum(run.seconds for run in runs) / 3600, 2),
        "machines": sorted({run.machine for run in runs if run.machine}),
        "code": sorted({run.code for run in runs if run.code}),
        "precisions": sorted({p for run in runs for p in run.precisions}),
        "precision_note": PRECISION_NOTE,
        "curves": {arm: curves(runs, arm) for arm in protocol.arms},
        "runs": [run.to_dict() for run in runs],
    }


def write_confirmatory_summary(folder: str | Path, protocol: Protocol) -> list[Path]:
    """Write ``summary.json``, ``summary.md`` and ``learning_curves.png`` (when a run finished) into ``folder``."""
    folder = Path(folder)
    summary = summarise_protocol(folder, protocol)
    written = [folder / "summary.json", folder / "summary.md"]
    write_atomic(written[0], (json.dumps(summary, indent=2) + "\n").encode())
    write_atomic(written[1], summary_markdown(summary).encode())
    if any(summary["curves"].values()):
        written.append(plot_curves(summary, folder / "learning_curves.png"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the protocol's folder (runs under it, summary written into it)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    for path in write_confirmatory_summary(args.folder, PROTOCOLS[args.protocol]):
        print(path)
    summary = json.loads((args.folder / "summary.json").read_text())
    for name, result in summary["verdict"].items():
        print(f"{name}: {result['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
