"""Writing a set of runs' report into a folder: ``summary.json`` (:mod:`.summary`, with the goal of :mod:`.goal`),
``summary.md`` (:mod:`.tables`) and the learning curves (:mod:`.plots`), all read through :mod:`.results`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ls_al_backend.simulation.plots import plot_learning_curves
from ls_al_backend.simulation.results import result_files
from ls_al_backend.simulation.summary import summarise
from ls_al_backend.simulation.tables import summary_table


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
