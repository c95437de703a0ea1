"""Helpers for the end-to-end tests: process control for Label Studio and our backend, a REST client, test data."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "label_studio.sh"
LABEL_CONFIGS = sorted((REPO_ROOT / "label_configs").glob("*.xml"))

#: The admin's legacy token, set by ``scripts/label_studio.sh start`` (``--user-token``).
LEGACY_TOKEN = os.environ.get("LS_TOKEN", "ls-al-e2e-legacy-token-0123456789")
#: The two kinds of LABEL_STUDIO_API_KEY the backend must accept.
TOKEN_KINDS = ("legacy_token", "personal_access_token")
#: Tiny test images (width, height): different sizes, so a mix-up of images or of width and height shows.
TINY_SIZES = ((120, 90), (112, 84), (96, 72))

LS_START_TIMEOUT_S = 420
BACKEND_START_TIMEOUT_S = 180
#: Backend settings that keep CPU time small on a 2-core CI machine (all are documented Settings fields).
BACKEND_TEST_SETTINGS = {
    "DEVICE": "cpu",
    "MC_SAMPLES": "4",
    "INFERENCE_MAX_SIDE": "128",
    "TRAIN_EPOCHS": "1",
    "TRAIN_MIN_STEPS": "0",
    "TRAIN_BATCH_SIZE": "2",
    "TRAIN_CROP_SIZE": "64",
    "REDIS_URL": "",
    # Every layer, the untrained v0's too: these tests check how Label Studio stores and shows each kind of result.
    # What a prediction draws by default (CLASS_MASKS=auto) is tested in tests/test_backend.py.
    "CLASS_MASKS": "on",
    "UNCERTAINTY_OVERLAY": "on",
}


class StartError(RuntimeError):
    """A server did not start; the message holds its log."""


# --- general ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(condition: Callable[[], object], timeout_s: float, interval_s: float = 0.25) -> bool:
    """Poll ``condition()`` until it returns something truthy; return whether it did in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return bool(condition())


def camvid_dir() -> Path:
    return Path(os.environ.get("CAMVID_DIR", REPO_ROOT.parent / "shared" / "datasets" / "camvid"))


@dataclass(frozen=True)
class TinyImage:
    path: Path
    width: int
    height: int


def make_tiny_images(folder: Path) -> list[TinyImage]:
    """CamVid validation images scaled down to ``TINY_SIZES``, saved as PNG files in ``folder``."""
    sources = sorted((camvid_dir() / "val" / "images").glob("*.jpg"))[: len(TINY_SIZES)]
    if len(sources) < len(TINY_SIZES):
        raise StartError(f"need {len(TINY_SIZES)} CamVid images under {camvid_dir() / 'val' / 'images'} (CAMVID_DIR)")
    images = []
    for source, (width, height) in zip(sources, TINY_SIZES, strict=True):
        path = folder / f"{source.stem}_{width}x{height}.png"
        Image.open(source).convert("RGB").resize((width, height), Image.Resampling.BILINEAR).save(path)
        images.append(TinyImage(path, width, height))
    return images


@dataclass(frozen=True)
class ConfigTags:
    """The tags of a label config: control name -> (tag type, toName, label or choice values); object names."""

    controls: dict[str, tuple[str, str, frozenset[str]]]
    objects: frozenset[str]

    @classmethod
    def parse(cls, xml: str) -> ConfigTags:
        controls: dict[str, tuple[str, str, frozenset[str]]] = {}
        objects = set()
        for element in ET.fromstring(xml).iter():
            name = element.get("name")
            if not name:
                continue
            if element.get("toName"):
                values = frozenset(child.get("value", "") for child in element if child.tag in {"Label", "Choice"})
                controls[name] = (element.tag, element.get("toName", ""), values)
            elif element.get("value", "").startswith("$"):
                objects.add(name)
        return cls(controls, frozenset(objects))

    def of_type(self, tag: str) -> list[str]:
        return [name for name, (kind, _, _) in self.controls.items() if kind == tag]


# --- Label Studio ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelStudio:
    """A Label Studio server run by ``scripts/label_studio.sh`` (SQLite and uploads in ``data_dir``)."""

    url: str
    data_dir: Path
    env: dict[str, str]

    @property
    def port(self) -> str:
        return self.url.rsplit(":", 1)[1]

    @classmethod
    def start(cls, ls_venv: Path, data_dir: Path) -> LabelStudio:
        if not (ls_venv / "bin" / "label-studio").exists():
            raise StartError(f"no Label Studio in {ls_venv}: run `LS_VENV={ls_venv} scripts/label_studio.sh install`")
        env = {**os.environ, "LS_VENV": str(ls_venv), "LS_TOKEN": LEGACY_TOKEN}
        studio = cls(url=f"http://127.0.0.1:{free_port()}", data_dir=data_dir, env=env)
        try:
            started = studio.script("start", str(data_dir), studio.port, timeout_s=LS_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            studio.stop()
            raise StartError(f"Label Studio did not start within {LS_START_TIMEOUT_S} s\n{studio.log_tail()}") from None
        if started.returncode != 0:
            studio.stop()
            raise StartError(f"Label Studio did not start:\n{started.stdout}\n{started.stderr}\n{studio.log_tail()}")
        return studio

    def stop(self) -> None:
        self.script("stop", str(self.data_dir))

    @classmethod
    @contextlib.contextmanager
    def running(cls, data_dir: Path) -> Iterator[LabelStudio]:
        """A Label Studio from ``$LS_VENV`` (default ``.ls-venv``) on ``data_dir``, stopped on exit; one that does
        not start fails the test with its log."""
        ls_venv = Path(os.environ.get("LS_VENV", ".ls-venv"))
        try:
            studio = cls.start(ls_venv if ls_venv.is_absolute() else REPO_ROOT / ls_venv, data_dir)
        except StartError as error:
            pytest.fail(str(error))
        try:
            yield studio
        finally:
            studio.stop()

    def restart(self) -> None:
        """Start again on the same port and data folder (its SQLite database, uploads and users kept)."""
        started = self.script("start", str(self.data_dir), self.port, timeout_s=LS_START_TIMEOUT_S)
        if started.returncode != 0:
            raise StartError(f"Label Studio did not restart:\n{started.stdout}\n{started.stderr}\n{self.log_tail()}")

    def personal_access_token(self) -> str:
        made = self.script("pat", str(self.data_dir), self.port)
        token = made.stdout.strip()
        if made.returncode != 0 or token.count(".") != 2:
            raise StartError(f"could not create a personal access token:\n{made.stdout}\n{made.stderr}")
        return token

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.data_dir / "ls.log", lines)

    def script(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False
        )


