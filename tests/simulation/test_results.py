"""Runs read back: editor actions filled in, compared at equal actions, clicks to reach an mIoU, unfinished runs."""

from __future__ import annotations

import json

import pytest

from ls_al_backend.simulation import summarise, summary_table
from tests.simulation.fabricated_runs import write_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_strategies_are_compared_at_equal_editor_actions_without_extrapolating(tmp_path):
    """Runs recorded before actions existed get them from clicks, queries and labelled images (one-class
    superpixels: a click and a select per query, a submit per image); mIoU is interpolated between rounds."""
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12), ("rand", "random", 0, 0)])
    bald = summarise(files)["strategies"]["bald"]
    assert bald["actions_per_round"] == [22, 44, 66], "10 clicks + 10 selects + 2 submits per round"
    assert list(bald["miou_at_actions"]) == [], "no multiple of 1000 actions inside 22...66"

    payload = json.loads((files[0] / "results.json").read_text())
    for row in payload["rows"]:
        row["annotator_actions_cumulative"] = (500, 1500, 3000)[row["round"]]  # recorded by the run: kept
    (files[0] / "results.json").write_text(json.dumps(payload))
    bald = summarise(files[:1])["strategies"]["bald"]
    assert bald["actions_per_round"] == [500, 1500, 3000]
    assert bald["miou_at_actions"] == {"1000": [pytest.approx(0.2556), None], "2000": [pytest.approx(0.3815), None],
                                       "3000": [pytest.approx(0.5222), None]}  # fmt: skip
    table = summary_table(files[:1])
    assert "| strategy | actions per round | 1000 | 2000 | 3000 |" in table
    assert "| bald | 500 → 1500 → 3000 | 25.6 | 38.1 | 52.2 |" in table


def test_the_label_saving_is_the_clicks_each_strategy_needs_to_first_reach_an_miou(tmp_path):
    """mIoU 20.0 / 31.1 / 52.2 (+2 for seed 1) after 10 / 20 / 30 clicks; random ends at 42.2."""
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12), ("rand", "random", 0, 0)])
    strategies = summarise(files)["strategies"]
    bald, rand = strategies["bald"]["clicks_to_reach"], strategies["rand"]["clicks_to_reach"]
    assert list(bald) == [f"{0.03 * step:.4g}" for step in range(7, 19)], "every 3 points from 21% to 54%"
    assert bald["0.3"] == {"seeds_reached": 2, "clicks_mean": 19.0, "clicks_std": 0.0}, "90% of the way to 31.1"
    assert bald["0.54"] == {"seeds_reached": 1, "clicks_mean": pytest.approx(29.9, abs=0.1), "clicks_std": None}
    assert "0.45" not in rand and rand["0.42"]["clicks_mean"] == pytest.approx(29.8, abs=0.1)
    assert bald["0.42"]["clicks_mean"] < rand["0.42"]["clicks_mean"], "the steeper curve saves clicks"

    table = summary_table(files)
    assert "| strategy | 21% | 24% | 27% | 30% | 33% |" in table
    assert "| rand | 11 | 14 | 16 | 19 | 22 | 24 | 27 | 30 | - | - | - | - |" in table
    assert table.count("(1/2)") == 1, "only seed 1 of bald reaches 54%"

    payload = json.loads((files[2] / "results.json").read_text())
    payload["rows"][1]["miou"] = 0.1  # a curve that dips: the first crossing counts
    (files[2] / "results.json").write_text(json.dumps(payload))
    rand = summarise(files)["strategies"]["rand"]["clicks_to_reach"]
    assert rand["0.21"]["clicks_mean"] == pytest.approx(20 + 10 * 0.11 / 0.3222, abs=0.1)


def test_whole_images_are_charged_their_outlined_regions_and_left_out_without_them(tmp_path):
    """A whole image's actions: its vertices, 2 per outlined region (``queries_cumulative``: class hotkey and the
    closing click) and a submit; a row without the outlined regions gets no actions rather than an undercount."""
    files = write_runs(tmp_path, [("image", "random", 0, 0)])
    payload = json.loads((files[0] / "results.json").read_text())
    payload["config"]["query_mode"] = "image"  # the legacy name of dense_brush
    (files[0] / "results.json").write_text(json.dumps(payload))
    assert summarise(files)["strategies"]["image"]["actions_per_round"] == [None, None, None]
    for row in payload["rows"]:
        row["queries_cumulative"] = 3 * (row["round"] + 1)
    (files[0] / "results.json").write_text(json.dumps(payload))
    assert summarise(files)["strategies"]["image"]["actions_per_round"] == [18, 36, 54], "10 + 2 x 3 + 2 a round"


def test_an_unfinished_run_is_listed_not_counted(tmp_path):
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1)], rounds=5)
    summary = summarise(files)
    assert summary["strategies"] == {} and summary["in_progress"] == ["bald seed 0"]
    assert "In progress (not counted): bald seed 0." in summary_table(files)
