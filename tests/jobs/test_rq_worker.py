"""``ls-al-backend worker --metrics-port``: a real worker serves Prometheus metrics that count what its forked job
processes did, and folds their files away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from ls_al_backend.backend import Backend
from ls_al_backend.server import create_app
from tests.e2e.harness import free_port
from tests.jobs.test_rq_jobs import event, redis_settings, worker_env  # noqa: F401  (redis_settings: a fixture)


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def jobs_total(samples: dict, kind: str, state: str) -> float:
    return samples.get(("ls_al_jobs_total", frozenset({"kind": kind, "state": state}.items())), 0.0)


def test_a_worker_serves_metrics_that_count_its_jobs_and_what_they_did(redis_settings, studio, tmp_path) -> None:  # noqa: F811
    port = free_port()
    temporary = tmp_path / "tmp"  # the worker's private metrics folder is made in here, where the test can see it
    temporary.mkdir()
    log_path = tmp_path / "worker.log"
    command = [str(Path(sys.executable).parent / "ls-al-backend"), "worker", "--metrics-port", str(port)]
    with log_path.open("a") as log:
        worker = subprocess.Popen(
            command,
            env={**worker_env(redis_settings), "TMPDIR": str(temporary)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                before = scrape(port)
                break
            except requests.ConnectionError:
                assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.5)
        training = ("ls_al_queue_length", frozenset({"queue": redis_settings.training_queue}.items()))
        assert before[training] == 0 and jobs_total(before, "train", "started") == 0

        client = create_app(Backend(redis_settings)).test_client()
        assert client.post("/webhook", json=event("START_TRAINING")).status_code == 201
        deadline = time.monotonic() + 300
        while True:
            jobs = client.get("/jobs").get_json()["jobs"]
            if len(jobs) == 4 and all(job["status"] == "finished" for job in jobs):
                break
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            assert not any(job["status"] == "failed" for job in jobs), jobs
            time.sleep(0.5)

        while jobs_total(after := scrape(port), "publish", "finished") < 1:  # counted once its process has ended
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        counts = {
            (kind, state): jobs_total(after, kind, state)
            for kind in ("train", "score", "publish")
            for state in ("enqueued", "started", "finished", "failed")
        }
        assert counts == {
            ("train", "enqueued"): 0,  # the web process enqueued it
            ("train", "started"): 1,
            ("train", "finished"): 1,
            ("train", "failed"): 0,
            ("score", "enqueued"): 2,  # by the training job's process: 4 tasks in chunks of 3
            ("score", "started"): 2,
            ("score", "finished"): 2,
            ("score", "failed"): 0,
            ("publish", "enqueued"): 1,
            ("publish", "started"): 1,
            ("publish", "finished"): 1,
            ("publish", "failed"): 0,
        }
        assert after[("ls_al_scored_images_total", frozenset())] == 4
        assert after[("ls_al_scoring_seconds_total", frozenset())] > 0
        assert after[("ls_al_training_round_duration_seconds_count", frozenset())] == 1
        assert after[training] == 0 and after[("ls_al_redis_up", frozenset())] == 1

        (folder,) = temporary.glob("ls-al-worker-metrics-*")
        left = [path.name for path in folder.iterdir() if not path.name.endswith((f"_{worker.pid}.db", "_archive.db"))]
        assert not left, f"the job processes' files were folded away, not {left}"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)  # a warm shutdown: MeteredWorker.COMMAND_WAIT_S, not RQ's 60 s
    assert not temporary.joinpath(folder.name).exists(), "the worker removes its metrics folder when it stops"
