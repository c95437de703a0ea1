"""Request bodies captured from a real Label Studio 1.23.2 (tests/fixtures), replayed against the app."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from ls_al_backend.backend import Backend
from ls_al_backend.config import Settings
from ls_al_backend.server import create_app
from tests.fake_studio import LEGACY_TOKEN, FakeStudio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "label_studio_1.23.2"


def captured(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class RecordingRunner:
    """Stands in for the job runner (unit test): records training requests instead of training."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []

    def request_training(self, project_id: str, label_config_xml: str, reason: str) -> dict:
        self.requests.append((project_id, reason))
        return {"job_id": f"job-{len(self.requests)}", "coalesced": False}

    def jobs(self) -> list[dict]:
        return []


@pytest.fixture
def studio():
    """Serves a small PNG at every image URL the captured /predict request names."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 120, 30)).save(buffer, format="PNG")
    files = {task["data"]["image"]: buffer.getvalue() for task in captured("predict_request")["tasks"]}
    with FakeStudio(files) as server:
        yield server


@pytest.fixture
def app(tmp_path, studio):
    settings = Settings.from_env(
        {},
        data_dir=tmp_path,
        label_studio_url=studio.url,
        label_studio_api_key=LEGACY_TOKEN,
        mc_samples=2,
        class_masks="on",  # the payloads include every layer, the untrained v0's too
        uncertainty_overlay="on",
    )
    backend = Backend(settings)
    return create_app(backend, RecordingRunner()).test_client(), backend


def test_setup_then_predict_as_label_studio_sends_them(app) -> None:
    client, _ = app
    setup = client.post("/setup", json=captured("setup_request"))
    assert setup.status_code == 200 and setup.get_json() == {"model_version": "v0"}
    request = captured("predict_request")
    response = client.post("/predict", json=request)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == len(request["tasks"])
    for item in results:
        assert item["model_version"] == "v0" and item["result"], "every captured task gets regions"
        assert all(region["original_width"] == 40 for region in item["result"])


@pytest.mark.parametrize(
    ("fixture", "status", "reason"),
    [
        ("annotation_created", "queued", "ANNOTATION_CREATED"),
        ("annotation_updated", "queued", "ANNOTATION_UPDATED"),
        ("annotations_deleted", "queued", "ANNOTATIONS_DELETED"),
        ("start_training", "queued", "START_TRAINING"),
        ("tasks_created", "ignored", None),
    ],
)
def test_captured_webhook_events(app, fixture: str, status: str, reason: str | None) -> None:
    client, backend = app
    response = client.post("/webhook", json=captured(fixture))
    assert response.status_code == 201 and response.get_json()["status"] == status
    expected = [(str(captured(fixture)["project"]["id"]), reason)] if reason else []
    assert backend.runner.requests == expected
