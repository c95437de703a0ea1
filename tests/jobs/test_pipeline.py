"""One active-learning round against a recording Label Studio stand-in: train, score, write back."""

from __future__ import annotations

import pytest

from ls_al_backend.jobs.pipeline import Pipeline, UnreadableLabels
from ls_al_backend.jobs.runners import run_round
from ls_al_backend.modes import parse_label_config
from ls_al_backend.studio import StudioError
from tests.jobs.conftest import DENSE_XML, PROJECT, job_settings


def counts(summary: dict) -> dict:
    """A scoring summary without its stage timings."""
    return {key: value for key, value in summary.items() if key != "seconds"}


def test_a_round_trains_a_new_version_and_writes_the_pool_order_back(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url))
    stages = []
    summary = run_round(pipeline, PROJECT, DENSE_XML, lambda update: stages.append(update.get("stage")))

    assert pipeline.backend.models.versions(PROJECT) == [1]
    checkpoint = pipeline.backend.models.load(PROJECT, 1)
    assert checkpoint.metadata["labelled_tasks"] == [1, 2, 3], "every labelled task is used"
    pool = checkpoint.metadata["pool_statistics"]
    assert pool["images"] == 7, "the pool statistics come from every task's image"
    assert sum(pool["class_prior"]) == pytest.approx(1.0) and sum(pool["dominant_share"]) == pytest.approx(1.0)
    assert pipeline.backend.cache.get(PROJECT, checkpoint.class_names)[1] == 1
    assert pipeline.backend.cache.metadata(PROJECT)["pool_statistics"] == pool, "served with its version"
    assert {"reading labels", "training", "trained", "scoring"} <= set(stages)

    unlabelled = [4, 5, 6, 7]
    assert summary["scored"] == 4 and summary["failed"] == [] and summary["model_version"] == "v1"
    assert sorted(p["task"] for p in studio.predictions) == unlabelled
    assert all(0.0 <= p["score"] < 1.0 for p in studio.predictions), "dense mode's random task order: U[0, 1)"
    assert {p["model_version"] for p in studio.predictions} == {"v1"}
    assert all(p["result"] for p in studio.predictions)
    assert not studio.calls("PATCH", "/api/tasks/"), "task data is left alone: the score is the prediction's"
    assert studio.projects[PROJECT] == {"model_version": "v1"}, "the Prediction score column counts v1 only"
    (view,) = studio.views
    assert view["data"]["title"] == "Active learning queue"
    assert view["data"]["ordering"] == ["-tasks:predictions_score"]
    hidden = view["data"]["hiddenColumns"]["explore"]
    assert "tasks:id" not in hidden and "tasks:predictions_score" not in hidden
    assert "tasks:total_annotations" not in hidden
    assert "tasks:annotations_results" in hidden and hidden == view["data"]["hiddenColumns"]["labeling"]


def test_writing_back_twice_creates_no_duplicates(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url))
    outcome = pipeline.train(PROJECT, DENSE_XML)
    for _ in range(2):
        pipeline.score(PROJECT, DENSE_XML, outcome.unlabelled_task_ids)
        pipeline.publish(PROJECT, outcome.version)
    assert len(studio.predictions) == 4 and len(studio.views) == 1


def test_a_briefly_unreachable_label_studio_is_retried(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url, studio_retries=5, studio_backoff_s=0.01))
    pipeline.studio.call("GET", "/api/tasks/1/")
    studio.unavailable = 3
    assert pipeline.studio.call("GET", "/api/tasks/1/")["id"] == 1
    studio.unavailable = 3
    assert [task["id"] for task in pipeline.studio.iter_tasks(PROJECT)] == list(range(1, 8)), "task pages too"
    studio.unavailable = 3
    assert pipeline.studio.download(next(iter(studio.files)), 10**7), "file downloads too"
    studio.unavailable = 10
    pipeline.studio.retries = 2
    with pytest.raises(StudioError, match="HTTP 503 after 3 attempts"):
        pipeline.studio.call("GET", "/api/tasks/1/")


def test_scoring_a_task_that_fails_does_not_sink_the_others(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url))
    studio.tasks[5]["data"]["image"] = "/data/upload/5/missing.png"
    summary = pipeline.score(PROJECT, DENSE_XML, [4, 5, 6])
    assert counts(summary) == {"scored": 2, "failed": [5], "already_scored": 0}
    assert set(summary["seconds"]) == {"read", "network", "render", "write"}, "wall time per stage"
    assert all(seconds >= 0 for seconds in summary["seconds"].values())


