"""Label Studio behind a reverse proxy at a sub-path: ``LABEL_STUDIO_URL=http://127.0.0.1:<proxy>/labelstudio``.

A second Label Studio 1.23.2 runs with ``LABEL_STUDIO_HOST=http://127.0.0.1:<proxy>/labelstudio`` (its settings turn
the path into Django's ``FORCE_SCRIPT_NAME``, so the URLs it generates carry the prefix), on a copy of the session
Label Studio's migrated database (a start without migrations). Like nginx's ``location /labelstudio/ { proxy_pass
http://ls/; }``, a small proxy in this module strips the prefix and forwards everything else unchanged. Our
backend sees Label Studio only through the proxy: uploads named ``/labelstudio/data/upload/...``, tasks from an S3
source storage (SeaweedFS, presigned URLs on) named ``s3://...`` in ``/predict`` and
``http://127.0.0.1:<proxy>/labelstudio/tasks/<id>/resolve/?fileuri=...`` in the task list, every API call and file
under the prefix, a request without it answered 404 by the proxy.
"""

from __future__ import annotations

import dataclasses
import http.client
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.annotations import annotation_config, brush_stroke
from tests.e2e.harness import (
    LEGACY_TOKEN,
    LS_START_TIMEOUT_S,
    ConfigTags,
    LabelStudio,
    RunningBackend,
    StartError,
    Studio,
    TinyImage,
    free_port,
    start_backend,
    wait_until,
)
from tests.e2e.s3_storage import connect_s3_storage, images_bucket
from tests.seaweedfs import SeaweedFS

PREFIX = "/labelstudio"
ROUND_TIMEOUT_S = 240
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class PrefixProxy:
    """Serves ``upstream`` under ``PREFIX``: strips it from each request's path, forwards method, headers and body,
    and returns the answer as it is (redirects included); a path outside the prefix is 404. Records every path."""

    def __init__(self, upstream_port: int):
        self.paths: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                proxy.paths.append(self.path)
                if not self.path.startswith(PREFIX + "/"):
                    self._answer(404, [("Content-Type", "text/plain")], b"outside the prefix")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
                connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=150)
                try:
                    connection.request(self.command, self.path[len(PREFIX) :], body=body or None, headers=headers)
                    answer = connection.getresponse()
                    payload = answer.read()
                    kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
                    self._answer(answer.status, kept, payload)
                finally:
                    connection.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclasses.dataclass(frozen=True)
class PrefixedStudio:
    proxy: PrefixProxy
    label_studio: LabelStudio  # the server itself (its own port, no prefix)
    url: str  # http://127.0.0.1:<proxy port>/labelstudio


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API, not a file copy)."""
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)


@pytest.fixture(scope="module")
def prefixed(label_studio: LabelStudio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefixedStudio]:
    data_dir = tmp_path_factory.mktemp("label-studio-prefixed")
    copy_database(label_studio.data_dir / "label_studio.sqlite3", data_dir / "label_studio.sqlite3")
    port = free_port()
    proxy = PrefixProxy(port)
    url = proxy.url + PREFIX
    server = LabelStudio(f"http://127.0.0.1:{port}", data_dir, {**label_studio.env, "LABEL_STUDIO_HOST": url})
    started = server.script("start", str(data_dir), server.port, timeout_s=LS_START_TIMEOUT_S)
    try:
        if started.returncode != 0:
            pytest.fail(f"Label Studio under {PREFIX} did not start:\n{started.stderr}\n{server.log_tail()}")
        yield PrefixedStudio(proxy, server, url)
    finally:
        server.stop()
        proxy.close()


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory, tiny_images: list[TinyImage]) -> Iterator[SeaweedFS]:
    """Two tiny CamVid images in a SeaweedFS bucket."""
    with images_bucket(tmp_path_factory.mktemp("seaweedfs"), tiny_images[:2]) as server:
        yield server


@pytest.fixture(scope="module")
def prefixed_backend(prefixed: PrefixedStudio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBackend]:
    """Our backend with ``LABEL_STUDIO_URL`` = the proxy's URL with the prefix."""
    through_proxy = dataclasses.replace(prefixed.label_studio, url=prefixed.url)
    try:
        backend = start_backend(through_proxy, "legacy_token", LEGACY_TOKEN, tmp_path_factory.mktemp("backend-prefix"))
    except StartError as error:
        pytest.fail(str(error))
    yield backend
    backend.stop()


