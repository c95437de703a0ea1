"""Two machines in all but hardware: the web process, a training worker and a scoring worker run as separate
processes with separate DATA_DIRs and no shared folder; they meet only in Redis, in the object store (a real
SeaweedFS as MODEL_DIR=s3://...) and in Label Studio (the fake one of tests/jobs, served from this process).

Faults: SeaweedFS stopped in the middle of a save (after the checkpoint upload, before the manifest) fails the round
loudly and publishes nothing; a checkpoint object overwritten in the bucket is refused by its checksum and the
previous version is served.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, Worker

from tests.e2e.harness import free_port
from tests.fake_studio import LEGACY_TOKEN, FakeStudio
from tests.jobs.conftest import DENSE_XML, make_project
from tests.seaweedfs import SeaweedFS, log_tail, seaweedfs_fixture  # noqa: F401  (the `seaweedfs` fixture)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
EXECUTABLE = str(Path(sys.executable).parent / "ls-al-backend")
MODELS = "models"  # the prefix of MODEL_DIR in the bucket
ROUND_TIMEOUT_S = 300
#: A project id of this test alone: Redis keys are per project (``lsal:<project>:...``), and other job tests may
#: run at the same time against the same Redis.
PROJECT = str(700_000 + uuid.uuid4().int % 100_000)


class S3Relay:
    """An HTTP relay in front of the S3 gateway that calls ``before(method, path)`` ahead of each request it
    forwards: the hook can stop SeaweedFS at an exact step of a save (SigV4 signatures survive: the Host header is
    passed on as the client signed it). A request the upstream does not answer gets its connection closed."""

    def __init__(self, upstream_port: int):
        self.before: Callable[[str, str], None] = lambda method, path: None
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else None
                relay.before(self.command, self.path)
                try:
                    upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                    upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                    answer = upstream.getresponse()
                    data = answer.read()
                except OSError:
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Host:
    """One process of the deployment (``ls-al-backend serve`` or ``worker``) in its own DATA_DIR, logging to
    ``<DATA_DIR>.log``."""

    def __init__(self, name: str, root: Path, arguments: list[str], environment: dict[str, str]):
        self.name = name
        self.data_dir = root / name
        self.log_path = root / f"{name}.log"
        self.data_dir.mkdir()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [EXECUTABLE, *arguments],
                env={**environment, "DATA_DIR": str(self.data_dir)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return f"--- {self.name} ({self.log_path}):\n{log_tail(self.log_path, 60)}"

    def signal(self, number: int) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, number)

    def stop(self) -> None:
        """Ask it to stop (gunicorn's quick shutdown, an RQ worker's warm one), kill it after 15 s."""
        self.signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=15)


class Deployment:
    """The web process, the training worker and the scoring worker, and their HTTP calls."""

    def __init__(self, root: Path, store: SeaweedFS, relay: S3Relay, studio, prefix: str):
        self.root = root
        self.store = store
        self.relay = relay
        self.images = {task_id: task["data"]["image"] for task_id, task in studio.tasks.items()}
        self.training_queue, self.scoring_queue = f"{prefix}-training", f"{prefix}-scoring"
        self.hosts: list[Host] = []
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODEL_", "DATA_DIR"))}
        self.environment = {
            **inherited,
            **store.env(),
            "MODEL_DIR": store.url(MODELS),
            "MODEL_LIST_TTL_S": "1",
            "REDIS_URL": REDIS_URL,
            "TRAINING_QUEUE": self.training_queue,
            "SCORING_QUEUE": self.scoring_queue,
            "LABEL_STUDIO_URL": studio.url,
            "LABEL_STUDIO_API_KEY": LEGACY_TOKEN,
            "TRAIN_EPOCHS": "1",
            "TRAIN_MIN_STEPS": "0",
            "TRAIN_CROP_SIZE": "64",
            "TRAIN_BATCH_SIZE": "2",
            "MC_SAMPLES": "2",
            "SCORE_CHUNK_SIZE": "2",
            "STUDIO_BACKOFF_S": "0.01",
        }
        # The training worker reaches the store through the relay, so a test can stop it in the middle of a save.
        relayed = {"AWS_ENDPOINT_URL": relay.url, "AWS_ENDPOINT_URL_S3": relay.url}
        self.training = self.start("training-worker", ["worker", "--queues", "training"], relayed)
        self.scoring = self.start("scoring-worker", ["worker", "--queues", "scoring"])
        self.web, self.web_url = self.start_web("web")

    def start(self, name: str, arguments: list[str], overrides: dict[str, str] | None = None) -> Host:
        host = Host(name, self.root, arguments, {**self.environment, **(overrides or {})})
        self.hosts.append(host)
        return host

    def start_web(self, name: str) -> tuple[Host, str]:
        port = free_port()
        host = self.start(name, ["serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "2"])
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.call(url, "GET", "/health")[0] == 200:
                    return host, url
            except OSError:
                pass
            assert host.process.poll() is None and time.monotonic() < deadline, f"{name} did not start\n{self.logs()}"
            time.sleep(0.3)

    @staticmethod
    def call(url: str, method: str, path: str, body: object = None) -> tuple[int, dict]:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=120)
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")

    def jobs(self) -> list[dict]:
        status, answer = self.call(self.web_url, "GET", "/jobs")
        assert status == 200, answer
        return answer["jobs"]

    def training_round(self) -> dict[str, list[dict]]:
        """Send a START_TRAINING webhook to the web process and wait until the training job has ended and, if it
        finished, the scoring and publish jobs it enqueued; returns the round's jobs by kind."""
        before = {job["id"] for job in self.jobs()}
        event = {"action": "START_TRAINING", "project": {"id": int(PROJECT), "label_config": DENSE_XML}}
        status, answer = self.call(self.web_url, "POST", "/webhook", event)
        assert status == 201 and answer["status"] == "queued", answer
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        while True:
            new = [job for job in self.jobs() if job["id"] not in before]
            round_jobs = {kind: [job for job in new if job["kind"] == kind] for kind in ("train", "score", "publish")}
            (train,) = round_jobs["train"]
            ended = all(job["status"] in ("finished", "failed") for job in new)
            if train["status"] == "failed" or (train["status"] == "finished" and round_jobs["publish"] and ended):
                return round_jobs
            assert time.monotonic() < deadline, f"the round did not end: {new}\n{self.logs()}"
            time.sleep(0.5)

    def predict(self, url: str, task_id: int = 4) -> dict:
        body = {
            "tasks": [{"id": task_id, "data": {"image": self.images[task_id]}}],
            "project": f"{PROJECT}.1763719200",
            "label_config": DENSE_XML,
        }
        status, answer = self.call(url, "POST", "/predict", body)
        assert status == 200, answer
        (result,) = answer["results"]
        assert result["result"], f"the prediction is empty\n{self.logs()}"
        return result

    def served_version(self, url: str, expected: str) -> str:
        """The version ``url`` serves once it has listed the store again (``MODEL_LIST_TTL_S``)."""
        deadline = time.monotonic() + 60
        while (version := self.predict(url)["model_version"]) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        return version

    def worker_name(self, queue: str) -> str:
        """The RQ name of the one worker listening on ``queue``."""
        connection = Redis.from_url(REDIS_URL)
        (worker,) = Worker.all(connection=connection, queue=Queue(queue, connection=connection))
        return worker.name

    def logs(self) -> str:
        return "\n".join(host.log() for host in self.hosts) + f"\n--- {self.store.describe()}"

    def stop(self) -> None:
        for host in self.hosts:  # all at once, then wait for each
            host.signal(signal.SIGINT)
        for host in self.hosts:
            host.stop()


