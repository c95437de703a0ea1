"""Fill ``queries_cumulative`` (regions outlined) and ``annotator_actions_cumulative`` into whole-image random runs
recorded before the simulation counted a whole image's outlined regions, so the summary charges them like new runs.

A random whole-image run never consults its model to select, so its labelled images follow from its seed alone:
this replays the run's own selection code (``Simulation``'s round loop without training) round by round and stops
with an error unless every replayed round spends exactly the clicks the run recorded.

    PYTHONPATH=. .venv/bin/python benchmarks/active_learning/backfill_outlined_regions.py \
        benchmarks/active_learning/cpu/image_random*/seed_*/results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ls_al_backend.modes import Unit
from ls_al_backend.simulation.annotator import editor_actions
from ls_al_backend.simulation.config import LEGACY_MODE_NAMES, SimulationConfig
from ls_al_backend.simulation.loop import Simulation
from ls_al_backend.simulation.output import json_value, rows_to_csv, write_atomic


def replayed_queries(results: dict[str, Any]) -> list[int]:
    """Regions outlined up to each recorded round of a random whole-image run (``results.json`` contents)."""
    fields = {spec.name for spec in dataclasses.fields(SimulationConfig)}
    config = SimulationConfig(**{k: v for k, v in results["config"].items() if k in fields})
    if config.handler.unit is not Unit.IMAGE or config.acquisition.get("heuristic") != "random":
        raise ValueError(f"{config.out_dir}: not a random whole-image run")
    simulation = Simulation(config, log=None)
    queries, spent = [], 0.0
    for row in results["rows"]:
        round_index = row["round"]
        budget = config.initial_budget + round_index * config.budget - spent
        units = simulation._candidates(None, round_index, budget, random_order=True)
        chosen = simulation._select(units, budget, round_index, random_order=True)
        clicks = simulation._reveal(units, chosen)
        spent += sum(units.charges[position] for position in chosen)
        if clicks != row["clicks_round"]:
            raise ValueError(
                f"{config.out_dir} round {round_index}: replayed {clicks} clicks, recorded {row['clicks_round']}"
            )
        queries.append(simulation.targets()[3])
    return queries


def backfill(path: Path) -> bool:
    """Add the fields to the rows of ``path`` that lack them; True when the file changed."""
    results = json.loads(path.read_text())
    rows = results["rows"]
    if all("queries_cumulative" in row for row in rows):
        return False
    mode = LEGACY_MODE_NAMES.get(results["config"]["query_mode"], results["config"]["query_mode"])
    for row, queries in zip(rows, replayed_queries(results), strict=True):
        row["queries_cumulative"] = queries
        row["annotator_actions_cumulative"] = editor_actions(
            mode, row["clicks_cumulative"], queries, row["labelled_images"]
        )
    write_atomic(path, json.dumps(json_value(results), indent=2).encode())  # as the run writes them
    csv_text = rows_to_csv(rows, results["config"]["class_names"])
    write_atomic(path.with_name("rounds.csv"), csv_text.encode())
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files of random whole-image runs")
    for path in parser.parse_args(argv).results:
        try:
            changed = backfill(path)
        except (ValueError, KeyError) as error:
            print(f"{path}: {error}", file=sys.stderr)
            return 1
        print(f"{path}: {'filled' if changed else 'already has queries_cumulative'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
