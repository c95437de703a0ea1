"""Reading run results back: finished runs per strategy, means and stds over seeds, and the curves compared at equal
editor actions or equal mIoU.

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


def values_per_round(runs: list[list[dict[str, Any]]], key: str) -> list[list[float | None]]:
    length = min(len(rows) for rows in runs)
    return [[rows[i].get(key) for rows in runs] for i in range(length)]


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def action_budgets(results: ResultSet) -> list[int]:
    """Every :data:`ACTION_STEP` editor actions up to the most any finished run spent."""
    last_rows = [rows[-1] for runs in results.strategies.values() for rows in runs]
    spent = [row.get("annotator_actions_cumulative") or 0.0 for row in last_rows]
    return list(range(ACTION_STEP, int(max(spent, default=0.0)) + 1, ACTION_STEP))