class Studio:
    """A small client for Label Studio's REST API; every unexpected status fails with the response body."""

    def __init__(self, url: str, authorization: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = authorization

    def request(self, method: str, path: str, expect: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 150)
        response = self.session.request(method, self.url + path, **kwargs)
        if response.status_code not in expect:
            raise AssertionError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    # --- projects and tasks ---

    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        return self.post("/api/projects/", json={"title": title, "label_config": label_config})

    def import_images(self, project_id: int, images: list[TinyImage]) -> dict[str, Any]:
        """Upload image files, so tasks get ``/data/upload/...`` URLs that need an API key to read.

        Each file needs its own form field name: Label Studio keeps only the last file of a repeated field.
        """
        files = {
            f"file{index}": (image.path.name, image.path.read_bytes(), "image/png")
            for index, image in enumerate(images)
        }
        summary = self.post(f"/api/projects/{project_id}/import", files=files)
        assert summary["task_count"] == len(images), summary
        return summary

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """All tasks with annotations and predictions (the list API never asks the ML backend for predictions)."""
        page = self.get("/api/tasks/", params={"project": project_id, "fields": "all", "page_size": 100})
        return page["tasks"]

    def predictions(self, task_id: int) -> list[dict[str, Any]]:
        return self.get("/api/predictions/", params={"task": task_id})

    # --- ML backends ---

    def add_ml_backend(self, project_id: int, url: str, title: str) -> dict[str, Any]:
        return self.post("/api/ml/", json={"url": url, "project": project_id, "title": title})

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return self.get("/api/webhooks/", params={"project": project_id})

    def retrieve_predictions(self, project_id: int) -> dict[str, Any]:
        """The Data Manager action "Retrieve Predictions" on every task of the project."""
        return self.post(
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": {"all": True, "excluded": []}},
        )


def image_of_task(task: dict[str, Any], images: list[TinyImage]) -> TinyImage:
    """The tiny image a task was created from (Label Studio prefixes uploaded file names with a random id)."""
    url = task["data"]["image"]
    matches = [image for image in images if url.endswith("-" + image.path.name)]
    assert len(matches) == 1, f"task {task['id']} image {url!r} matches {matches}"
    return matches[0]


# --- our backend -----------------------------------------------------------------------------------------------


@dataclass
class RunningBackend:
    url: str
    token_kind: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def get(self, path: str) -> Any:
        response = requests.get(self.url + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def events(self) -> list[dict[str, Any]]:
        """The webhook events the backend recorded in ``DATA_DIR/events.jsonl``."""
        path = self.data_dir / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["event"] for line in path.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def backend_command() -> list[str]:
    """``ls-al-backend`` from the environment that runs the tests (``.venv/bin`` in CI)."""
    script = Path(sys.executable).parent / "ls-al-backend"
    if not script.exists():
        raise StartError(f"{script} does not exist: install the package (`pip install -e .`)")
    return [str(script), "serve"]


def start_backend(
    label_studio: LabelStudio, token_kind: str, api_key: str, data_dir: Path, settings: dict[str, str] | None = None
) -> RunningBackend:
    """``ls-al-backend serve`` against ``label_studio`` with :data:`BACKEND_TEST_SETTINGS`, then ``settings``."""
    port = free_port()
    env = {
        **os.environ,
        **BACKEND_TEST_SETTINGS,
        **(settings or {}),
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": api_key,
        "DATA_DIR": str(data_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    log_path = data_dir / "backend.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*backend_command(), "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    backend = RunningBackend(f"http://127.0.0.1:{port}", token_kind, data_dir, log_path, process)

    def healthy() -> bool:
        if process.poll() is not None:
            return True
        try:
            return requests.get(backend.url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    ready = wait_until(healthy, BACKEND_START_TIMEOUT_S, interval_s=0.5)
    if process.poll() is not None or not ready:
        backend.stop()
        reason = f"exited with {process.returncode}" if process.returncode is not None else "never answered /health"
        raise StartError(f"ls-al-backend ({token_kind}) {reason}:\n{backend.log_tail()}")
    return backend


class BackendPool:
    """One running backend per kind of API key, started on first use and stopped at the end of the session."""

    def __init__(self, label_studio: LabelStudio, api_keys: dict[str, str], root: Path):
        self.label_studio = label_studio
        self.api_keys = api_keys
        self.root = root
        self.running: dict[str, RunningBackend] = {}

    def get(self, token_kind: str) -> RunningBackend:
        if token_kind not in self.running:
            data_dir = self.root / token_kind
            self.running[token_kind] = start_backend(self.label_studio, token_kind, self.api_keys[token_kind], data_dir)
        return self.running[token_kind]

    def stop_all(self) -> None:
        for backend in self.running.values():
            backend.stop()