@pytest.fixture
def studio() -> Iterator[FakeStudio]:
    """The project of tests/jobs (3 labelled and 4 unlabelled 64x48 CamVid tasks) under this test's project id."""
    files, tasks = make_project(labelled=3, unlabelled=4)
    with FakeStudio(files, [{**task, "project": int(PROJECT)} for task in tasks]) as server:
        yield server


@pytest.fixture
def deployment(tmp_path: Path, seaweedfs: SeaweedFS, studio: FakeStudio) -> Iterator[Deployment]:
    connection = Redis.from_url(REDIS_URL)
    connection.ping()
    relay = S3Relay(seaweedfs.ports["s3.port"])
    prefix = f"two-hosts-{uuid.uuid4().hex[:8]}"
    deployment = Deployment(tmp_path, seaweedfs, relay, studio, prefix)
    try:
        yield deployment
    finally:
        deployment.stop()
        relay.close()
        for key in connection.scan_iter(f"lsal:{PROJECT}:*"):
            connection.delete(key)
        for name in (deployment.training_queue, deployment.scoring_queue):
            Queue(name, connection=connection).empty()
            connection.delete(f"lsal:queue:{name}:jobs")


def manifest(store: SeaweedFS, version: int) -> dict:
    key = f"{MODELS}/{PROJECT}/manifests/v{version}.json"
    return json.loads(store.client().get_object(Bucket=store.bucket, Key=key)["Body"].read())


