"""Writing a report folder: summary.json, summary.md and the plots, from the CLI."""

from __future__ import annotations

import json

import pytest

from ls_al_backend.simulation import summarise
from tests.simulation.fabricated_runs import write_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_cli_writes_the_summary_files(tmp_path):
    from ls_al_backend.cli import main

    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("rand", "random", 0, 0)])
    out = tmp_path / "summary"
    assert main(["simulate", "--pool", "p", "--eval", "e", "--out", str(out), "--plot", *map(str, files)]) == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "learning_curves.png", "learning_curves_actions.png", "learning_curves_pixels.png", "summary.json",
        "summary.md",
    ]  # fmt: skip
    assert json.loads((out / "summary.json").read_text()) == summarise(files)


def test_summarising_paths_without_results_is_a_readable_error(tmp_path, capsys):
    from ls_al_backend.cli import main

    argv = ["simulate", "--pool", "p", "--eval", "e", "--out", str(tmp_path / "out"), "--plot", str(tmp_path / "none")]
    assert main(argv) == 2
    assert "no results.json or reference.json" in capsys.readouterr().err and not (tmp_path / "out").exists()
