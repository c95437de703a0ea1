"""The fault suite: hostile task URLs and images, oversized requests, broken checkpoints, a worker killed while
it writes one, and Label Studio going away in the middle of a round.

Every case states what the user sees (an HTTP status with its reason, an empty prediction for that task only, a
``/jobs`` entry) and checks that no 5xx escapes and that nothing already saved is lost. The totals are printed at
the end of the run (``tests/faults/conftest.py``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ls_al_backend.backend import Backend
from ls_al_backend.config import Settings
from ls_al_backend.jobs.pipeline import Pipeline
from ls_al_backend.jobs.runners import EmbeddedRunner
from ls_al_backend.model.store import ModelStore
from ls_al_backend.server import create_app
from tests.conftest import REPO_ROOT
from tests.fake_studio import LEGACY_TOKEN, FakeStudio
from tests.faults.conftest import LEDGER
from tests.jobs.conftest import DENSE_XML, PROJECT, job_settings, make_project

PREDICT_PROJECT = "3"


class Recorder:
    """A plain HTTP server on 127.0.0.1 that records every path asked for; ``/redirect`` answers 302 to
    ``target``, everything else a PNG."""

    def __init__(self, target: str = ""):
        self.paths: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                recorder.paths.append(self.path)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = png(Image.new("RGB", (32, 24), (90, 90, 90)))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decompression_bomb() -> bytes:
    """A valid PNG header claiming 100,000 x 100,000 RGB pixels (30 GB decoded) in a file of a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def hostile_images(folder: Path, scene: Image.Image) -> dict[str, tuple[Path, str | None]]:
    """name -> (file, the reason it is refused, or None when the backend must predict it)."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = io.BytesIO()
    scene.save(jpeg, format="JPEG")
    cmyk = io.BytesIO()
    scene.convert("CMYK").save(cmyk, format="JPEG")
    sixteen_bit = Image.fromarray((np.asarray(scene.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    files = {
        "truncated JPEG": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "not a readable image"),
        "1x1 PNG": (png(Image.new("RGB", (1, 1), (200, 10, 10))), None),
        "16-bit grayscale PNG": (png(sixteen_bit), None),
        "8-bit grayscale PNG": (png(scene.convert("L")), None),
        "CMYK JPEG": (cmyk.getvalue(), None),
        "decompression bomb PNG": (decompression_bomb(), "MAX_IMAGE_PIXELS"),
        "100 MB file": (b"\x89PNG" + b"\x00" * (100 * 1024 * 1024), "MAX_IMAGE_BYTES"),
    }
    cases = {}
    for index, (name, (data, reason)) in enumerate(files.items()):
        path = folder / f"hostile-{index}.img"
        path.write_bytes(data)
        cases[name] = (path, reason)
    return cases


@pytest.fixture
def served(tmp_path: Path, camvid_image_path: Path):
    """A backend app with Label Studio (the stand-in), local image roots and one allowed host, plus a recorder
    that plays an allowed host redirecting into Label Studio's API."""
    scene = Image.open(camvid_image_path).convert("RGB").resize((96, 72))
    images = tmp_path / "images"
    images.mkdir()
    scene.save(images / "good.png")
    studio = FakeStudio({"/data/upload/3/good.png": png(scene)})
    with studio:
        recorder = Recorder(target=f"{studio.url}/api/projects/")
        settings = Settings.from_env(
            {},
            data_dir=tmp_path / "data",
            local_image_roots=(str(images),),
            label_studio_url=studio.url,
            label_studio_api_key=LEGACY_TOKEN,
            allowed_image_hosts=("localhost",),
            mc_samples=2,
            studio_retries=1,
            studio_backoff_s=0.01,
            class_masks="on",  # a good task's prediction has content even from v0: an empty one means refused
            uncertainty_overlay="on",
        )
        backend = Backend(settings)
        yield create_app(backend).test_client(), backend, studio, recorder, images, scene
        recorder.close()


def predict(client, images: list[str]):
    tasks = [{"id": index + 1, "data": {"image": image}} for index, image in enumerate(images)]
    return client.post("/predict", json={"tasks": tasks, "project": f"{PREDICT_PROJECT}.1", "label_config": DENSE_XML})


def hostile_urls(studio: FakeStudio, recorder: Recorder, images: Path) -> dict[str, str]:
    return {
        "traversal out of /data/upload": "/data/upload/../../api/projects/",
        "percent-encoded traversal": "/data/upload/%2e%2e/%2e%2e/api/users/",
        "absolute Label Studio API URL": f"{studio.url}/api/projects/",
        "local-files without its ?d= root": "/data/local-files/../api/projects/",
        "host not in ALLOWED_IMAGE_HOSTS": f"http://127.0.0.1:{recorder.port}/x.png",
        "allowed host redirecting into the API": f"http://localhost:{recorder.port}/redirect",
        "file path outside LOCAL_IMAGE_ROOTS": str(images / ".." / ".." / "etc" / "passwd"),
        "file:// URL": "file:///etc/passwd",
    }


