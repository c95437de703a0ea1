"""``ls-al-backend bench``: a quick run of every measurement writes a sane JSON report and its Markdown table."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from redis import Redis

from ls_al_backend.bench.report import training_images_per_s_after_first_epoch
from ls_al_backend.bench.service_speed import measure_pool_scoring, percentile
from ls_al_backend.cli import main
from ls_al_backend.config import Settings
from tests.conftest import LABEL_CONFIGS, REPO_ROOT, camvid_root

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def test_a_quick_run_measures_everything_and_writes_json_and_markdown(tmp_path, monkeypatch) -> None:
    Redis.from_url(REDIS_URL).ping()  # pool scoring runs real RQ workers, like tests/jobs
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny tensors: one thread per process is fastest on a busy CPU
    out = tmp_path / "speed"
    argv = ["bench", "--data", str(camvid_root() / "val"), "--out", str(out), "--quick", "--redis-url", REDIS_URL]
    argv += ["--label-configs", str(REPO_ROOT / "label_configs")]

    assert main(argv) == 0

    (path,) = out.glob("*-quick.json")
    report = json.loads(path.read_text())
    assert report["command"] == "ls-al-backend " + " ".join(argv)
    assert report["quick"] and report["environment"]["OMP_NUM_THREADS"] == "1"
    results = report["results"]
    assert list(results) == [
        "mc", "predict", "scoring", "training", "precision", "runtimes", "predict_memory", "prediction_bytes"
    ]  # fmt: skip
    for name, result in results.items():
        assert "error" not in result and "skipped" not in result, name
        machine = result["machine"]
        assert machine["cpu"] and machine["cores"] >= 1 and machine["torch_threads"] >= 1, name
        assert machine["torch"] and machine["device"] and "gpu" in machine, name
        assert result["peak_memory"]["rss_mib"] > 0 and result["wall_s"] > 0, name

    mc = results["mc"]
    assert {(row["mc_resolution"], row["samples"]) for row in mc["rows"]} == {(0.25, 1), (0.25, 2), (1.0, 1), (1.0, 2)}
    assert mc["images"] == 2 and max(mc["image_size"]) == 64 and mc["deterministic_median_s"] > 0
    assert all(row["ratio"] > 0 and row["median_s"] > 0 for row in mc["rows"])

    modes = results["predict"]["modes"]
    assert set(modes) == {path.stem for path in LABEL_CONFIGS}
    for mode in modes.values():
        assert mode["images"] == 2 and 0 < mode["p50_s"] <= mode["p95_s"] <= mode["max_s"]

    scoring = results["scoring"]
    assert scoring["redis_url"] == REDIS_URL and scoring["label_config"] == "superpixel_dominant"
    assert [run["workers"] for run in scoring["runs"]] == [1, 2]
    assert all(run["images"] == 2 and run["chunks"] == 2 and run["images_per_s"] > 0 for run in scoring["runs"])

    training = results["training"]
    assert training["images"] == 2 and training["epochs"] == 1 and training["images_per_s"] > 0

    memory = results["predict_memory"]["rows"]
    assert [(max(row["image_size"]), row["analysis_max_side"]) for row in memory] == [(64, 64), (128, 64), (128, 128)]
    assert all(row["peak_rss_mib"] >= row["baseline_rss_mib"] > 0 and row["seconds"] > 0 for row in memory)

    precision = results["precision"]
    assert [row["variant"].split(" ")[0] for row in precision["rows"]] == ["fp32", "fp32", "auto", "bf16"]
    assert precision["rows"][0]["train_speedup"] == precision["rows"][0]["inference_speedup"] == 1.0
    assert all(row["train_images_per_s"] > 0 and row["inference_images_per_s"] > 0 for row in precision["rows"])
    expected_auto = "bf16" if precision["native_bf16"] else "fp32"
    assert precision["rows"][2]["precision"] == expected_auto, "auto falls back to fp32 without native bf16"

    runtimes = results["runtimes"]
    names = [row["runtime"].split(" ")[0] for row in runtimes["rows"]]
    assert names == ["torch,", "torch", "onnxruntime"] and runtimes["rows"][1]["x_torch"] == 1.0
    assert all(row["images_per_s"] > 0 for row in runtimes["rows"]) and runtimes["onnxruntime_first_prepare_s"] > 0
    assert runtimes["auto_picks"] == min(runtimes["auto_probe_s"], key=runtimes["auto_probe_s"].get)

    sizes = results["prediction_bytes"]
    assert sizes["train_images"] == 2 and sizes["epochs"] == 1 and sizes["images"] == 2
    rows = {(row["mode"], row["version"], row["layers"]): row for row in sizes["rows"]}
    assert len(rows) == 3 * len(LABEL_CONFIGS), "v0 with every layer, v1 with the defaults and with every layer"
    assert all(row["predictions"] == 2 and 0 < row["mean_bytes"] <= row["max_bytes"] for row in rows.values())
    queries = rows[("superpixel_dominant", "v1", "auto")]["results_per_prediction"]
    assert set(queries) == {"polygonlabels", "choices"}, "by default a query mode sends only its queries"
    dense = rows[("dense_brush", "v1", "auto")]["results_per_prediction"]
    assert set(dense) == {"brushlabels"}, "dense mode sends masks and overlay once trained"
    every = rows[("superpixel_dominant", "v1", "on")]
    assert every["mean_bytes"] > rows[("superpixel_dominant", "v1", "auto")]["mean_bytes"]

    readme = (out / "README.md").read_text()
    assert report["command"] in readme and path.name in readme
    headings = ("**MC dropout**", "**`/predict` latency**", "**Pool scoring**", "**Training**", "**Precision and")
    headings += ("**Runtimes of the encoder + decoder**", "**Bytes per prediction**")
    for heading in headings:
        assert heading in readme


def test_a_missing_data_folder_is_a_readable_error(tmp_path, capsys) -> None:
    code = main(["bench", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--quick"])

    assert code == 2
    assert "--data" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_unknown_measurement_is_a_readable_error(tmp_path, capsys) -> None:
    argv = ["bench", "--data", str(camvid_root() / "val"), "--out", str(tmp_path), "--only", "mc,speed"]

    assert main(argv) == 2
    assert "speed" in capsys.readouterr().err


def test_scoring_is_skipped_with_the_reason_when_redis_does_not_answer(tmp_path) -> None:
    result = measure_pool_scoring(Settings.from_env({}), "<View/>", "none", [], [1], "redis://127.0.0.1:1/0")

    assert "redis://127.0.0.1:1/0" in result["skipped"]


@pytest.mark.parametrize("values", [[3.0], [2.0, 1.0], [5.0, 1.0, 4.0, 2.0, 3.0, 9.0]])
def test_percentiles_match_numpy(values) -> None:
    for q in (0, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_scale_links_distinct_names_to_the_images_in_turn(tmp_path) -> None:
    from ls_al_backend.bench.scale import link_images

    sources = [tmp_path / "a.png", tmp_path / "b.jpg"]
    for source in sources:
        source.write_bytes(source.name.encode())
    linked = link_images(sources, 5, tmp_path / "tasks")
    assert [path.name for path in linked] == [f"task_{i:06d}{sources[i % 2].suffix}" for i in range(5)]
    assert [path.read_bytes() for path in linked] == [b"a.png", b"b.jpg", b"a.png", b"b.jpg", b"a.png"]


def test_scale_reports_the_database_with_its_write_ahead_log(tmp_path) -> None:
    from ls_al_backend.bench.scale import database_bytes

    database = tmp_path / "label_studio.sqlite3"
    assert database_bytes(database) is None and database_bytes(None) is None
    database.write_bytes(b"x" * 100)
    assert database_bytes(database) == 100
    (tmp_path / "label_studio.sqlite3-wal").write_bytes(b"x" * 20)
    assert database_bytes(database) == 120


def test_the_scale_summary_states_a_10k_project_scaled_from_the_measured_one() -> None:
    from ls_al_backend.bench.scale import scale_summary

    mib = 2**20
    rounds = [
        {"workers": 1, "images_per_s": 2.0, "ls_db_bytes": 12 * mib},
        {"workers": 2, "images_per_s": 3.5, "ls_db_bytes": 14 * mib},
        {"workers": 2, "images_per_s": 3.7, "ls_db_bytes": 15 * mib},
    ]
    result = {
        "tasks": 1000, "rounds": rounds, "ls_db_bytes_after_import": 10 * mib, "label_config": "superpixel_dominant",
        "stored_predictions": {"mean_bytes": 9000},
    }  # fmt: skip
    summary = scale_summary(result, cores=2)
    assert summary == {
        "tasks": 10_000, "measured_tasks": 1000, "cores": 2, "images_per_s_1_worker": 2.0,
        "images_per_s_2_workers": 3.6, "round_minutes_10k": round(10_000 / 3.7 / 60, 1),
        "ls_db_growth_mb_3_rounds": 50.0, "rounds_measured": 3, "bytes_per_prediction": {"superpixel_dominant": 9000},
    }  # fmt: skip


def test_the_scale_summary_states_no_3_round_growth_from_fewer_rounds() -> None:
    from ls_al_backend.bench.scale import scale_summary

    result = {
        "tasks": 10_000, "rounds": [{"workers": 2, "images_per_s": 6.0, "ls_db_bytes": 2**30}],
        "ls_db_bytes_after_import": 2**20, "label_config": "superpixel_dominant",
        "stored_predictions": {"mean_bytes": 1},
    }  # fmt: skip
    summary = scale_summary(result, cores=2)
    assert summary["ls_db_growth_mb_3_rounds"] is None and summary["images_per_s_1_worker"] is None
    assert (summary["measured_tasks"], summary["rounds_measured"], summary["round_minutes_10k"]) == (10_000, 1, 27.8)


def test_scale_is_skipped_with_the_reason_without_a_label_studio() -> None:
    from ls_al_backend.bench.scale import measure_scale

    result = measure_scale(Settings.from_env({}), "<View/>", "none", [], 10, (1,), REDIS_URL)

    assert "LABEL_STUDIO_URL" in result["skipped"]


def test_training_speed_after_the_first_epoch_leaves_the_warm_up_out() -> None:
    result = {"seconds_per_epoch": [11.0, 0.5, 0.5], "images_per_epoch": 16}
    assert training_images_per_s_after_first_epoch(result) == 32.0
    assert training_images_per_s_after_first_epoch({"seconds_per_epoch": [2.0], "images_per_epoch": 16}) is None
