"""Redis + RQ: the runner used by the web process, and the job functions ``ls-al-backend worker`` executes.

Redis keys per project (``lsal:<project>:...``):

- ``pending``: id of the queued training job that new requests fold into;
- ``running``: a lock held by the training job that is reading labels or training. Its TTL is renewed
  by a heartbeat, so a worker killed with SIGKILL frees the project after ``TRAINING_LOCK_TTL_S``;
- ``enqueue``: a short lock that makes "fold or enqueue" atomic across web processes.

and one per queue, ``lsal:queue:<queue>:jobs``: the ids of its newest jobs, scored by the time they were enqueued,
which ``/jobs`` lists. RQ's own registries cannot be read as one listing: a job a worker has just popped off the
queue is, for a moment, in none of them.

Two queues (``TRAINING_QUEUE``, ``SCORING_QUEUE``), so that a GPU host can take training alone: training jobs go
to the training queue; after training, the job enqueues the pool scoring in chunks on the scoring queue (any
scoring worker takes them) and a publish job there that runs when every chunk has ended.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Dependency, Job, JobStatus
from rq.results import Result

from ls_al_backend import metrics
from ls_al_backend.config import Settings
from ls_al_backend.jobs.contract import MAX_JOBS_LISTED, JobRunner, scoring_chunks
from ls_al_backend.jobs.queue_metrics import QueueCollector

log = logging.getLogger(__name__)

WAITING_STATES = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
JOB_TIMEOUT_S = 6 * 3600
KEEP_RESULTS_S = 7 * 24 * 3600


def _key(project_id: str, name: str) -> str:
    return f"lsal:{project_id}:{name}"


def connect(settings: Settings) -> Redis:
    return Redis.from_url(settings.redis_url)


#: What a worker may be bound to (``ls-al-backend worker --queues training,scoring``), in the order it serves them.
QUEUE_ROLES = ("training", "scoring")


def queues_for(settings: Settings, connection: Redis, roles: tuple[str, ...] = QUEUE_ROLES) -> list[Queue]:
    """The RQ queues of ``roles`` (each ``"training"`` or ``"scoring"``), in that order."""
    names = {"training": settings.training_queue, "scoring": settings.scoring_queue}
    unknown = [role for role in roles if role not in names]
    if unknown:
        raise ValueError(f"unknown queue role(s) {', '.join(unknown)}: expected {' and/or '.join(QUEUE_ROLES)}")
    return [Queue(names[role], connection=connection) for role in roles]


def _index_key(queue: Queue) -> str:
    return f"lsal:queue:{queue.name}:jobs"


def enqueue(queue: Queue, function, *args: Any, **options: Any) -> Job:
    """``queue.enqueue`` that also records the job in the queue's job index (newest ``MAX_JOBS_LISTED`` kept)."""
    job = queue.enqueue(function, *args, **options)
    metrics.count_job(job.meta.get("kind", "unknown"), "enqueued")
    index = queue.connection.pipeline()
    index.zadd(_index_key(queue), {job.id: time.time()})
    index.zremrangebyrank(_index_key(queue), 0, -MAX_JOBS_LISTED - 1)
    index.execute()
    return job


class RedisRunner(JobRunner):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.connection = connect(settings)
        self.training_queue, self.scoring_queue = queues_for(settings, self.connection)

    def request_training(self, project_id: str, label_config_xml: str, reason: str) -> dict[str, Any]:
        with self.connection.lock(_key(project_id, "enqueue"), timeout=10, blocking_timeout=10):
            pending_id = self.connection.get(_key(project_id, "pending"))
            if pending_id is not None:
                try:
                    job = Job.fetch(pending_id.decode(), connection=self.connection)
                except NoSuchJobError:
                    job = None
                if job is not None and job.get_status(refresh=True) in WAITING_STATES:
                    job.meta["requests"] = job.meta.get("requests", 1) + 1
                    job.meta["label_config"] = label_config_xml
                    job.save_meta()
                    return {"job_id": job.id, "coalesced": True}
            job = enqueue(
                self.training_queue,
                train_job,
                project_id,
                job_timeout=JOB_TIMEOUT_S,
                result_ttl=KEEP_RESULTS_S,
                failure_ttl=KEEP_RESULTS_S,
                meta={
                    "kind": "train",
                    "project": project_id,
                    "reason": reason,
                    "requests": 1,
                    "label_config": label_config_xml,
                },
            )
            self.connection.set(_key(project_id, "pending"), job.id)
            return {"job_id": job.id, "coalesced": False}

    def jobs(self) -> list[dict[str, Any]]:
        """Both queues' newest jobs, merged newest first."""
        listed = []  # (enqueued at, job id, index key)
        for queue in (self.training_queue, self.scoring_queue):
            newest = self.connection.zrevrange(_index_key(queue), 0, MAX_JOBS_LISTED - 1, withscores=True)
            listed += [(enqueued_at, job_id.decode(), _index_key(queue)) for job_id, enqueued_at in newest]
        listed = sorted(listed, reverse=True)[:MAX_JOBS_LISTED]
        jobs = Job.fetch_many([job_id for _, job_id, _ in listed], connection=self.connection)
        for (_, job_id, index_key), job in zip(listed, jobs, strict=True):
            if job is None:  # its result's TTL ran out
                self.connection.zrem(index_key, job_id)
        return [describe(job) for job in jobs if job is not None]

    def metric_collectors(self) -> list[Collector]:
        return [QueueCollector(self.connection, [self.training_queue.name, self.scoring_queue.name])]