def test_hostile_task_urls_get_an_empty_prediction_and_the_token_never_leaves(served, caplog) -> None:
    client, _, studio, recorder, images, _ = served
    for name, url in hostile_urls(studio, recorder, images).items():
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="ls_al_backend.backend"):
            response = predict(client, ["/data/upload/3/good.png", url])
        LEDGER.record(f"task URL: {name}", f"{response.status_code}, empty prediction for that task")
        assert response.status_code == 200, name
        good, hostile = response.get_json()["results"]
        assert good["result"] and hostile["result"] == [], name
        assert "cannot read its image" in caplog.text, name
    assert studio.calls("GET", "/api/") == [], "no Label Studio API path was ever fetched with the token"
    assert recorder.paths == ["/redirect"], "only the allowed host was asked, and its redirect was not followed"


def test_hostile_images_are_refused_or_read_and_never_sink_the_batch(served, caplog) -> None:
    client, _, _, _, images, scene = served
    for name, (path, reason) in hostile_images(images, scene).items():
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="ls_al_backend.backend"):
            response = predict(client, [str(images / "good.png"), str(path)])
        assert response.status_code == 200, name
        good, odd = response.get_json()["results"]
        assert good["result"], name
        if reason is None:
            LEDGER.record(f"image: {name}", "200, predicted")
            assert odd["result"], f"{name} is a real image and gets a prediction: {caplog.text}"
        else:
            LEDGER.record(f"image: {name}", f"200, empty prediction ({reason})")
            assert odd["result"] == [] and reason in caplog.text, name


def test_a_100_mb_label_studio_file_is_refused_without_reading_it_whole(served, caplog) -> None:
    client, backend, studio, *_ = served
    studio.files["/data/upload/3/huge.png"] = b"\x00" * (100 * 1024 * 1024)
    with caplog.at_level(logging.ERROR, logger="ls_al_backend.backend"):
        response = predict(client, ["/data/upload/3/good.png", "/data/upload/3/huge.png"])
    LEDGER.record("image: 100 MB body from Label Studio", f"{response.status_code}, empty prediction")
    assert response.status_code == 200 and response.get_json()["results"][1]["result"] == []
    assert "larger than" in caplog.text
    assert not any(path.stat().st_size > 10**6 for path in backend.settings.image_cache_dir.glob("*")), "not cached"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("case", "body", "status", "reason"),
    [
        (
            "100 MB request body",
            lambda: b'{"tasks": [], "pad": "' + b"x" * (100 * 1024 * 1024) + b'"}',
            413,
            "MAX_REQUEST",
        ),
        ("JSON nested 100,000 deep", lambda: nested(100_000).encode(), 400, "must be JSON"),
        ("top_k_regions=1e6", lambda: {"top_k_regions": 10**6}, 400, "top_k_regions"),
        ("top_n_pixels=1e7", lambda: {"top_n_pixels": 10**7}, 400, "top_n_pixels"),
        ("superpixel_count=1e7", lambda: {"superpixel_count": 10**7}, 400, "superpixel_count"),
        ("superpixel_size=1", lambda: {"superpixel_size": 1}, 400, "superpixel_size"),
        ("budget=1e12", lambda: {"budget": 1e12}, 400, "budget"),
    ],
)
def test_oversized_requests_and_parameters_are_a_4xx_with_the_reason(served, case, body, status, reason) -> None:
    client = served[0]
    payload = body()
    if isinstance(payload, dict):  # acquisition parameters of an otherwise valid request
        response = client.post(
            "/predict",
            json={"tasks": [], "label_config": DENSE_XML, "params": {"acquisition": payload}},
        )
    else:
        response = client.post("/predict", data=payload, content_type="application/json")
    LEDGER.record(f"request: {case}", f"{response.status_code} {response.get_json()['error'][:40]}")
    assert response.status_code == status and reason in response.get_json()["error"], response.get_json()


def test_a_corrupt_checkpoint_is_passed_over_and_predictions_go_on(served) -> None:
    client, backend, *_ = served
    folder = backend.models.project_dir(PREDICT_PROJECT)
    folder.mkdir(parents=True)
    (folder / "v1.pt").write_bytes(b"PK\x03\x04 half a zip file")
    response = predict(client, ["/data/upload/3/good.png"])
    LEDGER.record(
        "checkpoint: corrupt v1.pt",
        f"{response.status_code}, served {response.get_json()['results'][0]['model_version']}",
    )
    assert response.status_code == 200
    (item,) = response.get_json()["results"]
    assert item["result"] and item["model_version"] == "v0", "the newest readable version (here none: v0) serves"
    assert client.get("/versions").status_code == 200


KILLED_WRITER = """
import os, sys, time
import ls_al_backend.model.store as store_module
from ls_al_backend.model.network import NetworkSpec, build_network
from ls_al_backend.model.store import ModelStore

def stall(fd):  # the bytes are written; the process dies before the version is linked into place
    print("writing", flush=True)
    time.sleep(60)

store_module.os.fsync = stall
spec = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=2, head_dropout=0.1, encoder_weights="none")
ModelStore(sys.argv[1]).save("1", build_network(spec), ("a", "b"), {"by": "killed"})
"""


