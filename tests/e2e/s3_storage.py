"""An S3 source storage for Label Studio in the end-to-end tests: a real SeaweedFS bucket holding the task images."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.harness import Studio, TinyImage
from tests.seaweedfs import SeaweedFS

IMAGE_PREFIX = "images/"


@contextlib.contextmanager
def images_bucket(root: Path, images: list[TinyImage]) -> Iterator[SeaweedFS]:
    """A SeaweedFS S3 server in ``root`` whose bucket holds ``images`` under ``images/``."""
    with SeaweedFS(root) as server:
        client = server.client()
        for image in images:
            client.put_object(
                Bucket=server.bucket,
                Key=IMAGE_PREFIX + image.path.name,
                Body=image.path.read_bytes(),
                ContentType="image/png",
            )
        yield server


def connect_s3_storage(studio: Studio, project_id: int, bucket: SeaweedFS, presign: bool) -> None:
    """Add the bucket's ``images/`` as the project's S3 source storage (``use_blob_urls``: one task per image, its
    data an ``s3://`` URI) and import its tasks."""
    storage = studio.post(
        "/api/storages/s3/",
        json={
            "project": project_id,
            "title": "SeaweedFS",
            "bucket": bucket.bucket,
            "prefix": IMAGE_PREFIX,
            "use_blob_urls": True,
            "presign": presign,
            "presign_ttl": 5,
            "aws_access_key_id": bucket.access_key,
            "aws_secret_access_key": bucket.secret_key,
            "region_name": bucket.region,
            "s3_endpoint": bucket.endpoint_url,
        },
    )
    studio.post(f"/api/storages/s3/{storage['id']}/sync")