def describe(job: Job) -> dict[str, Any]:
    meta = {key: value for key, value in job.meta.items() if key not in ("kind", "project", "label_config")}
    return {
        "id": job.id,
        "kind": job.meta.get("kind"),
        "project": job.meta.get("project"),
        "status": JobStatus(job.get_status(refresh=False)).value,
        "worker": job.worker_name,
        "enqueued_at": job.enqueued_at.timestamp() if job.enqueued_at else None,
        "ended_at": job.ended_at.timestamp() if job.ended_at else None,
        "meta": meta,
        "error": _traceback(job),
    }


def _traceback(job: Job) -> str | None:
    result = job.latest_result()
    return result.exc_string if result is not None and result.type == Result.Type.FAILED else None


# --- job functions, executed by `ls-al-backend worker` ---

_pipelines: dict[Settings, Any] = {}


def _pipeline(settings: Settings):
    """One Pipeline per job process. RQ runs every job in a fresh fork of the worker, so in-memory caches last one
    job (downloaded images and superpixels are also cached on disk); ``rq_worker.run_worker`` imports the heavy modules
    before forking so that a job does not pay for importing torch."""
    from ls_al_backend.jobs.pipeline import Pipeline

    if settings not in _pipelines:
        _pipelines[settings] = Pipeline(settings)
    return _pipelines[settings]


def _reporter(job: Job):
    def report(update: dict[str, Any]) -> None:
        job.meta.update(update)
        job.save_meta()

    return report


class LockLost(RuntimeError):
    """The training's project lock could not be renewed: another worker may start the same training, so this one
    stops before it saves a version."""


class _Heartbeat:
    """Keeps a Redis lock alive while a job works; a killed worker stops renewing it.

    When a renewal fails (the lock expired and was taken, Redis unreachable) the heartbeat stops and records the
    error; :meth:`check`, called at every progress report of the job, then raises :class:`LockLost`.
    """

    def __init__(self, lock, interval_s: float):
        self.lock = lock
        self.interval_s = interval_s
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.lock.reacquire()
            except Exception as error:  # LockNotOwnedError, a Redis connection error, ...
                log.error("training lock %s could not be renewed: %r", self.lock.name, error)
                self.error = error
                return

    def check(self) -> None:
        if self.error is not None:
            raise LockLost(f"the training lock could not be renewed ({self.error!r}); stopped before saving")

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def train_job(project_id: str) -> dict[str, Any]:
    """Train a project, then fan the pool scoring out to chunk jobs and a publish job."""
    settings = Settings.from_env()
    job = get_current_job()
    connection = job.connection
    report = _reporter(job)
    report({"stage": "waiting for the running training of this project"})
    # thread_local=False: the heartbeat thread renews it (a thread-local token is invisible to that thread)
    running = connection.lock(_key(project_id, "running"), timeout=settings.training_lock_ttl_s, thread_local=False)
    running.acquire(blocking=True)
    try:
        with _Heartbeat(running, max(1.0, settings.training_lock_ttl_s / 3)) as heartbeat:

            def report_while_locked(update: dict[str, Any]) -> None:
                heartbeat.check()
                report(update)

            with connection.lock(_key(project_id, "enqueue"), timeout=10, blocking_timeout=10):
                if connection.get(_key(project_id, "pending")) == job.id.encode():
                    connection.delete(_key(project_id, "pending"))
                job.refresh()
            label_config_xml = job.meta["label_config"]
            pipeline = _pipeline(settings)
            outcome = pipeline.train(project_id, label_config_xml, report_while_locked)
            (queue,) = queues_for(settings, connection, ("scoring",))
            chunk_jobs = enqueue_scoring(
                queue, project_id, label_config_xml, outcome.unlabelled_task_ids, settings.score_chunk_size
            )
            publish = enqueue(
                queue,
                publish_job,
                project_id,
                outcome.version,
                depends_on=Dependency(jobs=chunk_jobs, allow_failure=True) if chunk_jobs else None,
                result_ttl=KEEP_RESULTS_S,
                failure_ttl=KEEP_RESULTS_S,
                meta={"kind": "publish", "project": project_id},
            )
    finally:
        try:
            running.release()
        except Exception:  # the lock expired (e.g. a very long pause); nothing else to undo
            log.warning("project %s: running lock had already expired", project_id)
    return {
        "version": outcome.version,
        "metrics": outcome.metrics,
        "score_jobs": [chunk.id for chunk in chunk_jobs],
        "publish_job": publish.id,
    }


def enqueue_scoring(
    queue: Queue, project_id: str, label_config_xml: str, task_ids: list[int], chunk_size: int
) -> list[Job]:
    """One :func:`score_job` per chunk of :func:`scoring_chunks` (``chunk_size`` 0: sized to the pool) on ``queue``
    (the scoring queue); any worker bound to it takes them."""
    return [
        enqueue(
            queue,
            score_job,
            project_id,
            label_config_xml,
            chunk,
            job_timeout=JOB_TIMEOUT_S,
            result_ttl=KEEP_RESULTS_S,
            failure_ttl=KEEP_RESULTS_S,
            meta={"kind": "score", "project": project_id, "tasks": len(chunk)},
        )
        for chunk in scoring_chunks(task_ids, chunk_size)
    ]


def score_job(project_id: str, label_config_xml: str, task_ids: list[int]) -> dict[str, Any]:
    settings = Settings.from_env()
    return _pipeline(settings).score(project_id, label_config_xml, task_ids, _reporter(get_current_job()))


def publish_job(project_id: str, version: int) -> dict[str, Any]:
    settings = Settings.from_env()
    return _pipeline(settings).publish(project_id, version)
