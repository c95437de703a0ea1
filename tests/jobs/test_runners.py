"""The embedded runner: one job at a time, one pending per project, bursts fold into the pending job."""

from __future__ import annotations

import threading
import time

from ls_al_backend.config import Settings
from ls_al_backend.jobs.pipeline import TrainingOutcome
from ls_al_backend.jobs.runners import EmbeddedRunner


class BlockingPipeline:
    """Stand-in for the real pipeline (unit test): training waits until released."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.release = threading.Event()
        self.trainings: list[str] = []

    def train(self, project_id, label_config_xml, report):
        self.trainings.append(label_config_xml)
        report({"stage": "training", "epoch": 1})
        assert self.release.wait(10)
        if label_config_xml == "boom":
            raise RuntimeError("training exploded")
        return TrainingOutcome(version=len(self.trainings), unlabelled_task_ids=[], metrics={})

    def score(self, project_id, label_config_xml, task_ids, report):
        return {"scored": len(task_ids), "failed": []}

    def publish(self, project_id, version):
        return {"model_version": f"v{version}"}


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_burst_folds_into_one_pending_job_that_sees_the_newest_config(tmp_path) -> None:
    pipelines = []
    runner = EmbeddedRunner(
        Settings.from_env({}, data_dir=tmp_path), lambda s: pipelines.append(BlockingPipeline(s)) or pipelines[-1]
    )
    first = runner.request_training("1", "config-0", "START_TRAINING")
    wait_for(lambda: runner.jobs()[-1]["status"] == "started")
    answers = [runner.request_training("1", f"config-{i}", "ANNOTATION_CREATED") for i in range(1, 21)]

    assert not first["coalesced"]
    assert not answers[0]["coalesced"] and all(answer["coalesced"] for answer in answers[1:])
    assert len({answer["job_id"] for answer in answers}) == 1
    jobs = runner.jobs()
    assert [job["status"] for job in jobs] == ["queued", "started"]
    assert jobs[0]["meta"]["requests"] == 20

    pipelines[0].release.set()
    wait_for(lambda: all(job["status"] == "finished" for job in runner.jobs()))
    assert pipelines[0].trainings == ["config-0", "config-20"]
    assert runner.jobs()[0]["result"]["model_version"] == "v2"


def test_a_failed_job_keeps_its_traceback_and_the_next_one_runs(tmp_path) -> None:
    pipeline = BlockingPipeline(Settings.from_env({}, data_dir=tmp_path))
    pipeline.release.set()
    runner = EmbeddedRunner(pipeline.settings, lambda s: pipeline)
    runner.request_training("1", "boom", "START_TRAINING")
    wait_for(lambda: runner.jobs()[0]["status"] == "failed")
    assert "training exploded" in runner.jobs()[0]["error"]
    runner.request_training("1", "fine", "START_TRAINING")
    wait_for(lambda: runner.jobs()[0]["status"] == "finished")
