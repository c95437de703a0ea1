"""Measurements through the product's processes: ``/predict`` over HTTP and pool scoring by RQ workers.

Both start the real commands (``ls-al-backend serve``, ``ls-al-backend worker``) as child processes, with the
benchmark's settings passed as environment variables, exactly as a deployment passes them. Nothing here imports
torch, so the process that runs these measurements stays small; the peak memory reported is the largest of the
server or worker processes (their ``ru_maxrss`` once they have exited).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job, JobStatus

from ls_al_backend.bench.task_server import TaskServer
from ls_al_backend.config import Settings
from ls_al_backend.jobs.contract import scoring_chunk_size
from ls_al_backend.jobs.rq_jobs import enqueue_scoring

#: How long a server or worker may take to start (importing torch on a busy machine takes a while).
START_TIMEOUT_S = 300.0
PROJECT = "1"


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process (``Settings.from_env``)."""
    environment = {}
    for spec in dataclasses.fields(settings):
        value = getattr(settings, spec.name)
        environment[spec.name.upper()] = ",".join(value) if isinstance(value, tuple) else str(value)
    return environment


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _tail(path: Path, characters: int = 3000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(*words: str) -> list[str]:
    """``ls-al-backend <words>`` run by this interpreter (the console script is ``ls_al_backend.cli:main``)."""
    return [sys.executable, "-m", "ls_al_backend.cli", *words]


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group (a worker's work horse included), SIGKILL after 60 s; always wait for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def running_servers(settings: Sequence[Settings], log_dir: Path) -> Iterator[list[str]]:
    """One ``ls-al-backend serve`` per item of ``settings``, on free local ports, all started at once (their
    start-up is mostly importing torch); yields their URLs once every ``/health`` answers."""
    servers, urls = [], []
    try:
        for index, server_settings in enumerate(settings):
            port = _free_port()
            environment = {**os.environ, **settings_environment(server_settings), "LOG_LEVEL": "WARNING"}
            with _server_log(log_dir, index).open("ab") as log:
                server = subprocess.Popen(
                    _command("serve", "--host", "127.0.0.1", "--port", str(port)),
                    env=environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            servers.append(server)
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + START_TIMEOUT_S
        for index, (server, url) in enumerate(zip(servers, urls, strict=True)):
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    log_text = _tail(_server_log(log_dir, index))
                    raise RuntimeError(f"ls-al-backend serve did not start (exit code {server.poll()}):\n{log_text}")
                with contextlib.suppress(requests.ConnectionError):
                    if requests.get(f"{url}/health", timeout=5).ok:
                        break
                time.sleep(0.2)
        yield urls
    finally:
        for server in servers:
            _stop(server)


def _server_log(log_dir: Path, index: int) -> Path:
    return log_dir / f"server-{index}.log"


def _predict_one(url: str, image: Path, log_path: Path) -> tuple[float, requests.Response]:
    """Seconds of one ``POST /predict`` with one task naming ``image``, and the answer (which must hold regions)."""
    body = {"project": PROJECT, "tasks": [{"id": 1, "data": {"image": str(image)}}]}
    started = time.perf_counter()
    response = requests.post(f"{url}/predict", json=body, timeout=600)
    elapsed = time.perf_counter() - started
    results = response.json().get("results") if response.ok else None
    if not results or not results[0]["result"]:
        raise RuntimeError(
            f"/predict of {image} answered HTTP {response.status_code} {response.text[:300]}\n{_tail(log_path)}"
        )
    return elapsed, response


def measure_predict_latency(
    settings: Settings, label_configs: dict[str, str], images: Sequence[Path], warmup: Path
) -> dict[str, Any]:
    """``/predict`` latency per image over HTTP, for each label config (query mode).

    Each config gets its own server with its own ``DATA_DIR``, so no superpixel is cached from another mode. The
    servers start together, then one mode at a time is measured (the other servers idle): a warm-up request
    (``warmup``: loads the model), then one request per image of ``images``, one task each.
    """
    modes = {}
    with tempfile.TemporaryDirectory(prefix="ls-al-bench-") as work_dir:
        data_dirs = [Path(work_dir) / name for name in label_configs]
        server_settings = [dataclasses.replace(settings, data_dir=data_dir, model_dir="") for data_dir in data_dirs]
        with running_servers(server_settings, Path(work_dir)) as urls:
            for index, (name, label_config) in enumerate(label_configs.items()):
                url, log_path = urls[index], _server_log(Path(work_dir), index)
                setup = requests.post(f"{url}/setup", json={"project": PROJECT, "schema": label_config}, timeout=60)
                setup.raise_for_status()
                _predict_one(url, warmup, log_path)
                latencies, sizes = [], []
                for image in images:
                    seconds, response = _predict_one(url, image, log_path)
                    latencies.append(seconds)
                    sizes.append(len(response.content))
                modes[name] = {
                    "images": len(latencies),
                    "p50_s": round(percentile(latencies, 50), 4),
                    "p95_s": round(percentile(latencies, 95), 4),
                    "mean_s": round(sum(latencies) / len(latencies), 4),
                    "max_s": round(max(latencies), 4),
                    "response_kib_p50": round(percentile(sizes, 50) / 1024, 1),
                    "latencies_s": [round(seconds, 4) for seconds in latencies],
                }
    return {
        "what": "POST /predict with one task (one image) per request to `ls-al-backend serve`, one server per mode",
        "modes": modes,
    }


@contextlib.contextmanager
def running_workers(
    settings: Settings, count: int, log_path: Path, extra_environment: dict[str, str] | None = None
) -> Iterator[Queue]:
    """``count`` ``ls-al-backend worker`` processes on both queues (their environment: ``settings``, then
    ``extra_environment``); yields the scoring queue once all listen."""
    connection = Redis.from_url(settings.redis_url)
    queue = Queue(settings.scoring_queue, connection=connection)
    environment = {**os.environ, **settings_environment(settings), "LOG_LEVEL": "WARNING", **(extra_environment or {})}
    workers = []
    try:
        with log_path.open("ab") as log:
            for _ in range(count):
                worker = subprocess.Popen(
                    _command("worker"), env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
                workers.append(worker)
        deadline = time.monotonic() + START_TIMEOUT_S
        while Worker.count(connection=connection, queue=queue) < count:
            if any(worker.poll() is not None for worker in workers) or time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not start:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield queue
    finally:
        for worker in workers:
            _stop(worker)


def _wait_for(jobs: list[Job], log_path: Path) -> list[dict[str, Any]]:
    """Block until every job has ended; their results (``{"scored", "failed"}``). Raises if one failed."""
    pending = list(jobs)
    while pending:
        time.sleep(0.05)
        for job in list(pending):
            status = job.get_status(refresh=True)
            if status == JobStatus.FINISHED:
                pending.remove(job)
            elif status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                result = job.latest_result()
                error = result.exc_string if result is not None else status
                raise RuntimeError(f"scoring job {job.id} {status}: {error}\n{_tail(log_path)}")
    return [job.return_value() for job in jobs]


def measure_pool_scoring(
    settings: Settings,
    label_config: str,
    label_config_name: str,
    images: Sequence[Path],
    worker_counts: Sequence[int],
    redis_url: str,
) -> dict[str, Any]:
    """Images scored per second by ``score_job`` chunks on real RQ workers, for each number of workers.

    Each run: a fresh queue and ``DATA_DIR`` (shared by its workers, as deployments share ``MODEL_DIR``) and a
    fresh Label Studio stand-in serving one task per image; all workers are listening before the chunks are
    enqueued (``enqueue_scoring``, as after a training round) and the clock runs until the last chunk has ended.
    Returns ``{"skipped": reason}`` when Redis does not answer.
    """
    try:
        Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except (RedisError, ValueError) as error:
        return {"skipped": f"Redis at {redis_url} did not answer: {error}", "redis_url": redis_url}
    task_ids = list(range(1, len(images) + 1))
    runs = []
    for count in worker_counts:
        tasks = [
            {"id": task_id, "project": int(PROJECT), "data": {"image": str(image)}, "annotations": []}
            for task_id, image in zip(task_ids, images, strict=True)
        ]
        with tempfile.TemporaryDirectory(prefix="ls-al-bench-") as data_dir, TaskServer(tasks) as studio:
            run_settings = dataclasses.replace(
                settings,
                data_dir=Path(data_dir),
                model_dir="",
                redis_url=redis_url,
                training_queue=f"ls-al-bench-{uuid.uuid4().hex[:8]}-training",
                scoring_queue=f"ls-al-bench-{uuid.uuid4().hex[:8]}-scoring",
                label_studio_url=studio.url,
                label_studio_api_key="benchmark",
            )
            log_path = Path(data_dir) / "workers.log"
            with running_workers(run_settings, count, log_path) as queue:
                started = time.monotonic()
                jobs = enqueue_scoring(queue, PROJECT, label_config, task_ids, settings.score_chunk_size)
                results = _wait_for(jobs, log_path)
                seconds = time.monotonic() - started
                for job in jobs:
                    job.delete()
                queue.delete()
            scored = sum(result["scored"] for result in results)
            failed = [task_id for result in results for task_id in result["failed"]]
            if failed or len(studio.scores()) != len(task_ids):
                raise RuntimeError(f"{len(failed)} task(s) failed to score:\n{_tail(log_path)}")
        runs.append(
            {
                "workers": count,
                "images": scored,
                "chunks": len(jobs),
                "seconds": round(seconds, 3),
                "images_per_s": round(scored / seconds, 3),
            }
        )
    return {
        "what": "score_job chunks (Pipeline.score: predict + store the predictions with their scores) on "
        "`ls-al-backend worker` processes over Redis + RQ; each chunk runs in a fresh work horse that imports "
        "torch and loads the model",
        "redis_url": redis_url,
        "label_config": label_config_name,
        "chunk_size": scoring_chunk_size(len(task_ids), settings.score_chunk_size),
        "runs": runs,
    }
