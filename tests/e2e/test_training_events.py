"""An annotation submitted in Label Studio reaches our backend through the auto-created webhook and starts a round.

The backend appends every webhook event to ``DATA_DIR/events.jsonl`` and lists its jobs at ``GET /jobs``; the tests
read both (the backend has no ``GET /webhook/events``). A round trains a new version from the annotation, scores the
unlabelled tasks and writes scores and predictions back to Label Studio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.annotations import annotation_config, brush_stroke
from tests.e2e.harness import ConfigTags, RunningBackend, Studio, TinyImage, wait_until

EVENT_TIMEOUT_S = 15
ROUND_TIMEOUT_S = 240


@dataclass(frozen=True)
class SubmittedAnnotation:
    project: dict[str, Any]
    task: dict[str, Any]
    annotation: dict[str, Any]


@pytest.fixture(scope="module")
def submitted(studio: Studio, backend: RunningBackend, tiny_images: list[TinyImage]) -> SubmittedAnnotation:
    label_config = annotation_config()
    project = studio.create_project(f"annotation events ({backend.token_kind})", label_config)
    studio.import_images(project["id"], tiny_images)
    studio.add_ml_backend(project["id"], backend.url, title=f"ls-al-backend {backend.token_kind}")
    task = studio.tasks(project["id"])[0]
    stroke = brush_stroke(ConfigTags.parse(label_config), tiny_images[0])
    annotation = studio.post(f"/api/tasks/{task['id']}/annotations/", json={"result": [stroke], "lead_time": 4.2})
    return SubmittedAnnotation(project, task, annotation)


def annotation_events(backend: RunningBackend, annotation_id: int) -> list[dict[str, Any]]:
    return [
        event
        for event in backend.events()
        if event.get("action") == "ANNOTATION_CREATED" and event.get("annotation", {}).get("id") == annotation_id
    ]


def test_submitting_an_annotation_sends_annotation_created(
    submitted: SubmittedAnnotation, backend: RunningBackend
) -> None:
    arrived = wait_until(lambda: annotation_events(backend, submitted.annotation["id"]), EVENT_TIMEOUT_S)
    assert arrived, f"no ANNOTATION_CREATED for annotation {submitted.annotation['id']} in {backend.data_dir}"
    (event,) = annotation_events(backend, submitted.annotation["id"])
    assert event["annotation"]["result"] == submitted.annotation["result"]
    assert event["task"]["id"] == submitted.task["id"]
    assert event["task"]["data"] == submitted.task["data"]
    assert event["project"]["id"] == submitted.project["id"]
    assert event["project"]["label_config"] == submitted.project["label_config"]


def training_jobs(backend: RunningBackend, project_id: int) -> list[dict[str, Any]]:
    return [job for job in backend.get("/jobs")["jobs"] if job["kind"] == "train" and job["project"] == str(project_id)]


def test_the_annotation_event_queues_training(submitted: SubmittedAnnotation, backend: RunningBackend) -> None:
    assert wait_until(lambda: training_jobs(backend, submitted.project["id"]), EVENT_TIMEOUT_S), backend.get("/jobs")
    (job,) = training_jobs(backend, submitted.project["id"])
    assert job["meta"]["reason"] == "ANNOTATION_CREATED"


def test_a_training_round_scores_the_unlabelled_tasks(
    submitted: SubmittedAnnotation, backend: RunningBackend, studio: Studio
) -> None:
    project_id = submitted.project["id"]

    def round_over() -> bool:
        jobs = training_jobs(backend, project_id)
        return bool(jobs) and all(job["status"] in {"finished", "failed"} for job in jobs)

    assert wait_until(round_over, ROUND_TIMEOUT_S, interval_s=1), (
        f"round not over: {training_jobs(backend, project_id)}"
    )
    (job,) = training_jobs(backend, project_id)
    assert job["status"] == "finished", job["error"]
    version = job["result"]["model_version"]
    assert studio.get(f"/api/projects/{project_id}/")["model_version"] == version
    unlabelled = [task for task in studio.tasks(project_id) if task["id"] != submitted.task["id"]]
    assert unlabelled
    predictions = {}  # task id -> this version's prediction, whose score is the acquisition score
    for task in unlabelled:
        (predictions[task["id"]],) = [item for item in task["predictions"] if item["model_version"] == version]
        assert isinstance(predictions[task["id"]]["score"], float), predictions[task["id"]]
        assert set(task["data"]) == {"image"}, "task data is left alone"

    # the "Active learning queue" view, as Label Studio itself filters and orders it: this version's scores only
    view_id = job["result"]["view_id"]

    def queue() -> list[dict[str, Any]]:
        return studio.get("/api/tasks/", params={"project": project_id, "view": view_id, "page_size": 100})["tasks"]

    queued = queue()
    assert {task["id"] for task in queued} == {task["id"] for task in unlabelled}
    assert [task["predictions_score"] for task in queued] == sorted(
        (predictions[task["id"]]["score"] for task in queued), reverse=True
    ), "most informative first, by the Prediction score column"
    served = studio.get(f"/api/projects/{project_id}/next", params={"view": view_id})
    assert served["id"] == queued[0]["id"], "Label Tasks As Displayed serves the highest score first"
    # numeric order, not text order: as text "9e-05" sorts above "0.5"
    low, high = unlabelled[:2]
    for task, score in ((low, 9e-05), (high, 0.5)):
        studio.request("PATCH", f"/api/predictions/{predictions[task['id']]['id']}/", json={"score": score})
    ids = [task["id"] for task in queue()]
    assert ids.index(high["id"]) < ids.index(low["id"]), [task["predictions_score"] for task in queue()]
    other = {"model_version": "v999"}
    studio.request("PATCH", f"/api/predictions/{predictions[low['id']]['id']}/", json=other)
    assert low["id"] not in {task["id"] for task in queue()}, "a task scored by another version only is not listed"