def test_training_without_annotations_is_a_clear_error(tmp_path, studio) -> None:
    for task in studio.tasks.values():
        task["annotations"] = []
    with pytest.raises(ValueError, match="no usable annotations"):
        Pipeline(job_settings(tmp_path, studio.url)).train(PROJECT, DENSE_XML)


def test_malformed_and_cancelled_annotations_are_skipped(tmp_path, studio) -> None:
    studio.tasks[1]["annotations"][0]["result"][0]["value"]["rle"] = [1, 2, 3]
    studio.tasks[2]["annotations"][0]["was_cancelled"] = True
    outcome = Pipeline(job_settings(tmp_path, studio.url)).train(PROJECT, DENSE_XML)
    assert outcome.version == 1
    assert 2 in outcome.unlabelled_task_ids


def test_the_mean_teacher_learns_from_the_readable_unlabelled_images(tmp_path, studio) -> None:
    studio.tasks[5]["data"]["image"] = "/data/upload/5/missing.png"
    pipeline = Pipeline(job_settings(tmp_path, studio.url, train_semi_supervised="mean_teacher"))
    outcome = pipeline.train(PROJECT, DENSE_XML)
    assert outcome.metrics["semi_supervised"] == "mean_teacher"
    assert outcome.metrics["unlabelled_images"] == 3, "tasks 4, 6, 7; the unreadable task 5 is skipped"
    assert pipeline.backend.models.load(PROJECT, 1).metadata["config"]["semi_supervised"] == "mean_teacher"


def test_unlabelled_images_are_capped_and_without_any_training_stays_supervised(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url, train_semi_supervised="mean_teacher"))
    tasks = list(pipeline.studio.iter_tasks(PROJECT))
    capped = Pipeline(job_settings(tmp_path, studio.url, train_unlabelled_limit=2))
    assert len(capped.unlabelled_images(tasks, [4, 5, 6, 7], parse_label_config(DENSE_XML))) == 2
    for task_id in (4, 5, 6, 7):
        studio.tasks[task_id]["data"]["image"] = "/data/upload/5/missing.png"
    assert pipeline.train(PROJECT, DENSE_XML).metrics["semi_supervised"] == "none"


def test_scoring_never_fetches_single_tasks(tmp_path, studio) -> None:
    """``GET /api/tasks/<id>/`` makes Label Studio call our /predict while we wait: use the list endpoint."""
    Pipeline(job_settings(tmp_path, studio.url)).score(PROJECT, DENSE_XML, [4, 5])
    assert not [path for path in studio.calls("GET", "/api/tasks/") if not path.startswith("/api/tasks/?")]


def test_publishing_a_version_without_predictions_still_creates_the_view(tmp_path, studio) -> None:
    """Label Studio refuses a project model_version that no prediction carries (e.g. every task labelled)."""
    summary = Pipeline(job_settings(tmp_path, studio.url)).publish(PROJECT, 3)
    assert summary["project_model_version_set"] is False and len(studio.views) == 1


def test_a_labelled_task_whose_image_cannot_be_read_is_reported_and_many_fail_the_round(tmp_path, studio) -> None:
    studio.tasks[2]["data"]["image"] = "/data/upload/5/missing.png"
    with pytest.raises(UnreadableLabels, match=r"1 of 3 labelled tasks cannot be read \(task ids \[2\]\)"):
        Pipeline(job_settings(tmp_path, studio.url)).train(PROJECT, DENSE_XML)
    pipeline = Pipeline(job_settings(tmp_path, studio.url, train_max_unreadable_share=0.5))
    assert pipeline.backend.models.versions(PROJECT) == [], "the refused round saved nothing"
    updates = []
    outcome = pipeline.train(PROJECT, DENSE_XML, updates.append)
    skipped = outcome.metrics["skipped_tasks"]
    assert skipped["unreadable_image"] == 1 and skipped["unreadable_image_task_ids"] == [2]
    assert skipped["labelled_tasks"] == 3
    assert {"skipped_tasks": skipped} in updates, "reported to /jobs while the round runs"
    checkpoint = pipeline.backend.models.load(PROJECT, outcome.version)
    assert checkpoint.metadata["labelled_tasks"] == [1, 3]
    assert checkpoint.metadata["skipped_tasks"] == skipped


def test_a_job_stopped_by_its_report_saves_no_version(tmp_path, studio) -> None:
    def report(update: dict) -> None:
        if update.get("stage") == "saving":
            raise RuntimeError("lock lost")

    pipeline = Pipeline(job_settings(tmp_path, studio.url))
    with pytest.raises(RuntimeError, match="lock lost"):
        pipeline.train(PROJECT, DENSE_XML, report)
    assert pipeline.backend.models.versions(PROJECT) == []


