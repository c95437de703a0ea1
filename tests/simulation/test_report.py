"""Results over seeds: mean and std, the goal check, unfinished runs listed, plots and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ls_al_backend.simulation import (
    plot_learning_curves,
    summarise,
    summary_table,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def write_runs(tmp_path, runs, reference_miou=0.6, rounds=3) -> list[Path]:
    """Result files of fabricated runs ``(strategy, heuristic, seed, offset of the last mIoU)`` and a reference."""
    files = []
    for strategy, heuristic, seed, offset in runs:
        rows = [
            {
                "round": i,
                "clicks_cumulative": 10 * (i + 1),
                "labelled_pixel_share": 1e-4 * (i + 1),
                "click_share_of_full": 0.01 * (i + 1),
                "miou": 0.2 + i / 9,
                "units_selected": 10,
                "labelled_images": 2 * (i + 1),
                "train_steps": 5,
                "train_seconds": 1.0,
            }
            for i in range(3)
        ]
        rows[-1]["miou"] += offset
        folder = tmp_path / strategy / f"seed_{seed}"
        folder.mkdir(parents=True)
        payload = {"kind": "active_learning", "strategy": strategy, "seed": seed, "rows": rows}
        config = {"acquisition": {"heuristic": heuristic}, "rounds": rounds, "query_mode": "superpixel_dominant"}
        (folder / "results.json").write_text(json.dumps(payload | {"config": config}))
        files.append(folder)
    reference = tmp_path / "reference" / "seed_0"
    reference.mkdir(parents=True)
    payload = {"kind": "reference", "miou": reference_miou, "miou_at_half_steps": reference_miou - 0.005}
    (reference / "reference.json").write_text(json.dumps(payload))
    return [*files, reference]


def test_plot_learning_curves(tmp_path):
    pytest.importorskip("matplotlib")
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12), ("rand", "random", 0, 0)])
    out = plot_learning_curves(files, tmp_path / "plot" / "curves.png")
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    by_pixels = plot_learning_curves(files, tmp_path / "plot" / "pixels.png", x_axis="pixels")
    assert by_pixels.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and by_pixels.read_bytes() != out.read_bytes()
    with pytest.raises(ValueError, match="x_axis"):
        plot_learning_curves(files, tmp_path / "bad.png", x_axis="seconds")


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


def test_the_goal_is_judged_at_the_last_round_within_five_percent_of_full_clicks(tmp_path):
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("rand", "random", 0, 0)])
    for folder in files[:2]:
        payload = json.loads((folder / "results.json").read_text())
        for row, share in zip(payload["rows"], (0.02, 0.045, 0.06), strict=True):
            row["click_share_of_full"] = share
        (folder / "results.json").write_text(json.dumps(payload))
    goal = summarise(files)["goal"]
    assert goal["round"] == 1 and goal["clicks"] == 20, "round 2 spends 6% of full: past the goal's budget"
    assert goal["gaps_to_random"]["rand"]["gap"] == pytest.approx(0.0), "same round, same mIoU"


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


def with_clicks(folder: Path, clicks: float) -> None:
    """Give a fabricated run other clicks at its last round."""
    payload = json.loads((folder / "results.json").read_text())
    payload["rows"][-1]["clicks_cumulative"] = clicks
    (folder / "results.json").write_text(json.dumps(payload))


def trained_again(folder: Path, miou: float, clicks: float | None = None) -> None:
    """Give a fabricated run a ``final`` (its final labels trained again), and other clicks if given."""
    if clicks is not None:
        with_clicks(folder, clicks)
    payload = json.loads((folder / "results.json").read_text())
    final = {"epochs": 40, "train_steps": 300, "miou": miou, "per_class_iou": {}}
    (folder / "results.json").write_text(json.dumps(payload | {"final": final}))


def test_the_goal_on_converged_models_compares_the_final_labels_trained_again_at_the_same_clicks(tmp_path):
    runs = [("bald", "bald", 0, 0), ("bald", "bald", 1, 0), ("rand", "random", 0, 0), ("rand", "random", 1, 0)]
    runs += [("image_random", "random", 0, 0), ("image_random", "random", 1, 0)]
    runs += [("random_far", "random", 0, 0), ("random_far", "random", 1, 0)]
    files = write_runs(tmp_path, runs)  # every run labels 30 clicks (3% of full); the reference is 0.6
    for folder in files[4:6]:
        in_query_mode(folder, "dense_brush")
    assert summarise(files)["goal_converged"] is None, "nothing trained again"
    for folder, miou in zip(files[:4], (0.56, 0.58, 0.50, 0.51), strict=True):
        trained_again(folder, miou)
    for folder in files[6:8]:
        trained_again(folder, 0.57, clicks=40.0)  # beyond 5% of the best one's clicks: not compared

    converged = summarise(files)["goal_converged"]

    assert converged["best_strategy"] == "bald" and converged["seeds"] == 2 and converged["clicks"] == 30
    assert converged["miou_mean"] == pytest.approx(0.57) and converged["share_of_reference"] == pytest.approx(0.95)
    assert set(converged["gaps_to_random"]) == {"rand"}
    assert converged["gaps_to_random"]["rand"]["gap"] == pytest.approx(0.065)
    assert converged["gaps_to_random"]["rand"]["met"], "6.5 points, pooled std 1.1"
    assert converged["not_trained_again"] == ["image_random"], "random_far's clicks are not the same"
    assert converged["stood_in_for"] == {}
    assert not converged["met"], "a random baseline left out is not beaten"
    assert "random baselines not trained again: image_random; **not met**" in summary_table(files)

    for folder in files[4:6]:
        trained_again(folder, 0.52)
    converged = summarise(files)["goal_converged"]
    assert converged["met"] and converged["not_trained_again"] == []


def in_query_mode(folder: Path, query_mode: str) -> None:
    """Give a fabricated run another query mode."""
    payload = json.loads((folder / "results.json").read_text())
    payload["config"]["query_mode"] = query_mode
    (folder / "results.json").write_text(json.dumps(payload))


def test_a_random_baseline_trained_again_stands_for_the_random_baselines_of_its_query_mode(tmp_path):
    runs = [("bald", "bald", 0, 0), ("bald", "bald", 1, 0), ("rand", "random", 0, 0), ("rand", "random", 1, 0)]
    runs += [("rand_once", "random", 0, 0), ("rand_once", "random", 1, 0)]
    runs += [("image_random", "random", 0, 0), ("image_random", "random", 1, 0)]
    runs += [("rand_cheaper", "random", 0, 0), ("rand_cheaper", "random", 1, 0)]
    files = write_runs(tmp_path, runs)
    for folder in files[6:8]:
        in_query_mode(folder, "image")  # the legacy name of dense_brush
    for folder in files[8:10]:
        with_clicks(folder, 20.0)
    for folder, miou in zip([*files[:2], *files[4:6]], (0.56, 0.58, 0.50, 0.51), strict=True):
        trained_again(folder, miou)

    summary = summarise(files)
    converged = summary["goal_converged"]

    assert summary["strategies"]["image_random"]["query_mode"] == "dense_brush"
    assert converged["stood_in_for"] == {"rand": "rand_once"}, "random regions drawn round by round or at once"
    assert converged["not_trained_again"] == ["image_random", "rand_cheaper"], (
        "whole images are another query mode; 20 clicks are another budget, and a cheaper baseline counts"
    )
    assert set(converged["gaps_to_random"]) == {"rand_once"} and not converged["met"]
    assert "(rand_once stands for rand: the same query mode)" in summary_table(files)

    for folder in [*files[6:8], *files[8:10]]:
        trained_again(folder, 0.5)
    assert summarise(files)["goal_converged"]["met"]


def test_an_unfinished_run_is_listed_not_counted(tmp_path):
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1)], rounds=5)
    summary = summarise(files)
    assert summary["strategies"] == {} and summary["in_progress"] == ["bald seed 0"]
    assert "In progress (not counted): bald seed 0." in summary_table(files)


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
