"""docker-compose.yml cannot be started here (no Docker engine), so its wiring is checked statically: every variable
the backend's services set is a setting the backend reads (or one boto3 reads), the web process and the workers
share no volume, and each worker's queue roles exist."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import yaml

from ls_al_backend.config import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
BACKEND_SERVICES = ("backend", "training-worker", "scoring-worker")
#: Read by boto3 for MODEL_DIR=s3://..., not by Settings.
BOTO3_VARIABLES = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_variable_is_a_known_setting():
    known = {field.name.upper() for field in fields(Settings)} | BOTO3_VARIABLES
    for name in BACKEND_SERVICES:
        unknown = set(services()[name]["environment"]) - known
        assert not unknown, f"{name} sets variables the backend does not read: {sorted(unknown)}"


def test_no_volume_is_shared_between_backend_and_workers():
    owners: dict[str, str] = {}
    for name in BACKEND_SERVICES:
        for volume in services()[name].get("volumes", []):
            source = volume.split(":")[0]
            assert source not in owners, f"{name} and {owners.get(source)} share the volume {source}"
            owners[source] = name


def test_model_versions_live_in_the_object_store():
    for name in BACKEND_SERVICES:
        environment = services()[name]["environment"]
        assert environment["MODEL_DIR"].startswith("s3://"), name
        assert environment["AWS_ENDPOINT_URL"].startswith("http://object-store:"), name


def test_workers_take_existing_queue_roles():
    from ls_al_backend.jobs.rq_jobs import QUEUE_ROLES

    roles_seen = set()
    for name in ("training-worker", "scoring-worker"):
        command = services()[name]["command"]
        roles = command[command.index("--queues") + 1].split(",")
        assert set(roles) <= set(QUEUE_ROLES), f"{name}: {roles} not in {QUEUE_ROLES}"
        roles_seen.update(roles)
    assert roles_seen == set(QUEUE_ROLES)


def test_the_backend_key_is_an_identity_of_the_object_store():
    compose = yaml.safe_load(COMPOSE.read_text())
    identities = json.loads(compose["configs"]["s3-identities"]["content"])["identities"]
    keys = {(item["accessKey"], item["secretKey"]) for identity in identities for item in identity["credentials"]}
    store = compose["services"]["object-store"]
    assert any("-s3.config=" + config["target"] in store["command"] for config in store["configs"])
    for name in BACKEND_SERVICES:
        environment = compose["services"][name]["environment"]
        assert (environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]) in keys, name
