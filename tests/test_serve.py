"""The backend started the way the README says, called over HTTP with a real CamVid image."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from label_studio_sdk.converter.brush import decode_rle
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from ls_al_backend.modes import parse_label_config
from tests.conftest import LABEL_CONFIGS, REPO_ROOT

REQUESTS = "ls_al_http_requests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, camvid_image_path: Path):
    port = free_port()
    data_dir = tmp_path_factory.mktemp("serve-data")
    metrics_dir = data_dir / "metrics"  # gunicorn in prometheus-client's multiprocess mode
    metrics_dir.mkdir()
    stale = MmapedDict(str(metrics_dir / "counter_1.db"))  # what an earlier run left: serve deletes it
    labels = ["route", "method", "status"]
    stale.write_value(mmap_key(REQUESTS, f"{REQUESTS}_total", labels, ["/stale", "GET", "200"], "old"), 5.0, 0.0)
    stale.close()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "DATA_DIR": str(data_dir),
        "LOCAL_IMAGE_ROOTS": str(camvid_image_path.parent),
        "MC_SAMPLES": "4",
        "CLASS_MASKS": "on",  # decodable masks of every layer, the untrained v0's too
        "UNCERTAINTY_OVERLAY": "on",
    }
    executable = Path(sys.executable).parent / "ls-al-backend"
    log_path = data_dir / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("config_path", LABEL_CONFIGS, ids=lambda path: path.stem)
def test_predict_over_http_returns_decodable_masks_of_the_image_size(server, camvid_image_path, config_path) -> None:
    schema = config_path.read_text()
    project = f"{abs(hash(config_path.stem)) % 1000}.1763719200"
    setup = requests.post(f"{server}/setup", json={"project": project, "schema": schema}, timeout=5)
    assert setup.status_code == 200, setup.text
    tasks = [{"id": 1, "data": {"image": str(camvid_image_path)}}, {"id": 2, "data": {"image": "/etc/passwd"}}]
    response = requests.post(f"{server}/predict", json={"tasks": tasks, "project": project}, timeout=100)
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert second["result"] == []
    brushes = [region for region in first["result"] if region["type"] == "brushlabels"]
    config = parse_label_config(schema)
    assert {region["from_name"] for region in brushes} == {config.class_brush.name, config.overlay.name}
    for region in brushes:
        assert (region["original_width"], region["original_height"]) == (480, 360)
        decoded = decode_rle(region["value"]["rle"])
        assert decoded.size == 480 * 360 * 4
        assert np.any(decoded.reshape(360, 480, 4)[:, :, 3] > 0), "no brush region is empty"
    json.dumps(first)  # the whole result is plain JSON


def test_bad_json_over_http_is_a_400_and_the_server_keeps_serving(server) -> None:
    response = requests.post(f"{server}/predict", data=b"\xff{", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]
    assert requests.get(f"{server}/health", timeout=2).status_code == 200


def test_metrics_over_http_add_up_the_gunicorn_processes_and_count_each_request(server) -> None:
    def health_requests() -> float:
        text = requests.get(f"{server}/metrics", timeout=10).text
        labels = {"route": "/health", "method": "GET", "status": "200"}
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == f"{REQUESTS}_total" and sample.labels == labels
        )

    before = health_requests()
    assert before >= 1, "the fixture's wait for /health"
    assert '"/stale"' not in requests.get(f"{server}/metrics", timeout=10).text, "an earlier run's files are gone"
    for _ in range(3):
        assert requests.get(f"{server}/health", timeout=10).status_code == 200
    assert health_requests() - before == 3
