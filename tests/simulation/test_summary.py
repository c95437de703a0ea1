"""The summary.json payload: mean and std over seeds per round, per-class IoU, the final labels trained again."""

from __future__ import annotations

import json

import pytest

from ls_al_backend.simulation import summarise, summary_table
from tests.simulation.fabricated_runs import write_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_summary_gives_mean_and_std_over_seeds_and_checks_the_goal(tmp_path):
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12), ("rand", "random", 0, 0)])
    summary = summarise(files)
    bald, rand = summary["strategies"]["bald"], summary["strategies"]["rand"]
    assert bald["seeds"] == 2 and not bald["random_baseline"] and rand["random_baseline"]
    assert bald["final_miou_mean"] == pytest.approx(0.2 + 2 / 9 + 0.11, abs=1e-4)
    assert bald["final_miou_std"] == pytest.approx(0.01414, abs=1e-4) and rand["final_miou_std"] is None
    assert bald["miou_std_per_round"][:2] == [0.0, 0.0] and bald["clicks_per_round"] == [10, 20, 30]
    assert bald["click_share_of_full"] == pytest.approx(0.03) and bald["final_clicks"] == 30
    assert summary["reference"] == {
        "miou_mean": 0.6, "miou_std": None, "seeds": 1, "miou_at_half_steps": 0.595,
        "miou_at_half_steps_std": None, "train_steps": None, "per_class_iou": {},
    }  # fmt: skip
    goal = summary["goal"]
    assert goal["best_strategy"] == "bald" and goal["gaps_to_random"]["rand"]["gap"] == pytest.approx(0.11, abs=1e-4)
    assert goal["round"] == 2 and goal["click_share_of_full"] == pytest.approx(0.03), "the last round within 5%"
    assert not goal["met"], "one random seed: no spread to compare with, and 89% of the reference"

    table = summary_table(files)
    assert "| bald | 2 | 20.0 ± 0.0 (10) → 31.1 ± 0.0 (20) → 53.2 ± 1.4 (30) | 3.00% | 0.03% | 89% |" in table
    assert "| fully supervised (every pool pixel) | 1 | 60.0 (half the steps: 59.5) | 100% | - | 100% |" in table
    assert "**not met**" in table

    more = write_runs(tmp_path / "more", [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12),
                                           ("rand", "random", 0, 0), ("rand", "random", 1, 0.01)], 0.58)  # fmt: skip
    assert summarise(more)["goal"]["met"], "92% of the reference, 10.5 points over random with a pooled std of 1"


def test_per_class_iou_at_the_last_round_is_averaged_over_seeds_beside_the_reference(tmp_path):
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12)])
    for folder, rare in zip(files[:2], (0.1, 0.3), strict=True):
        payload = json.loads((folder / "results.json").read_text())
        for row in payload["rows"]:
            row["per_class_iou"] = {"road": 0.9, "rider": rare if row["round"] == 2 else 0.0, "bus": None}
        (folder / "results.json").write_text(json.dumps(payload))
    reference = files[2] / "reference.json"
    reference.write_text(json.dumps(json.loads(reference.read_text()) | {"per_class_iou": {"road": 0.95, "rider": 0}}))
    summary = summarise(files)
    per_class = summary["strategies"]["bald"]["per_class_iou_last"]
    assert per_class["road"] == [0.9, 0.0] and per_class["rider"] == [0.2, pytest.approx(0.1414, abs=1e-4)]
    assert per_class["bus"] == [None, None], "absent from the evaluation images"
    assert summary["reference"]["per_class_iou"] == {"road": [0.95, None], "rider": [0.0, None]}
    table = summary_table(files)
    assert "| strategy | road | rider | bus |" in table
    assert "| bald | 90.0 | 20.0 | - |" in table and "| fully supervised | 95.0 | 0.0 | - |" in table


def test_the_final_labels_retrained_are_averaged_over_the_seeds_that_have_them(tmp_path):
    runs = [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12), ("bald", "bald", 2, 0.0), ("rand", "random", 0, 0)]
    files = write_runs(tmp_path, runs)
    assert summarise(files)["strategies"]["bald"]["final_labels_retrained"] is None
    assert "trained again" not in summary_table(files)
    for folder, miou in zip(files[:2], (0.5, 0.54), strict=True):
        payload = json.loads((folder / "results.json").read_text())
        final = {"epochs": 50, "train_steps": 400 + 100 * payload["seed"], "miou": miou, "per_class_iou": {"road": 0.9}}
        (folder / "results.json").write_text(json.dumps(payload | {"final": final}))
    summary = summarise(files)
    retrained = summary["strategies"]["bald"]["final_labels_retrained"]
    assert retrained["seeds"] == 2 and retrained["epochs"] == [50] and retrained["train_steps_mean"] == 450
    assert retrained["miou_mean"] == pytest.approx(0.52) and retrained["miou_std"] == pytest.approx(0.02828, abs=1e-4)
    assert retrained["per_class_iou"] == {"road": [0.9, 0.0]}
    assert retrained["last_round_miou_mean"] == pytest.approx(0.2 + 2 / 9 + 0.11, abs=1e-4), "seeds 0 and 1 only"
    assert summary["strategies"]["bald"]["final_miou_mean"] == pytest.approx(0.2 + 2 / 9 + 0.22 / 3, abs=1e-4)
    assert summary["strategies"]["rand"]["final_labels_retrained"] is None
    assert "| bald | 2 | 53.2 ± 1.4 | 50 | 450 | 52.0 ± 2.8 | 87% |" in summary_table(files), "0.52 / 0.6"
