"""The HTTP contract Label Studio 1.23 relies on, and a clear 4xx JSON answer to every bad request."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from ls_al_backend.backend import Backend
from ls_al_backend.config import Settings
from ls_al_backend.labeling.rle import rle_to_mask
from ls_al_backend.server import create_app
from tests.conftest import REPO_ROOT

DENSE = (REPO_ROOT / "label_configs" / "dense_brush.xml").read_text()


def make_client(settings: Settings, layers: str = "on"):
    """A test client of the app. The class masks and overlay are drawn (``layers="on"``, v0 included) unless
    ``layers`` says otherwise: their rendering is under test here, their defaults in tests/test_backend.py."""
    backend = Backend(dataclasses.replace(settings, class_masks=layers, uncertainty_overlay=layers))
    return create_app(backend).test_client(), backend


@pytest.fixture
def client(settings: Settings):
    return make_client(settings)[0]


def ls_task(task_id: int, image: str) -> dict:
    """A task as Label Studio 1.23 sends it inside /predict."""
    return {
        "id": task_id,
        "data": {"image": image},
        "meta": {},
        "created_at": "2026-11-21T10:00:00.000000Z",
        "updated_at": "2026-11-21T10:00:00.000000Z",
        "is_labeled": False,
        "overlap": 1,
        "inner_id": task_id,
        "total_annotations": 0,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "annotations": [],
        "predictions": [],
        "project": 3,
    }


def predict_body(tasks: list[dict], label_config: str | None = DENSE) -> dict:
    body = {"tasks": tasks, "project": "3.1763719200", "params": {"login": None, "password": None, "context": None}}
    if label_config is not None:
        body["label_config"] = label_config
    return body


def test_health_answers_json(client) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json()["status"] == "UP"


def test_setup_answers_the_model_version_without_loading_a_model(settings: Settings) -> None:
    client, backend = make_client(settings)
    response = client.post("/setup", json={"project": "3.1763719200", "schema": DENSE, "hostname": "http://ls:8080"})
    assert response.status_code == 200 and response.get_json() == {"model_version": "v0"}
    assert backend.cache._entries == {}, "/setup must never build a model"


def test_predict_returns_one_prediction_per_task_in_order(client, small_image_path: Path) -> None:
    tasks = [
        ls_task(11, str(small_image_path)),
        ls_task(12, "/nowhere/missing.png"),
        ls_task(13, str(small_image_path)),
    ]
    response = client.post("/predict", json=predict_body(tasks))
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 3
    assert results[1] == {"result": [], "score": 0.0, "model_version": "v0"}, "a failing task gets an empty result"
    for item in (results[0], results[2]):
        assert item["model_version"] == "v0" and 0.0 < item["score"] <= 1.0, "mean predictive entropy / ln C"
        names = {region["from_name"] for region in item["result"]}
        assert names == {"label", "uncertainty"}
        for region in item["result"]:
            assert (region["original_width"], region["original_height"]) == (96, 72)
            assert region["to_name"] == "image" and region["type"] == "brushlabels"
            assert rle_to_mask(region["value"]["rle"], 72, 96).shape == (72, 96)
    class_masks = [r for r in results[0]["result"] if r["from_name"] == "label"]
    covered = sum(rle_to_mask(r["value"]["rle"], 72, 96) > 0 for r in class_masks)
    assert np.array_equal(covered, np.ones((72, 96))), "class masks partition the image"


def test_predict_uses_the_config_remembered_from_setup(client, small_image_path: Path) -> None:
    assert client.post("/setup", json={"project": "3.1763719200", "schema": DENSE}).status_code == 200
    response = client.post("/predict", json=predict_body([ls_task(1, str(small_image_path))], label_config=None))
    assert response.status_code == 200 and response.get_json()["results"][0]["result"]


def test_webhook_records_every_event_and_ignores_the_ones_that_do_not_train(settings: Settings) -> None:
    client, _ = make_client(settings)
    event = {"action": "TASKS_CREATED", "tasks": [{"id": 1}], "project": {"id": 3}}
    response = client.post("/webhook", json=event)
    assert response.status_code == 201 and response.get_json() == {"status": "ignored", "action": "TASKS_CREATED"}
    recorded = [json.loads(line) for line in (settings.data_path / "events.jsonl").read_text().splitlines()]
    assert recorded[-1]["event"] == event


def test_a_training_event_only_enqueues_and_the_job_shows_in_jobs(settings: Settings) -> None:
    client, _ = make_client(settings)
    event = {"action": "START_TRAINING", "project": {"id": 3, "label_config": DENSE}}
    response = client.post("/webhook", json=event)
    assert response.status_code == 201
    answer = response.get_json()
    assert answer["status"] == "queued" and answer["coalesced"] is False
    deadline = time.monotonic() + 10
    while (job := client.get("/jobs").get_json()["jobs"][0])["status"] in ("queued", "started"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["id"] == answer["job_id"] and job["project"] == "3"
    assert job["status"] == "failed" and "LABEL_STUDIO_URL is not set" in job["error"], "no Label Studio configured"


def test_annotation_events_of_an_unknown_project_without_config_are_a_404(client) -> None:
    response = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 42}})
    assert response.status_code == 404 and "unknown" in response.get_json()["error"]


def test_versions_lists_v0_first(client) -> None:
    response = client.get("/versions")
    assert response.status_code == 200 and response.get_json() == {"versions": ["v0"]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("post", "/setup", "not json", 400, "must be JSON"),
        ("post", "/setup", [1, 2], 400, "JSON object"),
        ("post", "/setup", {"schema": DENSE}, 400, "missing field 'project'"),
        ("post", "/setup", {"project": "3.1"}, 400, "missing field 'schema'"),
        ("post", "/setup", {"project": "../../etc", "schema": DENSE}, 400, "project must look like"),
        ("post", "/setup", {"project": "3.1", "schema": "<View/>"}, 422, "exactly one Image tag"),
        ("post", "/setup", {"project": "3.1", "schema": 5}, 400, "must be the label config XML"),
        ("post", "/predict", "{", 400, "must be JSON"),
        ("post", "/predict", {"project": "3.1"}, 400, "missing field 'tasks'"),
        ("post", "/predict", {"tasks": {"id": 1}}, 400, "a list of task objects"),
        ("post", "/predict", {"tasks": [1, 2], "label_config": DENSE}, 400, "every item"),
        ("post", "/predict", {"tasks": [], "project": "99.1"}, 404, "unknown to this backend"),
        ("post", "/predict", {"tasks": [], "label_config": "<View/>"}, 422, "exactly one Image tag"),
        ("post", "/predict", {"tasks": [], "label_config": 7}, 400, "label config XML"),
        ("post", "/predict", {"tasks": [], "project": {"id": 1}, "label_config": DENSE}, 400, "project must look"),
        ("post", "/webhook", "nope", 400, "must be JSON"),
        ("post", "/webhook", {"project": {"id": 1}}, 400, "missing field 'action'"),
        ("post", "/webhook", {"action": 12}, 400, "must be the event name"),
        ("post", "/webhook", {"action": "ANNOTATION_CREATED"}, 400, "needs the 'project' object"),
        ("post", "/webhook", {"action": "START_TRAINING", "project": {"id": "x"}}, 400, "project must look like"),
        ("get", "/versions?project=abc", None, 400, "project must look like"),
        ("get", "/nope", None, 404, "not found"),
        ("get", "/predict", None, 405, "not allowed"),
    ],
)
def test_bad_requests_get_a_4xx_json_error(client, method, path, body, status, message) -> None:
    if isinstance(body, str):
        response = getattr(client, method)(path, data=body, content_type="application/json")
    elif body is None:
        response = getattr(client, method)(path)
    else:
        response = getattr(client, method)(path, json=body)
    assert response.status_code == status
    assert message.lower() in response.get_json()["error"].lower()


def test_an_unexpected_failure_is_a_500_json_and_the_app_keeps_serving(settings: Settings, monkeypatch) -> None:
    client, backend = make_client(settings)
    monkeypatch.setattr(backend, "versions", lambda project_id: 1 / 0)
    response = client.get("/versions")
    assert response.status_code == 500 and "ZeroDivisionError" in response.get_json()["error"]
    assert client.get("/health").status_code == 200


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_guards_every_route(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, basic_auth_user="ls", basic_auth_pass="pw")
    client, _ = make_client(settings)
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers=basic("ls", "wrong")).status_code == 401
    assert client.get("/health", headers=basic("ls", "pw")).status_code == 200
    assert client.post("/webhook", json={"action": "X"}).status_code == 401


def test_webhook_secret_header_opens_only_the_webhook(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {}, data_dir=tmp_path, basic_auth_user="ls", basic_auth_pass="pw", webhook_secret="s3cret"
    )
    client, _ = make_client(settings)
    header = {"X-Webhook-Secret": "s3cret"}
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}, headers=header).status_code == 201
    assert client.post("/webhook", json={"action": "X"}, headers={"X-Webhook-Secret": "nope"}).status_code == 401
    assert client.get("/versions", headers=header).status_code == 401


def test_webhook_secret_alone_protects_the_webhook(tmp_path: Path) -> None:
    client, _ = make_client(Settings.from_env({}, data_dir=tmp_path, webhook_secret="s3cret"))
    refused = client.post("/webhook", json={"action": "PROJECT_UPDATED"})
    assert refused.status_code == 401 and "X-Webhook-Secret" in refused.get_json()["error"]
    assert client.post("/webhook", json={"action": "X"}, headers={"X-Webhook-Secret": "nope"}).status_code == 401
    header = {"X-Webhook-Secret": "s3cret"}
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}, headers=header).status_code == 201
    assert client.get("/health").status_code == 200, "without basic auth the other routes stay open"


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("10.1.2.3", True), ("127.0.0.1", False)])
def test_an_open_server_on_a_public_bind_says_so_at_start(tmp_path: Path, caplog, host: str, warned: bool) -> None:
    with caplog.at_level("WARNING", logger="ls_al_backend.server.app"):
        make_client(Settings.from_env({}, data_dir=tmp_path, host=host))
    assert any("BASIC_AUTH_USER" in record.getMessage() for record in caplog.records) == warned
    caplog.clear()
    with caplog.at_level("WARNING", logger="ls_al_backend.server.app"):
        make_client(Settings.from_env({}, data_dir=tmp_path, host=host, basic_auth_user="a", basic_auth_pass="b"))
    assert not caplog.records, "basic auth set: nothing to warn about"


QUERY_MODES = {
    "superpixel_dominant": "polygonlabels",
    "superpixel_multiclass": "polygonlabels",
    "sparse_points": "keypointlabels",
}


@pytest.mark.parametrize("mode", QUERY_MODES)
def test_query_modes_propose_regions_with_an_empty_class_answer(client, small_image_path: Path, mode: str) -> None:
    config = (REPO_ROOT / "label_configs" / f"{mode}.xml").read_text()
    body = predict_body([ls_task(1, str(small_image_path))], label_config=config)
    body["params"]["acquisition"] = {"top_k_regions": 3, "top_n_pixels": 4, "superpixel_size": 16}
    (item,) = client.post("/predict", json=body).get_json()["results"]
    queries = [r for r in item["result"] if r["type"] == QUERY_MODES[mode]]
    choices = [r for r in item["result"] if r["type"] == "choices"]
    assert len(queries) == (4 if mode == "sparse_points" else 3)
    assert [c["id"] for c in choices] == [q["id"] for q in queries]
    assert all(c["value"] == {"choices": []} and c["from_name"] == "region_class" for c in choices)
    scores = [q["score"] for q in queries]
    assert scores == sorted(scores, reverse=True), "most informative first"


def test_heuristics_score_in_zero_one_balanced_entropy_too(client, small_image_path: Path) -> None:
    scores = {}
    for heuristic in ("bald", "balanced_entropy"):
        body = predict_body(
            [ls_task(1, str(small_image_path))],
            label_config=(REPO_ROOT / "label_configs" / "superpixel_dominant.xml").read_text(),
        )
        body["params"]["acquisition"] = {"heuristic": heuristic}
        (item,) = client.post("/predict", json=body).get_json()["results"]
        regions = [r["score"] for r in item["result"] if r["type"] == "polygonlabels"]
        scores[heuristic] = (item["score"], regions)
    for heuristic, (task_score, region_scores) in scores.items():
        assert 0.0 <= task_score <= 1.0 and region_scores, heuristic
        assert all(0.0 <= s <= 1.0 for s in region_scores), heuristic


@pytest.mark.parametrize(
    ("acquisition", "message"),
    [
        ({"heuristic": "astrology"}, "heuristic='astrology' is not one of"),
        ({"top_k_regions": -1}, "top_k_regions"),
        ({"colour": "red"}, "unknown acquisition parameter"),
        ("bald", "must be an object"),
    ],
)
def test_bad_acquisition_params_are_a_400(client, acquisition, message) -> None:
    body = predict_body([], label_config=DENSE)
    body["params"]["acquisition"] = acquisition
    response = client.post("/predict", json=body)
    assert response.status_code == 400 and message in response.get_json()["error"]


def test_every_heuristic_can_drive_predict(client, small_image_path: Path) -> None:
    from ls_al_backend.acquisition.heuristics import HEURISTICS

    for heuristic in HEURISTICS:
        body = predict_body([ls_task(1, str(small_image_path))])
        body["params"]["acquisition"] = {"heuristic": heuristic}
        (item,) = client.post("/predict", json=body).get_json()["results"]
        assert item["result"], heuristic
        overlay = next(r for r in item["result"] if r["from_name"] == "uncertainty")
        assert max(rle_to_mask(overlay["value"]["rle"], 72, 96).ravel()) <= 180


def test_a_large_image_is_analysed_scaled_down_and_its_masks_drawn_at_full_size(
    tmp_path: Path, camvid_image_path: Path
) -> None:
    from PIL import Image

    path = tmp_path / "large.png"
    Image.open(camvid_image_path).convert("RGB").resize((300, 200)).save(path)
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "data", local_image_roots=(str(tmp_path),), mc_samples=2, analysis_max_side=64
    )
    client = make_client(settings)[0]
    config = (REPO_ROOT / "label_configs" / "superpixel_dominant.xml").read_text()
    body = predict_body([ls_task(1, str(path))], label_config=config)
    body["params"]["acquisition"] = {"top_k_regions": 3, "superpixel_size": 8}
    (item,) = client.post("/predict", json=body).get_json()["results"]
    brushes = [r for r in item["result"] if r["type"] == "brushlabels"]
    assert brushes
    for region in brushes:
        assert (region["original_width"], region["original_height"]) == (300, 200)
        assert rle_to_mask(region["value"]["rle"], 200, 300).shape == (200, 300)
    polygons = [r for r in item["result"] if r["type"] == "polygonlabels"]
    assert len(polygons) == 3
    xs = [x for region in polygons for x, _ in region["value"]["points"]]
    assert 0.0 <= min(xs) and max(xs) <= 100.0 and max(xs) - min(xs) > 5.0, "percent of the full image"


def test_a_batch_of_tasks_runs_through_the_network_together_and_answers_in_order(
    settings: Settings, small_image_path: Path, tmp_path: Path, monkeypatch
) -> None:
    from PIL import Image

    other_size = tmp_path / "other.png"
    Image.open(small_image_path).resize((64, 48)).save(other_size)
    client, backend = make_client(settings)
    batches = []
    summaries = backend.mc_summaries
    monkeypatch.setattr(
        backend, "mc_summaries", lambda net, images: batches.append(len(images)) or summaries(net, images)
    )
    tasks = [
        ls_task(1, str(small_image_path)),
        ls_task(2, str(tmp_path / "missing.png")),
        ls_task(3, str(other_size)),
        ls_task(4, str(small_image_path)),
    ]
    results = client.post("/predict", json=predict_body(tasks)).get_json()["results"]
    assert batches == [3], "the three readable images go through the network in one call"
    assert [bool(item["result"]) for item in results] == [True, False, True, True]
    widths = [item["result"][0]["original_width"] for item in results if item["result"]]
    assert widths == [96, 64, 96], "each answer belongs to its task"