def test_predict_train_and_score_through_a_url_prefix(
    prefixed: PrefixedStudio, prefixed_backend: RunningBackend, tiny_images: list[TinyImage], bucket: SeaweedFS
) -> None:
    studio = Studio(prefixed.url, f"Token {LEGACY_TOKEN}")  # the test's own calls go through the proxy too
    assert requests.get(prefixed.proxy.url + "/api/projects/", timeout=10).status_code == 404
    label_config = annotation_config()
    project = studio.create_project("under a URL prefix", label_config)
    images = tiny_images[:2]
    studio.import_images(project["id"], images)
    connect_s3_storage(studio, project["id"], bucket, presign=True)
    tasks = studio.tasks(project["id"])
    uploads = [task for task in tasks if task["data"]["image"].startswith(PREFIX + "/data/upload/")]
    cloud = [task for task in tasks if task["data"]["image"].startswith(f"{prefixed.url}/tasks/{task['id']}/resolve/")]
    assert (len(uploads), len(cloud), len(tasks)) == (2, 2, 4), [task["data"] for task in tasks]
    studio.add_ml_backend(project["id"], prefixed_backend.url, title="ls-al-backend (prefix)")

    # "Retrieve Predictions": /predict gets the prefixed upload URLs; the backend reads them through the proxy.
    before = len(prefixed.proxy.paths)
    studio.retrieve_predictions(project["id"])
    versions = {p["model_version"] for task in studio.tasks(project["id"]) for p in task["predictions"]}
    assert len(versions) == 1, (versions, prefixed_backend.log_tail())
    stored = predictions_of(studio, project["id"], versions.pop())
    assert set(stored) == {task["id"] for task in tasks}, prefixed_backend.log_tail()
    fetched = prefixed.proxy.paths[before:]
    assert {path for path in fetched if "/data/upload/" in path} == {task["data"]["image"] for task in uploads}
    assert {path.split("?")[0] for path in fetched if "/presign/" in path} == {
        f"{PREFIX}/tasks/{task['id']}/presign/" for task in cloud
    }, "the s3:// tasks were read through the prefixed presign endpoint"
    for path in (prefixed_backend.data_dir / "image-cache").iterdir():
        path.unlink()  # the round reads every image again, the S3 ones by their absolute resolve URLs

    # An annotation; its webhook starts a round that reads the task list and writes predictions, all under the prefix.
    labelled = uploads[0]
    image = next(image for image in images if labelled["data"]["image"].endswith("-" + image.path.name))
    stroke = brush_stroke(ConfigTags.parse(label_config), image)
    studio.post(f"/api/tasks/{labelled['id']}/annotations/", json={"result": [stroke], "lead_time": 1.0})

    def round_jobs() -> list[dict[str, Any]]:
        jobs = requests.get(prefixed_backend.url + "/jobs", timeout=10).json()["jobs"]
        return [job for job in jobs if job["kind"] == "train" and job["project"] == str(project["id"])]

    def round_over() -> bool:
        jobs = round_jobs()
        return bool(jobs) and all(job["status"] in {"finished", "failed"} for job in jobs)

    assert wait_until(round_over, ROUND_TIMEOUT_S, interval_s=1), f"round not over: {round_jobs()}"
    (job,) = round_jobs()
    assert job["status"] == "finished", (job.get("error"), prefixed_backend.log_tail())
    version = job["result"]["model_version"]
    scored = predictions_of(studio, project["id"], version)
    assert set(scored) == {task["id"] for task in tasks} - {labelled["id"]}, prefixed_backend.log_tail()
    assert {path.split("?")[0] for path in prefixed.proxy.paths if "/resolve/" in path} == {
        f"{PREFIX}/tasks/{task['id']}/resolve/" for task in cloud
    }, "scoring read the S3 tasks by their resolve URLs, under the prefix"
    assert studio.get(f"/api/projects/{project['id']}/")["model_version"] == version
    outside = [path for path in prefixed.proxy.paths if not path.startswith(PREFIX + "/")]
    assert outside == ["/api/projects/"], f"requests that left the prefix: {outside}"


def predictions_of(studio: Studio, project_id: int, model_version: str) -> dict[int, dict[str, Any]]:
    return {
        task["id"]: prediction
        for task in studio.tasks(project_id)
        for prediction in task["predictions"]
        if prediction["model_version"] == model_version
    }
