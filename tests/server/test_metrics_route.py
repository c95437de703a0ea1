"""``/metrics``: Prometheus text that the official parser reads, counting exactly the traffic the app answered."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue

from ls_al_backend.config import Settings
from tests.conftest import REPO_ROOT
from tests.server.test_app import DENSE, basic, ls_task, make_client, predict_body

SUPERPIXELS = (REPO_ROOT / "label_configs" / "superpixel_dominant.xml").read_text()
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
FAMILIES = {
    "ls_al_http_requests",
    "ls_al_http_request_duration_seconds",
    "ls_al_predictions_served",
    "ls_al_query_regions_served",
    "ls_al_jobs",
    "ls_al_training_round_duration_seconds",
    "ls_al_scored_images",
    "ls_al_scoring_seconds",
    "ls_al_model_version_served",
    "ls_al_image_fetch_failures",
}


def scrape(client, **options) -> dict[tuple[str, frozenset], float]:
    """Every sample of ``/metrics``, keyed by (sample name, labels); asserts the answer parses."""
    response = client.get("/metrics", **options)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def families(client) -> set[str]:
    return {family.name for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}


def change(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_the_predict_and_webhook_traffic_exactly(settings: Settings, small_image_path: Path) -> None:
    client, _ = make_client(settings)
    assert FAMILIES <= families(client)
    before = scrape(client)

    body = predict_body([ls_task(1, str(small_image_path))], label_config=SUPERPIXELS)
    body["params"]["acquisition"] = {"top_k_regions": 3, "superpixel_size": 16}
    for _ in range(2):
        assert client.post("/predict", json=body).status_code == 200
    unreadable = predict_body([ls_task(2, str(small_image_path)), ls_task(3, "/nowhere/missing.png")], SUPERPIXELS)
    unreadable["params"]["acquisition"] = {"top_k_regions": 3, "superpixel_size": 16}
    assert client.post("/predict", json=unreadable).status_code == 200
    assert client.post("/predict", json={"tasks": "no"}).status_code == 400
    for _ in range(2):
        ignored = client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 3}})
        assert ignored.status_code == 201
    assert client.get("/no-such-route").status_code == 404
    after = scrape(client)

    requests = "ls_al_http_requests_total"
    assert change(before, after, requests, route="/predict", method="POST", status="200") == 3
    assert change(before, after, requests, route="/predict", method="POST", status="400") == 1
    assert change(before, after, requests, route="/webhook", method="POST", status="201") == 2
    assert change(before, after, requests, route="unmatched", method="GET", status="404") == 1
    assert change(before, after, requests, route="/metrics", method="GET", status="200") == 1, "the first scrape"
    latency = "ls_al_http_request_duration_seconds"
    assert change(before, after, f"{latency}_count", route="/predict", method="POST") == 4
    assert change(before, after, f"{latency}_sum", route="/predict", method="POST") > 0
    assert change(before, after, f"{latency}_bucket", route="/predict", method="POST", le="+Inf") == 4
    assert change(before, after, "ls_al_predictions_served_total") == 3, "the task whose image is missing is not"
    assert change(before, after, "ls_al_query_regions_served_total") == 9, "three regions per prediction"
    assert after[("ls_al_model_version_served", frozenset({"project": "3"}.items()))] == 0, "the untrained v0"
    failures = [key for key in after if key[0] == "ls_al_image_fetch_failures_total"]
    assert sum(after[key] - before.get(key, 0.0) for key in failures) == 1, "the missing image, under its cause"


def test_a_training_request_counts_its_job_from_enqueued_to_failed(settings: Settings) -> None:
    client, _ = make_client(settings)
    before = scrape(client)
    event = {"action": "START_TRAINING", "project": {"id": 3, "label_config": DENSE}}
    assert client.post("/webhook", json=event).status_code == 201
    deadline = time.monotonic() + 10
    while client.get("/jobs").get_json()["jobs"][0]["status"] in ("queued", "started"):  # no Label Studio: fails
        assert time.monotonic() < deadline
        time.sleep(0.05)
    after = scrape(client)
    for state in ("enqueued", "started", "failed"):
        assert change(before, after, "ls_al_jobs_total", kind="train", state=state) == 1, state
    assert change(before, after, "ls_al_jobs_total", kind="train", state="finished") == 0


def test_metrics_follow_basic_auth_like_every_route(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, basic_auth_user="ls", basic_auth_pass="pw")
    client, _ = make_client(settings)
    assert client.get("/metrics").status_code == 401
    assert scrape(client, headers=basic("ls", "pw"))


@pytest.fixture
def redis_settings(settings: Settings):
    connection = Redis.from_url(REDIS_URL)
    connection.ping()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield Settings.from_env(
        {},
        data_dir=settings.data_dir,
        redis_url=REDIS_URL,
        training_queue=f"{prefix}-training",
        scoring_queue=f"{prefix}-scoring",
    )
    for name in (f"{prefix}-training", f"{prefix}-scoring"):
        Queue(name, connection=connection).empty()
        connection.delete(f"lsal:queue:{name}:jobs")
    for key in connection.scan_iter("lsal:3:*"):
        connection.delete(key)


def test_with_redis_the_queue_lengths_are_read_at_scrape_time(redis_settings: Settings) -> None:
    client, _ = make_client(redis_settings)
    training, scoring = redis_settings.training_queue, redis_settings.scoring_queue
    before = scrape(client)
    assert before[("ls_al_queue_length", frozenset({"queue": training}.items()))] == 0
    event = {"action": "START_TRAINING", "project": {"id": 3, "label_config": DENSE}}
    assert client.post("/webhook", json=event).status_code == 201  # no worker runs: the job waits
    after = scrape(client)
    assert after[("ls_al_redis_up", frozenset())] == 1
    assert after[("ls_al_queue_length", frozenset({"queue": training}.items()))] == 1
    assert after[("ls_al_queue_length", frozenset({"queue": scoring}.items()))] == 0
    assert after[("ls_al_queue_jobs", frozenset({"queue": training, "state": "started"}.items()))] == 0
    assert change(before, after, "ls_al_jobs_total", kind="train", state="enqueued") == 1
