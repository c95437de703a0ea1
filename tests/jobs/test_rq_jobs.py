"""Redis + RQ with real worker processes: coalescing webhooks, fan-out scoring, a worker killed mid-training."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from ls_al_backend.backend import Backend
from ls_al_backend.jobs.rq_jobs import LockLost, RedisRunner, _Heartbeat, enqueue, publish_job
from ls_al_backend.model.store import ModelStore
from ls_al_backend.server import create_app
from tests.jobs.conftest import DENSE_XML, PROJECT, job_settings

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def redis_settings(tmp_path, studio):
    connection = Redis.from_url(REDIS_URL)
    connection.ping()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = job_settings(
        tmp_path,
        studio.url,
        redis_url=REDIS_URL,
        training_queue=f"{prefix}-training",
        scoring_queue=f"{prefix}-scoring",
        training_lock_ttl_s=3,
    )
    yield settings
    for key in connection.scan_iter(f"lsal:{PROJECT}:*"):
        connection.delete(key)
    for name in (settings.training_queue, settings.scoring_queue):
        Queue(name, connection=connection).empty()
        connection.delete(f"lsal:queue:{name}:jobs")


def worker_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "TRAINING_QUEUE": settings.training_queue,
        "SCORING_QUEUE": settings.scoring_queue,
        "DATA_DIR": str(settings.data_dir),
        "LABEL_STUDIO_URL": settings.label_studio_url,
        "LABEL_STUDIO_API_KEY": settings.label_studio_api_key,
        "TRAIN_EPOCHS": str(settings.train_epochs),
        "TRAIN_MIN_STEPS": str(settings.train_min_steps),
        "TRAIN_CROP_SIZE": str(settings.train_crop_size),
        "TRAIN_BATCH_SIZE": str(settings.train_batch_size),
        "MC_SAMPLES": str(settings.mc_samples),
        "SCORE_CHUNK_SIZE": str(settings.score_chunk_size),
        "TRAINING_LOCK_TTL_S": str(settings.training_lock_ttl_s),
    }


def start_worker(settings, burst: bool, log_path: Path, options: tuple[str, ...] = ()) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "ls-al-backend"), "worker", *options] + (["--burst"] if burst else [])
    with log_path.open("a") as log:
        return subprocess.Popen(
            command, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def event(action: str) -> dict:
    return {"action": action, "project": {"id": int(PROJECT), "label_config": DENSE_XML}}


def test_a_webhook_storm_becomes_one_job_and_two_workers_finish_the_round(redis_settings, studio, tmp_path) -> None:
    client = create_app(Backend(redis_settings)).test_client()
    started = time.monotonic()
    answers = [client.post("/webhook", json=event("ANNOTATION_CREATED")) for _ in range(30)]
    answers.append(client.post("/webhook", json=event("START_TRAINING")))
    elapsed = time.monotonic() - started
    assert all(answer.status_code == 201 for answer in answers)
    assert len({answer.get_json()["job_id"] for answer in answers}) == 1, "the storm folds into one pending job"
    assert elapsed < 31, "webhooks only enqueue"
    (job,) = client.get("/jobs").get_json()["jobs"]
    assert job["status"] == "queued" and job["meta"]["requests"] == 31

    log_path = tmp_path / "workers.log"
    workers = [start_worker(redis_settings, burst=True, log_path=log_path) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, log_path.read_text()[-3000:]

    store = ModelStore(redis_settings.models_dir)
    assert store.versions(PROJECT) == [1]
    assert store.load(PROJECT, 1).metadata["labelled_tasks"] == [1, 2, 3]
    assert sorted(p["task"] for p in studio.predictions if p["model_version"] == "v1") == [4, 5, 6, 7]
    assert studio.projects[PROJECT]["model_version"] == "v1" and len(studio.views) == 1
    jobs = client.get("/jobs").get_json()["jobs"]
    assert sorted(job["kind"] for job in jobs) == ["publish", "score", "score", "train"]
    assert all(job["status"] == "finished" for job in jobs)
    assert client.get("/versions").get_json() == {"versions": ["v0", "v1"]}


def test_a_scoring_worker_never_takes_training_and_a_training_worker_hands_the_scoring_on(
    redis_settings, studio, tmp_path
) -> None:
    client = create_app(Backend(redis_settings)).test_client()
    assert client.post("/webhook", json=event("START_TRAINING")).status_code == 201
    log_path = tmp_path / "workers.log"
    scoring = start_worker(redis_settings, burst=True, log_path=log_path, options=("--queues", "scoring"))
    assert scoring.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    (job,) = client.get("/jobs").get_json()["jobs"]
    assert (job["kind"], job["status"]) == ("train", "queued"), "the scoring worker left the training alone"
    assert Queue(redis_settings.training_queue, connection=Redis.from_url(REDIS_URL)).count == 1

    training = start_worker(redis_settings, burst=True, log_path=log_path, options=("--queues", "training"))
    assert training.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    store = ModelStore(redis_settings.models_dir)
    assert store.versions(PROJECT) == [1]
    jobs = {job["kind"]: job for job in client.get("/jobs").get_json()["jobs"]}
    assert jobs["train"]["status"] == "finished"
    assert (jobs["score"]["status"], jobs["publish"]["status"]) == ("queued", "deferred"), "left for scoring workers"
    assert Queue(redis_settings.scoring_queue, connection=Redis.from_url(REDIS_URL)).count == 2  # chunks of 3 + 1
    assert not studio.predictions

    scoring = start_worker(redis_settings, burst=True, log_path=log_path, options=("--queues", "scoring"))
    assert scoring.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    assert sorted(p["task"] for p in studio.predictions if p["model_version"] == "v1") == [4, 5, 6, 7]
    assert studio.projects[PROJECT]["model_version"] == "v1"
    jobs = client.get("/jobs").get_json()["jobs"]
    assert sorted(job["kind"] for job in jobs) == ["publish", "score", "score", "train"]
    assert all(job["status"] == "finished" for job in jobs)


def test_jobs_lists_a_job_that_a_worker_has_popped_off_the_queue_before_it_enters_a_registry(redis_settings) -> None:
    runner = RedisRunner(redis_settings)
    job_id = runner.request_training(PROJECT, DENSE_XML, "test")["job_id"]
    runner.training_queue.remove(
        job_id
    )  # what RQ's dequeue does, a moment before it adds the job to its started registry
    assert [job["id"] for job in runner.jobs()] == [job_id]


def test_jobs_lists_both_queues_newest_first_and_forgets_the_expired_ones(redis_settings) -> None:
    runner = RedisRunner(redis_settings)
    queues = [runner.training_queue, runner.scoring_queue, runner.training_queue, runner.scoring_queue]
    ids = [enqueue(queue, publish_job, f"project-{n}", 1).id for n, queue in enumerate(queues)]
    assert [job["id"] for job in runner.jobs()] == ids[::-1]
    Job.fetch(ids[1], connection=runner.connection).delete()  # as when its result's TTL runs out
    assert [job["id"] for job in runner.jobs()] == [ids[3], ids[2], ids[0]]
    assert runner.connection.zcard(f"lsal:queue:{runner.scoring_queue.name}:jobs") == 1
    assert runner.connection.zcard(f"lsal:queue:{runner.training_queue.name}:jobs") == 2


def test_a_worker_killed_mid_training_leaves_the_served_version_and_the_next_trigger_succeeds(
    redis_settings, studio, tmp_path
) -> None:
    slow = job_settings(
        redis_settings.data_dir,
        studio.url,
        redis_url=REDIS_URL,
        training_queue=redis_settings.training_queue,
        scoring_queue=redis_settings.scoring_queue,
        training_lock_ttl_s=3,
        train_epochs=500,
    )
    backend = Backend(slow)
    client = create_app(backend).test_client()
    assert client.post("/webhook", json=event("START_TRAINING")).status_code == 201
    log_path = tmp_path / "worker.log"
    worker = start_worker(slow, burst=False, log_path=log_path)
    try:
        deadline = time.monotonic() + 120
        while client.get("/jobs").get_json()["jobs"][0]["meta"].get("stage") != "training":
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
    finally:  # the machine dies: the worker and the job process it forked (RQ puts it in its own session)
        job_processes = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
        os.killpg(worker.pid, signal.SIGKILL)
        for pid in job_processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        worker.wait()

    store = ModelStore(slow.models_dir)
    assert store.versions(PROJECT) == []
    assert not list(Path(slow.models_dir).rglob("*.tmp")), "no partial checkpoint"
    assert client.get("/versions").get_json() == {"versions": ["v0"]}

    assert client.post("/webhook", json=event("START_TRAINING")).status_code == 201
    retry = start_worker(redis_settings, burst=True, log_path=log_path)
    assert retry.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    assert store.versions(PROJECT) == [1]


def test_the_heartbeat_renews_the_training_lock_and_a_lost_lock_stops_the_job() -> None:
    connection = Redis.from_url(REDIS_URL)
    name = f"lsal:test-{uuid.uuid4().hex[:8]}:running"
    lock = connection.lock(name, timeout=2, thread_local=False)
    assert lock.acquire(blocking=False)
    try:
        with _Heartbeat(lock, interval_s=0.3) as heartbeat:
            time.sleep(2.5)
            assert connection.exists(name), "renewed past its 2 s TTL"
            heartbeat.check()
            connection.delete(name)  # expired and gone, as far as this worker can tell
            time.sleep(1.0)
            assert heartbeat.error is not None
            with pytest.raises(LockLost, match="could not be renewed"):
                heartbeat.check()
    finally:
        connection.delete(name)
