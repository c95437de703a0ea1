"""The active-learning simulation on a tiny CamVid pool (4 train images, 2 val images, 64x48, 1 epoch, 2 rounds)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ls_al_backend.acquisition.superpixels import SuperpixelCache
from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.simulation import (
    PRESETS,
    ImageLabels,
    Simulation,
    SimulationConfig,
    build_target,
    config_from_preset,
    confusion_matrix,
    dominant_class,
    fully_supervised_reference,
    iou_per_class,
    load_split,
    mean_iou,
    multiclass_candidate_matrix,
    multiclass_candidates,
    plot_learning_curves,
    run_simulation,
    summarise,
    summary_table,
    trace_polygons,
)
from tests.conftest import camvid_root

BUDGETS = {"image": 220, "superpixel_dominant": 6, "superpixel_multiclass": 8, "pixels": 40}


pytestmark = pytest.mark.usefixtures("one_thread")


def _copy_split(split: str, count: int, destination: Path) -> Path:
    source = camvid_root() / split
    images = sorted((source / "images").glob("*.jpg"))[::50][:count]
    assert len(images) == count, f"CamVid {split} images not found under {source}"
    (destination / "images").mkdir(parents=True)
    (destination / "masks").mkdir()
    for path in images:
        Image.open(path).convert("RGB").resize((64, 48), Image.BILINEAR).save(
            destination / "images" / f"{path.stem}.png"
        )
        mask = Image.open(source / "masks" / f"{path.stem}.png").resize((64, 48), Image.NEAREST)
        mask.save(destination / "masks" / f"{path.stem}.png")
    return destination


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("camvid-tiny")
    return _copy_split("train", 4, root / "pool"), _copy_split("val", 2, root / "eval")


def tiny_config(data, out: Path, mode: str = "superpixel_dominant", **overrides) -> SimulationConfig:
    pool, evaluation = data
    values = dict(
        query_mode=mode,
        acquisition={"heuristic": "bald", "class_balance": "pixbal", "superpixel_size": 16},
        budget=BUDGETS[mode],
        initial_budget=BUDGETS[mode],
        rounds=2,
        resolution=64,
        epochs=1,
        stage2_epochs=1,
        batch_size=2,
        mc_samples=3,
        device="cpu",
    )
    values.update(overrides)
    return SimulationConfig(str(pool), str(evaluation), str(out), **values)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """``finished(mode)``: the rows and out dir of one uninterrupted 2-round run per mode (run once, shared)."""
    runs: dict[str, tuple[list[dict], Path, list[str]]] = {}

    def get(mode: str) -> tuple[list[dict], Path, list[str]]:
        if mode not in runs:
            out = tmp_path_factory.mktemp(mode)
            lines: list[str] = []
            runs[mode] = (run_simulation(tiny_config(data, out, mode), log=lines.append), out, lines)
        return runs[mode]

    return get


def without_time(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if not key.endswith("seconds")} for row in rows]


def saved_state(out: Path, round_index: int) -> list[dict]:
    return json.loads((out / "state" / f"round_{round_index:03d}.json").read_text())["images"]


@pytest.mark.parametrize("mode", list(BUDGETS))
def test_each_mode_runs_two_rounds_within_the_budget(data, finished, mode):
    rows, tmp_path, lines = finished(mode)

    assert [row["round"] for row in rows] == [0, 1]
    assert len(lines) == 2 and all("mIoU" in line for line in lines)
    for row in rows:
        assert 0 < row["clicks_round"]
        if mode != "image":  # whole images may overspend by one image, carried over
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


def test_config_is_validated(data, tmp_path):
    with pytest.raises(ValueError, match="budget_unit"):
        tiny_config(data, tmp_path, budget_unit="seconds")
    with pytest.raises(ValueError, match="query_mode"):
        tiny_config(data, tmp_path, query_mode="boxes", budget=1, initial_budget=1)
    with pytest.raises(ValueError, match="heuristic"):
        tiny_config(data, tmp_path, acquisition={"heuristic": "nope"})
    with pytest.raises(ValueError, match="diversity"):
        tiny_config(data, tmp_path, acquisition={"diversity": "kcenter"})


def test_multiclass_annotator_keeps_interior_classes_and_drops_boundary_ones():
    gt = np.full((12, 12), 9, dtype=np.int64)  # class 9 only outside the region
    region = np.zeros((12, 12), dtype=bool)
    region[2:10, 2:10] = True
    gt[2:10, 2:10] = 3  # majority
    gt[5:7, 5:7] = 5  # interior
    gt[2, 2:10] = 7  # only on the region's outer row
    gt[9, 2:4] = IGNORE
    candidates = multiclass_candidates(gt, region, num_classes=11, erosion=2)
    assert np.flatnonzero(candidates).tolist() == [3, 5]
    # no erosion: every non-void class of the region, still nothing from outside
    assert np.flatnonzero(multiclass_candidates(gt, region, 11, erosion=0)).tolist() == [3, 5, 7]
    # an all-void region gives no answer
    assert not multiclass_candidates(np.full((12, 12), IGNORE), region, 11).any()


def test_multiclass_candidates_on_real_regions_hold_the_majority_and_only_present_classes(data):
    cache = SuperpixelCache()
    checked = 0
    for example in load_split(data[0], resolution=64):
        regions = cache.get(example.image, "slic", 16, None)
        for region in range(int(regions.max()) + 1):
            mask = regions == region
            candidates = set(np.flatnonzero(multiclass_candidates(example.gt, mask, 11, erosion=2)).tolist())
            present = set(np.unique(example.gt[mask]).tolist()) - {IGNORE}
            majority = dominant_class(example.gt[mask], 11)
            assert candidates <= present
            assert (majority in candidates) if majority is not None else not candidates
            checked += 1
    assert checked > 10


def test_targets_per_mode_follow_the_annotator():
    gt = np.array([[0, 0, 1, 1], [0, IGNORE, 1, 2], [IGNORE, IGNORE, 2, 2]])
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1]])
    example = type("E", (), {"gt": gt, "image": None})()

    dominant, clicks = build_target(example, ImageLabels(regions=[0, 2]), regions, "superpixel_dominant", 3, 0)
    assert clicks == 2
    expected = np.full(gt.shape, IGNORE)
    expected[regions == 0] = 0  # the void pixel of region 0 gets the region's class too; region 2 is all void
    assert np.array_equal(dominant.labels, expected)

    multi, clicks = build_target(example, ImageLabels(regions=[1, 0]), regions, "superpixel_multiclass", 3, 0)
    assert multi.candidates.tolist() == [[False, True, True], [True, False, False]] and clicks == 3
    assert np.array_equal(multi.region_ids, np.where(regions == 1, 0, np.where(regions == 0, 1, -1)))
    assert np.array_equal(multi.labels, np.where(regions == 0, 0, IGNORE))  # one-class regions also label pixels

    pixels, clicks = build_target(example, ImageLabels(pixels=[(0, 2), (1, 1)]), None, "pixels", 3, 0)
    assert clicks == 2 and pixels.labelled_pixels == 1 and pixels.labels[0, 2] == 1

    dense, clicks = build_target(example, ImageLabels(dense=True), None, "image", 3, 0)
    assert (dense.labels == IGNORE).all() and clicks == 0, "regions under 20 pixels are not traced"


def test_a_whole_image_costs_the_vertices_of_its_traced_regions():
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[:, 5:] = 1
    gt[0:2, 9] = 2  # a 2-pixel region: too small to trace
    example = type("E", (), {"gt": gt, "image": None})()
    traced, clicks = build_target(example, ImageLabels(dense=True), None, "image", 3, 0)
    assert np.array_equal(traced.labels, np.where(gt == 2, IGNORE, gt))
    assert 8 <= clicks <= 12, "a rectangle (4 vertices) and a notched rectangle (about 6)"
    labels, vertices = trace_polygons(gt, 3)
    assert vertices == clicks and np.array_equal(labels, traced.labels)


def test_the_vectorised_multiclass_answers_match_the_per_region_annotator(data):
    cache = SuperpixelCache()
    for example in load_split(data[0], resolution=64):
        regions = cache.get(example.image, "slic", 16, None)
        matrix = multiclass_candidate_matrix(example.gt, regions, 11, erosion=2)
        for region in range(int(regions.max()) + 1):
            expected = multiclass_candidates(example.gt, regions == region, 11, erosion=2)
            assert matrix[region].tolist() == expected.tolist(), region


def test_iou_against_a_hand_made_case():
    gt = np.array([[0, 0, 1], [1, IGNORE, 2]])
    predicted = np.array([[0, 1, 1], [1, 0, 0]])
    confusion = confusion_matrix(predicted, gt, num_classes=4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    ious = iou_per_class(confusion)
    assert ious[:3] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert np.isnan(ious[3])  # absent from ground truth and prediction: left out of the mean
    assert mean_iou(confusion) == pytest.approx(1 / 3)


def test_fully_supervised_reference_is_written_once(data, tmp_path):
    config = dataclasses.replace(tiny_config(data, tmp_path), out_dir=str(tmp_path / "reference"))
    reference = fully_supervised_reference(config, log=None)
    assert reference["kind"] == "reference" and 0.0 <= reference["miou"] <= 1.0
    assert json.loads((tmp_path / "reference" / "reference.json").read_text())["miou"] == reference["miou"]
    assert fully_supervised_reference(config, log=None) == json.loads(json.dumps(reference))


def test_a_budget_in_pixels_bounds_the_labelled_pixels_and_rows_still_count_clicks(data, tmp_path):
    config = tiny_config(data, tmp_path, budget_unit="pixels", budget=700, initial_budget=700)
    rows = run_simulation(config, log=None)
    assert rows[0]["labelled_pixels"] <= 700 < rows[1]["labelled_pixels"] <= 1400
    assert [row["clicks_round"] for row in rows] == [row["units_selected"] for row in rows], "1 click per region"


def test_the_reference_trains_its_epochs_and_half_as_many(data, tmp_path):
    config = tiny_config(data, tmp_path, rounds=3, epochs=2, min_steps=50)
    reference = config.reference_train_config()
    assert (reference.epochs, reference.min_steps, reference.stage2_epochs) == (6, 0, 0)
    assert config.reference_train_config(0.5).epochs == 3
    assert dataclasses.replace(config, reference_epochs=4).reference_train_config().epochs == 4


def test_rounds_train_by_the_servers_rule_and_record_steps(data, finished):
    rows, _, _ = finished("superpixel_dominant")
    for row in rows:
        assert row["train_steps"] == row["labelled_images"] // 2 + row["labelled_images"] % 2, "1 epoch, batches of 2"
        assert row["train_seconds"] > 0 and row["precision"] in {"fp32", "bf16"}
        assert 0 < row["click_share_of_full"] < 1


def test_the_cli_can_train_only_the_reference(data, tmp_path):
    from ls_al_backend.cli import main

    pool, evaluation = data
    argv = ["simulate", "--pool", str(pool), "--eval", str(evaluation), "--out", str(tmp_path), "--reference-only"]
    argv += ["--semi-supervised", "mean_teacher"]  # the reference trains supervised all the same
    assert main([*argv, "--resolution", "64", "--epochs", "1", "--rounds", "1", "--batch-size", "2"]) == 0
    config = json.loads((tmp_path / "reference.json").read_text())["config"]
    assert config["resolution"] == 64 and config["semi_supervised"] == "mean_teacher"
    assert not (tmp_path / "results.json").exists()


def test_presets_fill_what_the_options_leave_open(tmp_path):
    paths = {"pool_dir": "pool", "eval_dir": "eval", "out_dir": str(tmp_path)}
    cpu = config_from_preset("cpu", **paths, epochs=None, acquisition={"heuristic": "bald"})
    assert (cpu.resolution, cpu.rounds, cpu.epochs) == (240, PRESETS["cpu"]["rounds"], PRESETS["cpu"]["epochs"])
    assert cpu.acquisition == {"heuristic": "bald", "superpixel_size": 16}
    mine = config_from_preset("cpu", **paths, epochs=7, acquisition={"superpixel_size": 24})
    assert mine.epochs == 7 and mine.acquisition == {"superpixel_size": 24}
    assert config_from_preset(None, **paths).epochs == SimulationConfig("p", "e", "o").epochs
    assert config_from_preset("gpu", **paths).warm_start is False
    with pytest.raises(ValueError, match="preset 'tpu'"):
        config_from_preset("tpu", **paths)


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
                "train_steps": 5,
                "train_seconds": 1.0,
            }
            for i in range(3)
        ]
        rows[-1]["miou"] += offset
        folder = tmp_path / strategy / f"seed_{seed}"
        folder.mkdir(parents=True)
        payload = {"kind": "active_learning", "strategy": strategy, "seed": seed, "rows": rows}
        config = {"acquisition": {"heuristic": heuristic}, "rounds": rounds}
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
        "miou_at_half_steps_std": None, "train_steps": None,
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
        "learning_curves.png", "learning_curves_pixels.png", "summary.json", "summary.md",
    ]  # fmt: skip
    assert json.loads((out / "summary.json").read_text()) == summarise(files)


def test_random_whole_images_are_taken_in_order_and_the_unspent_budget_carries_over(data, tmp_path):
    """A random round takes images in order, the first always and then while they fit (never a cheaper one
    instead), and the next round gets what was left or overspent: cumulative clicks track the plan within one
    image."""
    config = tiny_config(data, tmp_path, "image", acquisition={"heuristic": "random"}, rounds=3)
    simulation = Simulation(config, log=None)
    costs = [simulation.image_clicks(i) for i in range(len(simulation.pool))]
    rows = run_simulation(config, log=None)
    for row in rows:
        planned = config.initial_budget + row["round"] * config.budget
        assert row["budget_spent_cumulative"] == row["clicks_cumulative"]
        assert abs(planned - row["clicks_cumulative"]) < max(costs), "never more than one image off the plan"
        assert row["units_selected"] >= 1


def test_a_round_whose_budget_the_last_image_spent_labels_nothing_new(data, tmp_path):
    config = tiny_config(
        data, tmp_path, "image", acquisition={"heuristic": "random"}, rounds=2, budget=20, initial_budget=20
    )
    rows = run_simulation(config, log=None)
    assert rows[0]["units_selected"] == 1 and rows[0]["clicks_cumulative"] > 40, "the first image, over budget"
    assert rows[1]["units_selected"] == 0 and rows[1]["clicks_round"] == 0
    assert rows[1]["miou"] == rows[0]["miou"] and rows[1]["clicks_cumulative"] == rows[0]["clicks_cumulative"]


def test_summarising_paths_without_results_is_a_readable_error(tmp_path, capsys):
    from ls_al_backend.cli import main

    argv = ["simulate", "--pool", "p", "--eval", "e", "--out", str(tmp_path / "out"), "--plot", str(tmp_path / "none")]
    assert main(argv) == 2
    assert "no results.json or reference.json" in capsys.readouterr().err and not (tmp_path / "out").exists()
