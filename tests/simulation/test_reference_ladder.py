"""The reference ladder judged from its rungs: converged at the first doubling that moves less than 1 point."""

from __future__ import annotations

import json

import pytest

from ls_al_backend.simulation.reference_ladder import judge_ladder, main, train_rung
from tests.simulation.conftest import tiny_config


def write_rungs(folder, miou_by_epochs):
    folder.mkdir(parents=True, exist_ok=True)
    for epochs, miou in miou_by_epochs.items():
        (folder / f"epochs_{epochs}.json").write_text(json.dumps({"epochs": epochs, "miou": miou}))


def test_converged_at_the_first_doubling_under_one_point(tmp_path):
    write_rungs(tmp_path, {40: 0.52, 80: 0.585, 160: 0.594, 320: 0.597})
    ladder = judge_ladder(tmp_path)
    assert [step["move_points"] for step in ladder["doublings"]] == [6.5, 0.9, 0.3]
    assert ladder["converged"] and (ladder["reference_epochs"], ladder["reference_miou"]) == (160, 59.4)
    assert json.loads((tmp_path / "ladder.json").read_text()) == ladder


def test_not_converged_while_every_doubling_moves_a_point_or_more(tmp_path):
    write_rungs(tmp_path, {40: 0.52, 80: 0.57, 160: 0.58})
    ladder = judge_ladder(tmp_path)
    assert not ladder["converged"] and ladder["reference_miou"] is None
    assert [step["move_points"] for step in ladder["doublings"]] == [5.0, 1.0]  # exactly 1 point is not under it
    write_rungs(tmp_path / "gap", {40: 0.52, 160: 0.521})  # no rung doubles another
    assert judge_ladder(tmp_path / "gap")["doublings"] == []


def test_a_trained_rung_is_not_trained_again(data, tmp_path):
    config = tiny_config(data, tmp_path)
    write_rungs(tmp_path, {3: 0.25})
    assert train_rung(config, 3) == {"epochs": 3, "miou": 0.25}


def test_the_command_rejects_a_rung_without_epochs(tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--pool", str(tmp_path), "--eval", str(tmp_path), "--out", str(tmp_path), "--epochs", "0"])