def test_a_worker_killed_while_writing_a_checkpoint_leaves_the_saved_versions_whole(tmp_path) -> None:
    from ls_al_backend.model.network import NetworkSpec, build_network

    spec = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=2, head_dropout=0.1, encoder_weights="none")
    store = ModelStore(tmp_path)
    store.save("1", build_network(spec), ("a", "b"), {"by": "first"})
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
    LEDGER.record("checkpoint: writer SIGKILLed mid-write", f"versions {store.versions('1')}")
    assert store.versions("1") == [1], "the half-written version never appears"
    assert store.load("1", 1).metadata == {"by": "first"}
    assert store.save("1", build_network(spec), ("a", "b"), {"by": "next"}) == 2


@pytest.fixture
def project_studio():
    files, tasks = make_project(labelled=3, unlabelled=4)
    with FakeStudio(files, tasks) as studio:
        yield studio


def wait_for_job(runner: EmbeddedRunner, job_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = next(job for job in runner.jobs() if job["id"] == job_id)
        if job["status"] in ("finished", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {timeout_s} s")


def labels_lost(pipeline: Pipeline, studio: FakeStudio) -> int:
    """Labelled tasks in Label Studio that the newest version did not train on."""
    labelled = {task_id for task_id, task in studio.tasks.items() if task["annotations"]}
    trained = pipeline.backend.models.load(PROJECT, pipeline.backend.models.latest(PROJECT)).metadata
    return len(labelled - set(trained["labelled_tasks"]))


def test_label_studio_down_mid_round_fails_the_job_cleanly_and_the_rerun_completes(tmp_path, project_studio) -> None:
    studio = project_studio
    pipeline = Pipeline(job_settings(tmp_path, studio.url, studio_retries=2, studio_backoff_s=0.05))
    score = pipeline.score

    def score_after_an_outage(*args, **kwargs):
        studio.stop()  # Label Studio goes down after training, while the pool is scored
        return score(*args, **kwargs)

    pipeline.score = score_after_an_outage
    runner = EmbeddedRunner(pipeline.settings, lambda settings: pipeline)
    failed = wait_for_job(runner, runner.request_training(PROJECT, DENSE_XML, reason="fault suite")["job_id"])
    assert failed["status"] == "failed" and "StudioError" in failed["error"], failed
    assert pipeline.backend.models.versions(PROJECT) == [1], "the trained version is kept"

    pipeline.score = score
    studio.restart()
    rerun = wait_for_job(runner, runner.request_training(PROJECT, DENSE_XML, reason="rerun")["job_id"])
    assert rerun["status"] == "finished", rerun["error"]
    assert rerun["result"]["scored"] == 4 and rerun["result"]["failed"] == []
    assert sorted(p["task"] for p in studio.predictions if p["model_version"] == "v2") == [4, 5, 6, 7]
    lost = labels_lost(pipeline, studio)
    LEDGER.record("Label Studio stopped mid-round", f"/jobs: {failed['status']}; rerun {rerun['status']}", lost)
    assert lost == 0


def test_a_label_studio_restart_shorter_than_the_retries_does_not_fail_the_round(tmp_path, project_studio) -> None:
    studio = project_studio
    pipeline = Pipeline(job_settings(tmp_path, studio.url, studio_retries=5, studio_backoff_s=0.2))
    score = pipeline.score

    def score_during_a_restart(*args, **kwargs):
        studio.stop()
        threading.Timer(1.0, studio.restart).start()  # back within the 0.2+0.4+0.8+1.6+3.2 s of retries
        pipeline.score = score
        return score(*args, **kwargs)

    pipeline.score = score_during_a_restart
    runner = EmbeddedRunner(pipeline.settings, lambda settings: pipeline)
    job = wait_for_job(runner, runner.request_training(PROJECT, DENSE_XML, reason="fault suite")["job_id"])
    lost = labels_lost(pipeline, studio) if job["status"] == "finished" else None
    LEDGER.record("Label Studio restarted within the retries", f"/jobs: {job['status']}", lost or 0)
    assert job["status"] == "finished", job["error"]
    assert job["result"]["failed"] == [] and job["result"]["scored"] == 4
    assert lost == 0


def test_unreadable_labelled_images_show_in_jobs_and_fail_the_round_above_the_threshold(
    tmp_path, project_studio
) -> None:
    studio = project_studio
    studio.tasks[1]["data"]["image"] = "/data/upload/5/gone.png"
    pipeline = Pipeline(job_settings(tmp_path, studio.url, studio_retries=0))
    runner = EmbeddedRunner(pipeline.settings, lambda settings: pipeline)
    job = wait_for_job(runner, runner.request_training(PROJECT, DENSE_XML, reason="fault suite")["job_id"])
    LEDGER.record("labelled task with an unreadable image", f"/jobs: {job['status']}, task ids listed")
    assert job["status"] == "failed" and "TRAIN_MAX_UNREADABLE_SHARE" in job["error"]
    assert job["meta"]["skipped_tasks"]["unreadable_image_task_ids"] == [1]
    assert pipeline.backend.models.versions(PROJECT) == [], "no version trained on a silent subset"
    assert json.dumps(job)  # /jobs serialises it
