"""Images in cloud storage: a Label Studio project imports its tasks from an S3 source storage on a real SeaweedFS.

Task data then holds ``s3://<bucket>/images/<file>`` (what ``/predict`` receives) or, in the task list that
training and scoring read, ``/tasks/<id>/resolve/?fileuri=<base64>``. Our backend reads both through Label Studio:
with presigned URLs on, Label Studio answers ``303`` to a presigned SeaweedFS URL, which the backend follows without
the token; with them off, Label Studio streams the bytes itself. For each setting: predictions for every task,
an annotation, a training round and pool scoring, with predictions of the new version stored for the S3 tasks.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.e2e.annotations import annotation_config, brush_stroke
from tests.e2e.harness import BackendPool, ConfigTags, RunningBackend, StartError, Studio, TinyImage, wait_until
from tests.e2e.s3_storage import IMAGE_PREFIX, connect_s3_storage, images_bucket
from tests.seaweedfs import SeaweedFS

ROUND_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory, tiny_images: list[TinyImage]) -> Iterator[SeaweedFS]:
    """Two tiny CamVid images in a SeaweedFS bucket."""
    with images_bucket(tmp_path_factory.mktemp("seaweedfs"), tiny_images[:2]) as server:
        yield server


@pytest.fixture(scope="module")
def cloud_backend(backends: BackendPool) -> RunningBackend:
    """One backend (personal access token: the Bearer kind, refreshed on 401) for both storage settings."""
    try:
        return backends.get("personal_access_token")
    except StartError as error:
        pytest.fail(str(error))


@dataclass(frozen=True)
class CloudProject:
    presign: bool
    project: dict[str, Any]
    listed: list[dict[str, Any]]  # the tasks as the task list API gives them, right after the import
    images: dict[int, TinyImage]  # task id -> the image its S3 object holds
    uris: dict[int, str]  # task id -> its s3:// URI


@pytest.fixture(scope="module", params=[True, False], ids=["presign_on", "presign_off"])
def cloud_project(
    request: pytest.FixtureRequest, studio: Studio, bucket: SeaweedFS, tiny_images: list[TinyImage]
) -> CloudProject:
    """A project whose tasks come from the bucket through an S3 source storage (``use_blob_urls``: one task per
    image), with presigned URLs on or off."""
    presign = request.param
    project = studio.create_project(f"S3 images, presign {'on' if presign else 'off'}", annotation_config())
    connect_s3_storage(studio, project["id"], bucket, presign)
    listed = studio.tasks(project["id"])
    by_name = {image.path.name: image for image in tiny_images}
    uris = {
        task["id"]: base64.urlsafe_b64decode(task["data"]["image"].split("fileuri=")[1]).decode() for task in listed
    }
    images = {
        task_id: by_name[uri.removeprefix(f"s3://{bucket.bucket}/{IMAGE_PREFIX}")] for task_id, uri in uris.items()
    }
    return CloudProject(presign, project, listed, images, uris)


def test_label_studio_serves_the_s3_images_through_the_task_endpoints(
    cloud_project: CloudProject, bucket: SeaweedFS, studio: Studio
) -> None:
    """The set-up the backend meets: resolve URLs in the task list, and presign answering as configured."""
    assert len(cloud_project.listed) == 2
    for task in cloud_project.listed:
        url = task["data"]["image"]
        assert url.startswith(f"/tasks/{task['id']}/resolve/?fileuri="), url
        answer = studio.session.get(studio.url + url.replace("/resolve/", "/presign/"), allow_redirects=False)
        if cloud_project.presign:
            assert answer.status_code == 303, answer.text[:300]
            assert answer.headers["Location"].startswith(f"{bucket.endpoint_url}/{bucket.bucket}/{IMAGE_PREFIX}")
        else:
            assert answer.status_code == 200, answer.text[:300]
            assert answer.content == cloud_project.images[task["id"]].path.read_bytes()


def stored_predictions(studio: Studio, project_id: int, model_version: str) -> dict[int, dict[str, Any]]:
    """Task id -> its prediction of ``model_version``."""
    return {
        task["id"]: prediction
        for task in studio.tasks(project_id)
        for prediction in task["predictions"]
        if prediction["model_version"] == model_version
    }


def clear_image_cache(backend: RunningBackend) -> None:
    """Forget the images the backend downloaded, so the next reads go to Label Studio and the storage again."""
    for path in (backend.data_dir / "image-cache").glob("*"):
        path.unlink()


def test_predict_train_and_score_read_the_s3_images(
    cloud_project: CloudProject, cloud_backend: RunningBackend, studio: Studio
) -> None:
    project_id = cloud_project.project["id"]
    studio.add_ml_backend(project_id, cloud_backend.url, title="ls-al-backend (S3)")
    clear_image_cache(cloud_backend)

    # 1. Label Studio's "Retrieve Predictions" sends the tasks with their s3:// URIs to /predict.
    studio.retrieve_predictions(project_id)
    versions = {p["model_version"] for task in studio.tasks(project_id) for p in task["predictions"]}
    assert len(versions) == 1, versions
    predicted = stored_predictions(studio, project_id, versions.pop())
    assert set(predicted) == set(cloud_project.images), cloud_backend.log_tail()
    for task_id, prediction in predicted.items():
        brushes = [item for item in prediction["result"] if item["type"] == "brushlabels"]
        assert brushes, prediction
        image = cloud_project.images[task_id]
        assert {(item["original_width"], item["original_height"]) for item in brushes} == {(image.width, image.height)}
    cached = {path.name for path in (cloud_backend.data_dir / "image-cache").iterdir()}
    assert cached == {hashlib.sha256(uri.encode()).hexdigest() for uri in cloud_project.uris.values()}, (
        "the images are cached under their s3:// URIs, not under a presigned URL"
    )

    # 2. An annotation on one task; its webhook starts a round that trains on it (reading the image by its resolve
    # URL from the task list) and scores the other task.
    clear_image_cache(cloud_backend)
    labelled_id, unlabelled_id = sorted(cloud_project.images)
    stroke = brush_stroke(ConfigTags.parse(cloud_project.project["label_config"]), cloud_project.images[labelled_id])
    studio.post(f"/api/tasks/{labelled_id}/annotations/", json={"result": [stroke], "lead_time": 1.0})

    def round_jobs() -> list[dict[str, Any]]:
        jobs = requests.get(cloud_backend.url + "/jobs", timeout=10).json()["jobs"]
        return [job for job in jobs if job["kind"] == "train" and job["project"] == str(project_id)]

    def round_over() -> bool:
        jobs = round_jobs()
        return bool(jobs) and all(job["status"] in {"finished", "failed"} for job in jobs)

    assert wait_until(round_over, ROUND_TIMEOUT_S, interval_s=1), f"round not over: {round_jobs()}"
    (job,) = round_jobs()
    assert job["status"] == "finished", (job.get("error"), cloud_backend.log_tail())
    version = job["result"]["model_version"]
    assert version != "v0"
    assert "cannot be read" not in cloud_backend.log_tail(400), cloud_backend.log_tail()
    assert "image skipped" not in cloud_backend.log_tail(400), cloud_backend.log_tail()

    # 3. Predictions of the new version are stored for the S3 task that was scored.
    scored = stored_predictions(studio, project_id, version)
    assert unlabelled_id in scored, (scored, job)
    assert isinstance(scored[unlabelled_id]["score"], float)
    assert studio.get(f"/api/projects/{project_id}/")["model_version"] == version
