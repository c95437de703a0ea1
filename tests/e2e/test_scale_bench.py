"""The scale benchmark (``ls-al-backend bench --only scale``) against a real Label Studio, on a tiny project: every
round scores and writes back every task through real RQ workers, only ``KEEP_PREDICTION_VERSIONS`` versions stay
stored, and the SQLite database it reports is Label Studio's own."""

from __future__ import annotations

import os

from redis import Redis

from ls_al_backend.bench.scale import measure_scale, scale_summary
from ls_al_backend.config import Settings
from tests.e2e.harness import BACKEND_TEST_SETTINGS, LEGACY_TOKEN, REPO_ROOT, LabelStudio, Studio, TinyImage

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def test_three_rounds_score_every_task_and_keep_two_versions(
    label_studio: LabelStudio, studio: Studio, tiny_images: list[TinyImage]
) -> None:
    Redis.from_url(REDIS_URL).ping()
    environment = BACKEND_TEST_SETTINGS | {"SCORE_CHUNK_SIZE": "2", "KEEP_PREDICTION_VERSIONS": "2"}
    environment |= {"CLASS_MASKS": "auto", "UNCERTAINTY_OVERLAY": "auto"}
    settings = Settings.from_env(environment, label_studio_url=label_studio.url, label_studio_api_key=LEGACY_TOKEN)
    config = (REPO_ROOT / "label_configs" / "superpixel_dominant.xml").read_text()
    database = label_studio.data_dir / "label_studio.sqlite3"
    images = [image.path for image in tiny_images]

    result = measure_scale(settings, config, "superpixel_dominant", images, 5, (1, 1, 2), REDIS_URL, database)

    assert [(row["model_version"], row["images"], row["failed"]) for row in result["rounds"]] == [
        ("v1", 5, 0), ("v2", 5, 0), ("v3", 5, 0),
    ]  # fmt: skip
    assert result["rounds"][-1]["workers"] == 2 and result["rounds"][-1]["threads_per_worker"] >= 1
    for row in result["rounds"]:  # where the workers' time went
        assert set(row["stage_seconds"]) == {"read", "network", "render", "write"}, row
        assert row["stage_seconds"]["network"] > 0 and row["stage_seconds"]["write"] > 0, row
    assert [row["deleted_versions"] for row in result["rounds"]] == [{}, {}, {"v1": 5}], "publish deletes v1"
    assert result["ls_db_bytes_before"] <= result["ls_db_bytes_after_import"] <= result["rounds"][-1]["ls_db_bytes"]
    stored = result["stored_predictions"]
    assert stored["most_versions_per_task"] == 2 and stored["mean_bytes"] > 0, "v1's predictions were deleted"
    project = next(p for p in studio.get("/api/projects/")["results"] if p["title"] == "ls-al-backend scale (5 tasks)")
    for task in studio.tasks(project["id"]):
        assert sorted(p["model_version"] for p in task["predictions"]) == ["v2", "v3"], task["predictions"]
        (latest,) = [p for p in task["predictions"] if p["model_version"] == "v3"]
        assert isinstance(latest["score"], float), latest

    summary = scale_summary(result, cores=2)
    assert summary["tasks"] == 10_000 and summary["measured_tasks"] == 5 and summary["rounds_measured"] == 3
    assert summary["images_per_s_1_worker"] > 0 and summary["images_per_s_2_workers"] > 0
    assert summary["bytes_per_prediction"] == {"superpixel_dominant": stored["mean_bytes"]}
