"""A run's folder: an interrupted run resumes to the same rows, and never with other settings."""

from __future__ import annotations

import json

import pytest

from ls_al_backend.simulation import (
    Simulation,
    run_simulation,
)
from tests.simulation.conftest import saved_state, tiny_config, without_time

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resuming_after_an_interruption_gives_the_uninterrupted_rows(data, finished, tmp_path):
    mode = "superpixel_multiclass"
    straight, straight_out, _ = finished(mode)

    lines: list[str] = []
    first = run_simulation(tiny_config(data, tmp_path / "resumed", mode, rounds=1), log=None)
    resumed = run_simulation(tiny_config(data, tmp_path / "resumed", mode, rounds=2), log=lines.append)

    assert len(first) == 1 and lines[0].startswith("resuming")
    assert without_time(resumed) == without_time(straight)
    assert resumed[0]["seconds"] == first[0]["seconds"]  # round 0 was not re-run
    assert saved_state(tmp_path / "resumed", 1) == saved_state(straight_out, 1)


def test_a_run_does_not_resume_with_other_settings(data, tmp_path):
    run_simulation(tiny_config(data, tmp_path, rounds=1, epochs=1), log=None)
    with pytest.raises(ValueError, match="epochs"):
        run_simulation(tiny_config(data, tmp_path, rounds=2, epochs=2), log=None)


def test_a_run_started_before_a_setting_existed_resumes_with_its_default(data, tmp_path):
    Simulation(tiny_config(data, tmp_path)).folder.check_config()
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["semi_supervised"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    Simulation(tiny_config(data, tmp_path, rounds=3)).folder.check_config()
    with pytest.raises(ValueError, match="semi_supervised"):
        Simulation(tiny_config(data, tmp_path, semi_supervised="mean_teacher")).folder.check_config()


def test_a_finished_run_without_its_checkpoints_trains_its_final_labels_again(data, tmp_path):
    """A run folder brought back without ``state/model_*.pt`` (``scripts/gpu_check.sh`` drops them) keeps its rows
    and trains its last round's labels from ImageNet weights; a run that still has rounds to go starts over."""
    rows = run_simulation(tiny_config(data, tmp_path, rounds=1), log=None)
    for checkpoint in (tmp_path / "state").glob("model_*.pt"):
        checkpoint.unlink()

    lines: list[str] = []
    again = run_simulation(tiny_config(data, tmp_path, rounds=1, final_epochs=1, final_min_steps=2), log=lines.append)

    assert lines[0].startswith("resuming") and without_time(again) == without_time(rows)
    assert again[0]["seconds"] == rows[0]["seconds"], "round 0 was not run again"
    final = json.loads((tmp_path / "results.json").read_text())["final"]
    assert final["after_round"] == 0 and final["labelled_images"] == rows[0]["labelled_images"]
    assert not (tmp_path / "state" / "model_000.pt").exists()

    lines.clear()
    more = run_simulation(tiny_config(data, tmp_path, rounds=2), log=lines.append)
    assert not any(line.startswith("resuming") for line in lines) and len(more) == 2
