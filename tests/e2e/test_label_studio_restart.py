"""Fault: the real Label Studio goes down in the middle of a round and comes back.

A Label Studio of its own (the session's one keeps serving the other tests) is stopped while our backend trains;
the round fails cleanly (``/jobs`` says why, the trained version is kept), and after Label Studio restarts on the
same port and database the next trigger completes the round. No annotation is lost, and the pool ends up scored
by the new version. A third round then shows that older versions' predictions are deleted
(``KEEP_PREDICTION_VERSIONS=1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.annotations import annotation_config, brush_stroke
from tests.e2e.harness import (
    LEGACY_TOKEN,
    ConfigTags,
    LabelStudio,
    RunningBackend,
    Studio,
    TinyImage,
    start_backend,
    wait_until,
)
from tests.faults.conftest import LEDGER

ROUND_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def own_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    with LabelStudio.running(tmp_path_factory.mktemp("ls-restart")) as studio:
        yield studio


def post_training(backend: RunningBackend, project: dict[str, Any]) -> str:
    event = {"action": "START_TRAINING", "project": {"id": project["id"], "label_config": project["label_config"]}}
    answer = requests.post(backend.url + "/webhook", json=event, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["job_id"]


def job(backend: RunningBackend, job_id: str) -> dict[str, Any]:
    return next(item for item in backend.get("/jobs")["jobs"] if item["id"] == job_id)


def wait_for_end(backend: RunningBackend, job_id: str) -> dict[str, Any]:
    """The job once finished or failed; on a timeout the failure shows the job and the backend's log."""
    ended = wait_until(lambda: job(backend, job_id)["status"] in ("finished", "failed"), ROUND_TIMEOUT_S)
    assert ended, f"job {job_id} still running after {ROUND_TIMEOUT_S} s: {job(backend, job_id)}\n{backend.log_tail()}"
    return job(backend, job_id)


def test_label_studio_stopped_mid_round_then_restarted(
    own_studio: LabelStudio, tiny_images: list[TinyImage], tmp_path: Path
) -> None:
    studio = Studio(own_studio.url, f"Token {LEGACY_TOKEN}")
    label_config = annotation_config()
    project = studio.create_project("restart mid-round", label_config)
    studio.import_images(project["id"], tiny_images)
    labelled, *unlabelled = studio.tasks(project["id"])
    stroke = brush_stroke(ConfigTags.parse(label_config), tiny_images[0])
    studio.post(f"/api/tasks/{labelled['id']}/annotations/", json={"result": [stroke], "lead_time": 1.0})
    backend = start_backend(
        own_studio,
        "legacy_token",
        LEGACY_TOKEN,
        tmp_path / "backend",
        # 6 epochs of 10 steps, each reported: Label Studio stops during them; short retries: the outage outlasts them
        {
            "TRAIN_EPOCHS": "6",
            "TRAIN_MIN_STEPS": "60",
            "STUDIO_RETRIES": "2",
            "STUDIO_BACKOFF_S": "0.2",
            "KEEP_PREDICTION_VERSIONS": "1",
        },
    )
    try:
        first = post_training(backend, project)
        assert wait_until(lambda: job(backend, first)["meta"].get("stage") == "training", 180, interval_s=0.2), job(
            backend, first
        )
        own_studio.stop()
        failed = wait_for_end(backend, first)
        assert failed["status"] == "failed" and "StudioError" in failed["error"], failed
        assert backend.get(f"/versions?project={project['id']}")["versions"] == ["v0", "v1"], (
            "the trained version stays"
        )

        own_studio.restart()
        rerun = post_training(backend, project)
        finished = wait_for_end(backend, rerun)
        assert finished["status"] == "finished", finished["error"]
        version = finished["result"]["model_version"]
        tasks = {task["id"]: task for task in studio.tasks(project["id"])}
        lost = int(len(tasks[labelled["id"]]["annotations"]) != 1)
        LEDGER.record("real Label Studio stopped mid-round, restarted", f"/jobs: failed; rerun {version}", lost)
        assert lost == 0, tasks[labelled["id"]]["annotations"]
        for task in unlabelled:
            versions = [prediction["model_version"] for prediction in tasks[task["id"]]["predictions"]]
            assert version in versions, versions
        queued = studio.get(
            "/api/tasks/", params={"project": project["id"], "view": finished["result"]["view_id"], "page_size": 100}
        )["tasks"]
        assert {task["id"] for task in queued} == {task["id"] for task in unlabelled}

        # one more round: with KEEP_PREDICTION_VERSIONS=1 Label Studio keeps only the newest version's predictions
        third = post_training(backend, project)
        last = wait_for_end(backend, third)
        assert last["status"] == "finished", last["error"]
        newest = last["result"]["model_version"]
        for task in unlabelled:
            kept = [prediction["model_version"] for prediction in studio.predictions(task["id"])]
            assert kept == [newest], f"task {task['id']}: {kept}"
    finally:
        backend.stop()