def test_an_interrupted_scoring_resumes_and_the_queue_lists_only_this_versions_scores(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url))
    outcome = pipeline.train(PROJECT, DENSE_XML)
    assert pipeline.score(PROJECT, DENSE_XML, [4, 5])["scored"] == 2
    image = studio.tasks[6]["data"]["image"]
    studio.tasks[6]["data"]["image"] = "/data/upload/5/missing.png"  # unreadable during the next run only
    first = pipeline.score(PROJECT, DENSE_XML, [4, 5, 6, 7])
    assert counts(first) == {"scored": 1, "failed": [6], "already_scored": 2}
    studio.tasks[6]["data"]["image"] = image
    assert counts(pipeline.score(PROJECT, DENSE_XML, [4, 5, 6, 7])) == {"scored": 1, "failed": [], "already_scored": 3}
    assert sorted(p["task"] for p in studio.predictions if p["model_version"] == "v1") == [4, 5, 6, 7]
    assert len(studio.predictions) == 4, "one prediction per task and version"
    pipeline.publish(PROJECT, outcome.version)
    (view,) = studio.views
    scored = {"filter": "filter:tasks:predictions_score", "operator": "empty", "type": "Number", "value": False}
    assert scored in view["data"]["filters"]["items"], "a Prediction score exists for the project's version only"


def test_each_task_keeps_the_predictions_of_the_newest_versions_only(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url, keep_prediction_versions=2))
    studio.predictions.append({"id": 999, "task": 4, "result": [], "score": 0.5, "model_version": "another-model"})
    for _ in range(3):
        run_round(pipeline, PROJECT, DENSE_XML, lambda update: None)
    for task_id in (4, 5, 6, 7):
        kept = sorted(p["model_version"] for p in studio.predictions if p["task"] == task_id)
        assert kept == (["another-model", "v2", "v3"] if task_id == 4 else ["v2", "v3"]), task_id


def test_a_batch_of_predictions_is_written_in_one_request(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url))
    pipeline.train(PROJECT, DENSE_XML)
    assert pipeline.score(PROJECT, DENSE_XML, [4, 5, 6, 7])["scored"] == 4
    assert studio.calls("POST", f"/api/projects/{PROJECT}/import/predictions") == [
        f"/api/projects/{PROJECT}/import/predictions"
    ], "the batch of 4 (INFERENCE_BATCH_SIZE 8) in one import"
    assert not studio.calls("POST", "/api/predictions/") and not studio.calls("GET", "/api/predictions/")
    assert sorted(p["task"] for p in studio.predictions) == [4, 5, 6, 7]


def test_a_chunk_is_written_in_one_import_whatever_its_inference_batches(tmp_path, studio) -> None:
    """Label Studio refreshes every task's counters on each import: one call per chunk, not per batch."""
    pipeline = Pipeline(job_settings(tmp_path, studio.url, inference_batch_size=1))
    pipeline.train(PROJECT, DENSE_XML)
    assert pipeline.score(PROJECT, DENSE_XML, [4, 5, 6, 7])["scored"] == 4
    assert len(studio.calls("POST", f"/api/projects/{PROJECT}/import/predictions")) == 1, "4 batches, 1 import"
    assert sorted(p["task"] for p in studio.predictions) == [4, 5, 6, 7]


def test_scoring_reports_its_progress_after_every_inference_batch(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url, inference_batch_size=2))
    pipeline.train(PROJECT, DENSE_XML)
    updates = []
    pipeline.score(PROJECT, DENSE_XML, [3, 4, 5, 6, 7], updates.append)
    progress = [(update["predicted"], update["of"]) for update in updates if "predicted" in update]
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert updates[-1] == {"stage": "scoring", "scored": 5, "of": 5}


def test_a_refused_bulk_import_falls_back_to_one_request_per_task(tmp_path, studio) -> None:
    pipeline = Pipeline(job_settings(tmp_path, studio.url))
    pipeline.train(PROJECT, DENSE_XML)
    studio.refuse_bulk_import = True
    assert counts(pipeline.score(PROJECT, DENSE_XML, [4, 5, 6, 7])) == {"scored": 4, "failed": [], "already_scored": 0}
    assert len(studio.calls("POST", "/api/predictions/")) == 4
    assert sorted(p["task"] for p in studio.predictions) == [4, 5, 6, 7]
