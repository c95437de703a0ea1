"""The active-learning loop: every mode runs its rounds within the budget, reproducibly, by the server's rule."""

from __future__ import annotations

import csv
import json

import pytest

from ls_al_backend.model.network import build_network
from ls_al_backend.modes.dense_brush import trace_polygons
from ls_al_backend.simulation import (
    Simulation,
    load_masks,
    run_simulation,
)
from ls_al_backend.simulation.selection import Candidates
from tests.simulation.conftest import BUDGETS, saved_state, tiny_config, without_time

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("mode", list(BUDGETS))
def test_each_mode_runs_two_rounds_within_the_budget(data, finished, mode):
    rows, tmp_path, lines = finished(mode)

    assert [row["round"] for row in rows] == [0, 1]
    assert len(lines) == 2 and all("mIoU" in line for line in lines)
    for row in rows:
        assert 0 < row["clicks_round"]
        if mode != "dense_brush":  # whole images may overspend by one image, carried over
            assert row["clicks_cumulative"] <= BUDGETS[mode] * (row["round"] + 1)
        assert 0.0 <= row["miou"] <= 1.0
        assert set(row["per_class_iou"]) == set(tiny_config(data, tmp_path).class_names)
    assert rows[1]["clicks_cumulative"] == pytest.approx(rows[0]["clicks_round"] + rows[1]["clicks_round"])
    assert 0 < rows[0]["labelled_pixel_share"] < rows[1]["labelled_pixel_share"] <= 1
    # what was revealed only grows, and the files hold every finished round
    first, second = saved_state(tmp_path, 0), saved_state(tmp_path, 1)
    for before, after in zip(first, second, strict=True):
        assert after["regions"][: len(before["regions"])] == before["regions"]
        assert after["pixels"][: len(before["pixels"])] == before["pixels"]
        assert after["dense"] >= before["dense"]
    assert sorted(path.name for path in (tmp_path / "state").glob("*.pt")) == ["model_001.pt"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert without_time(saved["rows"]) == without_time(json.loads(json.dumps(rows)))
    with (tmp_path / "rounds.csv").open() as file:
        table = list(csv.DictReader(file))
    assert [int(row["round"]) for row in table] == [0, 1] and "iou_road" in table[0]


def test_the_same_seed_gives_the_same_selections_and_another_seed_does_not(data, finished, tmp_path):
    rows, out, _ = finished("superpixel_dominant")
    again = run_simulation(tiny_config(data, tmp_path / "again"), log=None)
    assert without_time(again) == without_time(rows)
    assert saved_state(tmp_path / "again", 1) == saved_state(out, 1)
    run_simulation(tiny_config(data, tmp_path / "other", seed=1, rounds=1), log=None)
    assert saved_state(tmp_path / "other", 0) != saved_state(out, 0)


def test_mean_teacher_runs_two_rounds_under_its_own_strategy_name(data, tmp_path):
    config = tiny_config(data, tmp_path, semi_supervised="mean_teacher")
    assert config.strategy == "superpixel_dominant:bald:pixbal:mean_teacher"
    assert config.train_config(0).semi_supervised == "mean_teacher"
    assert config.reference_train_config().semi_supervised == "none"
    rows = run_simulation(config, log=None)
    assert [row["round"] for row in rows] == [0, 1] and all(0.0 <= row["miou"] <= 1.0 for row in rows)
    assert json.loads((tmp_path / "results.json").read_text())["strategy"].endswith(":mean_teacher")
    with pytest.raises(ValueError, match="semi_supervised"):
        tiny_config(data, tmp_path, semi_supervised="fixmatch")


def test_a_budget_in_pixels_bounds_the_labelled_pixels_and_rows_still_count_clicks(data, tmp_path):
    config = tiny_config(data, tmp_path, budget_unit="pixels", budget=700, initial_budget=700)
    rows = run_simulation(config, log=None)
    assert rows[0]["labelled_pixels"] <= 700 < rows[1]["labelled_pixels"] <= 1400
    assert [row["clicks_round"] for row in rows] == [row["units_selected"] for row in rows], "1 click per region"


def test_rounds_train_by_the_servers_rule_and_record_steps(data, finished):
    rows, _, _ = finished("superpixel_dominant")
    for row in rows:
        assert row["train_steps"] == row["labelled_images"] // 2 + row["labelled_images"] % 2, "1 epoch, batches of 2"
        assert row["train_seconds"] > 0 and row["precision"] in {"fp32", "bf16"}
        assert 0 < row["click_share_of_full"] < 1
    queries = [sum(row["units_selected"] for row in rows[: i + 1]) for i in range(len(rows))]
    for row, asked in zip(rows, queries, strict=True):  # 1 click per region, alt+. per region, a submit per image
        assert row["annotator_actions_cumulative"] == row["clicks_cumulative"] + asked + row["labelled_images"]


def test_random_whole_images_are_taken_in_order_and_the_unspent_budget_carries_over(data, tmp_path):
    """A random round takes images in order, the first always and then while they fit (never a cheaper one
    instead), and the next round gets what was left or overspent: cumulative clicks track the plan within one
    image."""
    config = tiny_config(data, tmp_path, "dense_brush", acquisition={"heuristic": "random"}, rounds=3)
    simulation = Simulation(config, log=None)
    costs = [simulation.unit_clicks(i)[0] for i in range(len(simulation.pool))]
    rows = run_simulation(config, log=None)
    for row in rows:
        planned = config.initial_budget + row["round"] * config.budget
        assert row["budget_spent_cumulative"] == row["clicks_cumulative"]
        assert abs(planned - row["clicks_cumulative"]) < max(costs), "never more than one image off the plan"
        assert row["units_selected"] >= 1


def test_a_round_whose_budget_the_last_image_spent_labels_nothing_new(data, tmp_path):
    config = tiny_config(
        data, tmp_path, "dense_brush", acquisition={"heuristic": "random"}, rounds=2, budget=20, initial_budget=20
    )
    rows = run_simulation(config, log=None)
    assert rows[0]["units_selected"] == 1 and rows[0]["clicks_cumulative"] > 40, "the first image, over budget"
    assert rows[1]["units_selected"] == 0 and rows[1]["clicks_round"] == 0
    assert rows[1]["miou"] == rows[0]["miou"] and rows[1]["clicks_cumulative"] == rows[0]["clicks_cumulative"]
    assert (rows[1]["train_steps"], rows[1]["train_seconds"]) == (0, 0.0), "nothing trained, nothing counted twice"
    assert rows[1]["seconds"] != rows[0]["seconds"], "the idle round's own time, not a copy of round 0's"


def test_the_final_labels_train_a_fresh_network_once_and_a_new_round_trains_them_again(data, tmp_path):
    """``final_epochs`` trains a fresh network on the last round's labels and saves its score beside the rows;
    resuming a finished run keeps it; a run resumed for more rounds drops it and trains the new labels."""
    lines: list[str] = []
    config = tiny_config(data, tmp_path, rounds=1, final_epochs=2, final_min_steps=3)
    rows = run_simulation(config, log=lines.append)
    final = json.loads((tmp_path / "results.json").read_text())["final"]
    assert final["after_round"] == 0 and final["labelled_images"] == rows[-1]["labelled_images"]
    assert (final["epochs"], final["min_steps"]) == (2, 3)
    assert final["train_steps"] >= 3 and 0.0 <= final["miou"] <= 1.0
    assert set(final["per_class_iou"]) == set(config.class_names)
    assert "final labels, 2 epochs from ImageNet weights" in lines[-1]

    lines.clear()
    assert without_time(run_simulation(config, log=lines.append)) == without_time(rows)
    assert json.loads((tmp_path / "results.json").read_text())["final"] == final, "not trained again"
    assert not any("final labels" in line for line in lines)

    more = run_simulation(tiny_config(data, tmp_path, rounds=2, final_epochs=2, final_min_steps=3), log=None)
    again = json.loads((tmp_path / "results.json").read_text())["final"]
    assert again["after_round"] == 1 and again["labelled_images"] == more[-1]["labelled_images"]


def test_whole_images_are_ranked_by_their_score_alone_not_by_their_unknown_outline_cost(data, tmp_path):
    """The queue serves the most uncertain image first; its outline's clicks are charged, never foreseen."""
    config = tiny_config(data, tmp_path, "dense_brush", acquisition={"heuristic": "predictive_entropy"})
    simulation = Simulation(config, log=None)
    net = build_network(config.network_spec(), seed=0).to(simulation.device)
    units = simulation._candidates(net, 1, budget=1e9, random_order=False)
    assert units.estimated_costs == [1.0] * len(simulation.pool)
    assert units.clicks == [float(simulation.unit_clicks(i)[0]) for i in range(len(simulation.pool))]
    chosen = simulation._select(units, budget=max(units.charges), round_index=1, random_order=False)
    assert chosen[0] == max(range(len(units.scores)), key=units.scores.__getitem__)


@pytest.mark.parametrize(("mode", "expected"), [("dense_brush", [0]), ("superpixel_dominant", [0, 2])])
def test_scored_whole_images_stop_at_the_first_that_does_not_fit_while_regions_skip_it(data, tmp_path, mode, expected):
    """An annotator following the queue outlines the top image and then the next: an image whose outline would
    overspend ends the round instead of being skipped for a cheaper one (its cost is known only once drawn).
    Scored regions keep Cai et al.'s knapsack, which skips what does not fit."""
    config = tiny_config(data, tmp_path, mode, acquisition={"heuristic": "predictive_entropy"})
    simulation = Simulation(config, log=None)
    units = Candidates()
    for image, (score, clicks) in enumerate([(3.0, 50.0), (2.0, 100.0), (1.0, 10.0)]):
        units.extend(image, [0], [score], [1.0], [clicks], [clicks])
    assert simulation._select(units, budget=120, round_index=1, random_order=False) == expected


def test_whole_images_in_random_task_order_are_drawn_as_the_random_baseline_draws_them(data, tmp_path):
    """``task_order="random"`` (``dense_brush``'s default in the server) takes the random baseline's images; a
    region mode ranks its queries over the pool, so a random task order is refused there."""
    drawn = {"heuristic": "predictive_entropy", "task_order": "random"}
    ordered = tiny_config(data, tmp_path / "ordered", "dense_brush", acquisition=drawn)
    baseline = tiny_config(data, tmp_path / "baseline", "dense_brush", acquisition={"heuristic": "random"})
    picked = [(row["clicks_cumulative"], row["labelled_images"]) for row in run_simulation(ordered, log=None)]
    assert picked == [(row["clicks_cumulative"], row["labelled_images"]) for row in run_simulation(baseline, log=None)]
    with pytest.raises(ValueError, match="task_order='random' orders whole images"):
        tiny_config(data, tmp_path / "regions", "superpixel_dominant", acquisition={"task_order": "random"})


def test_outlines_priced_on_the_larger_image_charge_its_vertices_while_training_keeps_the_simulation_size(
    data, tmp_path
):
    """``outline_resolution``: an image costs the vertices of its outline at the size the annotator sees (here the
    stored 64x48, the network training at 32x24), more than the same outline at the training size."""
    random = {"heuristic": "random"}
    small = Simulation(
        tiny_config(data, tmp_path / "small", "dense_brush", acquisition=random, resolution=32), log=None
    )
    config = tiny_config(
        data, tmp_path / "large", "dense_brush", acquisition=random, resolution=32, outline_resolution=64, rounds=1
    )
    large = Simulation(config, log=None)
    stored = load_masks(data[0], 64)
    for index in range(len(large.pool)):
        assert large.unit_clicks(index)[0] == trace_polygons(stored[index], 11).vertices
        assert large.unit_clicks(index)[0] > small.unit_clicks(index)[0]
    (row,) = large.run()
    assert row["annotator_clicks_cumulative"] == row["clicks_cumulative"], (
        "what the annotator spent is what was charged"
    )
    assert 0 < row["labelled_pixels"] <= row["labelled_images"] * 32 * 24, "targets at the training size"