def test_web_and_workers_on_separate_disks_share_versions_through_the_object_store(
    deployment: Deployment, seaweedfs: SeaweedFS, studio
) -> None:
    logs = deployment.logs
    # --- round 1: the webhook reaches the web process, the training worker trains and publishes v1 ---
    round_1 = deployment.training_round()
    (train,) = round_1["train"]
    assert train["status"] == "finished", f"{train['error']}\n{logs()}"
    assert [key.rsplit("/", 1)[1] for key in seaweedfs.keys(f"{MODELS}/{PROJECT}/manifests/")] == ["v1.json"]
    assert deployment.served_version(deployment.web_url, "v1") == "v1", logs()

    # scoring ran on the second worker, bound to the scoring queue only
    assert train["worker"] == deployment.worker_name(deployment.training_queue)
    scoring_worker = deployment.worker_name(deployment.scoring_queue)
    assert scoring_worker != train["worker"]
    assert len(round_1["score"]) == 2 and all(job["status"] == "finished" for job in round_1["score"]), logs()
    assert {job["worker"] for job in round_1["score"] + round_1["publish"]} == {scoring_worker}
    assert sorted(p["task"] for p in studio.predictions if p["model_version"] == "v1") == [4, 5, 6, 7]
    assert studio.projects[PROJECT]["model_version"] == "v1"

    # no shared folder: no process keeps versions on its disk, the label config travelled with the jobs
    for host in (deployment.web, deployment.training, deployment.scoring):
        assert not (host.data_dir / "models").exists(), f"{host.name} wrote versions to its own disk"
    assert not (deployment.training.data_dir / "projects").exists()
    assert not (deployment.scoring.data_dir / "projects").exists()
    cached = [path.name for path in (deployment.scoring.data_dir / "model-cache").glob("*.pt")]
    assert cached == [f"{manifest(seaweedfs, 1)['sha256']}.pt"], "the scoring worker downloaded v1 and verified it"

    # --- round 2: SeaweedFS stops after the checkpoint upload, before the manifest ---
    def stop_before_the_manifest(method: str, path: str) -> None:
        if method == "PUT" and "/manifests/" in path:
            seaweedfs.stop()

    deployment.relay.before = stop_before_the_manifest
    round_2 = deployment.training_round()
    (train,) = round_2["train"]
    assert train["status"] == "failed", logs()
    assert "no new version is visible" in train["error"], train["error"]
    assert not round_2["score"] and not round_2["publish"]
    deployment.relay.before = lambda method, path: None
    seaweedfs.start()
    assert [key.rsplit("/", 1)[1] for key in seaweedfs.keys(f"{MODELS}/{PROJECT}/manifests/")] == ["v1.json"]
    assert len(seaweedfs.keys(f"{MODELS}/{PROJECT}/checkpoints/")) == 2, "the orphaned upload is there, unlisted"
    assert deployment.predict(deployment.web_url)["model_version"] == "v1"

    # --- round 3: the store is back; the training worker publishes v2, the scoring worker scores with it ---
    round_3 = deployment.training_round()
    assert round_3["train"][0]["status"] == "finished", f"{round_3['train'][0]['error']}\n{logs()}"
    assert round_3["publish"][0]["status"] == "finished", logs()
    assert studio.projects[PROJECT]["model_version"] == "v2"

    # --- a corrupt object: v2's bytes are damaged in the bucket before the web process has read them; it refuses
    # them by their checksum and goes on serving v1 ---
    key = manifest(seaweedfs, 2)["checkpoint"]
    client = seaweedfs.client()
    data = bytearray(client.get_object(Bucket=seaweedfs.bucket, Key=key)["Body"].read())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    client.put_object(Bucket=seaweedfs.bucket, Key=key, Body=bytes(data))
    deadline = time.monotonic() + 60  # until the web process has listed the store again (MODEL_LIST_TTL_S)
    while "checksum mismatch" not in deployment.web.log_path.read_text() and time.monotonic() < deadline:
        assert deployment.predict(deployment.web_url)["model_version"] == "v1"
        time.sleep(0.5)
    assert "checksum mismatch, refused" in deployment.web.log_path.read_text(), deployment.web.log()
    assert deployment.predict(deployment.web_url)["model_version"] == "v1", logs()
