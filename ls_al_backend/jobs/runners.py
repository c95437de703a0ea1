"""Where jobs run: an embedded background thread (default) or Redis + RQ workers (``REDIS_URL`` set).

Both keep the same promise per project: at most one training running and one pending. A burst of
training requests folds into the pending job, and a job stops being "pending" only when it starts
reading annotations, so the next training always sees every annotation saved before it started.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any

from ls_al_backend import metrics
from ls_al_backend.config import Settings
from ls_al_backend.jobs.contract import MAX_JOBS_LISTED, JobRunner, scoring_chunks

log = logging.getLogger(__name__)


def run_round(pipeline, project_id: str, label_config_xml: str, report) -> dict[str, Any]:
    """Train, score the whole pool and publish, in this thread (the embedded runner's job)."""
    outcome = pipeline.train(project_id, label_config_xml, report)
    failed: list[int] = []
    scored = 0
    for chunk in scoring_chunks(outcome.unlabelled_task_ids, pipeline.settings.score_chunk_size):
        summary = pipeline.score(project_id, label_config_xml, chunk, report)
        scored += summary["scored"] + summary.get("already_scored", 0)
        failed += summary["failed"]
    published = pipeline.publish(project_id, outcome.version)
    return {**published, "scored": scored, "failed": failed, "metrics": outcome.metrics}


class EmbeddedRunner(JobRunner):
    """One background thread in the server process; jobs run one after another."""

    def __init__(self, settings: Settings, pipeline_factory=None):
        self.settings = settings
        self._pipeline_factory = pipeline_factory
        self._pipeline = None
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None  # started by the first request

    def request_training(self, project_id: str, label_config_xml: str, reason: str) -> dict[str, Any]:
        with self._lock:
            pending = self._pending.get(project_id)
            if pending is not None:
                pending["meta"]["requests"] += 1
                pending["label_config"] = label_config_xml
                return {"job_id": pending["id"], "coalesced": True}
            job = {
                "id": f"embedded-{next(self._ids)}",
                "kind": "train",
                "project": project_id,
                "status": "queued",
                "enqueued_at": time.time(),
                "meta": {"reason": reason, "requests": 1},
                "label_config": label_config_xml,
                "error": None,
            }
            self._pending[project_id] = job
            self._jobs[job["id"]] = job
            while len(self._jobs) > MAX_JOBS_LISTED:
                self._jobs.popitem(last=False)
        metrics.count_job("train", "enqueued")
        self._queue.put(job)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="ls-al-jobs", daemon=True)
                self._thread.start()
        return {"job_id": job["id"], "coalesced": False}

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {key: value for key, value in job.items() if key != "label_config"}
                for job in reversed(self._jobs.values())
            ]

    def pipeline(self):
        if self._pipeline is None:
            from ls_al_backend.jobs.pipeline import Pipeline

            self._pipeline = (self._pipeline_factory or Pipeline)(self.settings)
        return self._pipeline

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            with self._lock:
                if self._pending.get(job["project"]) is job:
                    del self._pending[job["project"]]
                job["status"] = "started"
                job["started_at"] = time.time()
            metrics.count_job("train", "started")

            def report(update: dict[str, Any], job=job) -> None:
                job["meta"].update(update)

            try:
                outcome = {"result": run_round(self.pipeline(), job["project"], job["label_config"], report)}
                status = "finished"
            except Exception:
                log.exception("training job %s of project %s failed", job["id"], job["project"])
                outcome = {"error": traceback.format_exc()}
                status = "failed"
            # /jobs reads a job from another thread: it must never see an ended status without its result or error.
            with self._lock:
                job.update(outcome, ended_at=time.time(), status=status)
            metrics.count_job("train", status)


def make_runner(backend) -> JobRunner:
    """The runner for a web process serving ``backend`` (a :class:`~ls_al_backend.backend.Backend`): Redis + RQ
    workers when ``REDIS_URL`` is set, else the embedded thread, whose jobs share the backend's model cache."""
    if backend.settings.redis_url:
        from ls_al_backend.jobs.rq_jobs import RedisRunner

        return RedisRunner(backend.settings)
    from ls_al_backend.jobs.pipeline import Pipeline

    return EmbeddedRunner(backend.settings, lambda settings: Pipeline(settings, backend=backend))
