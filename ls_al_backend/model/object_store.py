"""Model versions in an S3-compatible object store (``MODEL_DIR=s3://bucket/prefix``), and the store factory.

Layout under ``s3://<bucket>/<prefix>/<project id>/``:

- ``checkpoints/v<N>-<random>.pt``: the checkpoint (the bytes a local store would keep in ``v<N>.pt``);
- ``manifests/v<N>.json``: ``{"version", "checkpoint" (its key), "sha256", "size", "created_at", "writer"}``.

A version is published in two steps: the checkpoint object first, then its manifest, written with a conditional
put (``If-None-Match: *``) that the store accepts for one writer only. Readers list manifests, never checkpoints,
so a checkpoint whose manifest was never written (its writer died, the store went down) stays invisible; a
downloaded checkpoint whose SHA-256 or size differs from its manifest's is refused (:class:`CheckpointError`) and
:meth:`VersionStore.newest_readable` serves the version before it. Two writers that pick the same number: the
loser's manifest put fails, it deletes its checkpoint object and tries the next number.

Endpoint, region and credentials come from boto3's usual sources (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``,
``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, instance roles).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ls_al_backend.model.network import SegmentationNet
from ls_al_backend.model.store import (
    Checkpoint,
    CheckpointError,
    ModelStore,
    VersionStore,
    checkpoint_payload,
    read_checkpoint,
    version_name,
)
from ls_al_backend.storage import FolderBudget

log = logging.getLogger(__name__)

_MANIFEST = re.compile(r"^v(\d+)\.json$")
#: Tries at publishing a version when other writers keep taking the number first.
SAVE_ATTEMPTS = 5
#: Error codes of a conditional put that lost: the key exists (412), or a concurrent put on it is in flight (409).
_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class StoreUnavailable(RuntimeError):
    """The object store cannot be reached or refuses the request (connection, credentials, 5xx): not a fault of
    one version, so no older version is served in its place."""


class VersionConflict(RuntimeError):
    """A version could not be published: other writers took every number tried, or the store does not honour
    conditional writes (``If-None-Match``)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")`` (prefix empty or ending in ``/``)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket: expected s3://bucket or s3://bucket/prefix")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def open_model_store(
    location: str | Path, cache_dir: Path, cache_max_bytes: int, list_ttl_s: float, client: Any = None
) -> VersionStore:
    """The store of ``MODEL_DIR``: an :class:`ObjectModelStore` for ``s3://...``, else a local :class:`ModelStore`.
    ``cache_dir`` / ``cache_max_bytes``: the local read cache of downloaded checkpoints; ``list_ttl_s``: how long a
    listing of the bucket is reused (both unused by a local folder)."""
    if str(location).startswith("s3://"):
        return ObjectModelStore(str(location), cache_dir, cache_max_bytes, list_ttl_s, client)
    return ModelStore(Path(location))


def s3_client() -> Any:
    """A boto3 S3 client configured from the environment (endpoint, region, credentials, retries)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("s3", config=Config(connect_timeout=10, read_timeout=120))


@dataclass(frozen=True)
class Manifest:
    """What makes a version visible: where its checkpoint is and what its bytes hash to."""

    version: int
    checkpoint: str  # object key in the bucket
    sha256: str  # hex digest of the checkpoint object's bytes
    size: int  # bytes
    created_at: str  # ISO 8601, UTC
    writer: str  # host:pid:token of the process that published it

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, label: str) -> Manifest:
        try:
            values = json.loads(data)
            return cls(
                version=int(values["version"]),
                checkpoint=str(values["checkpoint"]),
                sha256=str(values["sha256"]),
                size=int(values["size"]),
                created_at=str(values["created_at"]),
                writer=str(values["writer"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{label}: unreadable manifest ({type(error).__name__}: {error})") from error


class CheckpointCache:
    """Downloaded checkpoints on local disk, named by their SHA-256, kept under a size limit (least recently used
    go first, :class:`FolderBudget`). Every read verifies the bytes against the manifest's checksum."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = Path(folder)
        self.budget = FolderBudget(self.folder, max_bytes)

    def get(self, manifest: Manifest, download: Callable[[], bytes], label: str) -> bytes:
        """The checkpoint's bytes: from the cache if a copy with the right checksum is there, else ``download()``ed,
        verified and cached. :class:`CheckpointError` when the downloaded bytes do not match the manifest."""
        path = self.folder / f"{manifest.sha256}.pt"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        if data is not None:
            if _matches(data, manifest):
                FolderBudget.used(path)
                return data
            log.warning("%s: the cached copy %s is damaged; downloading it again", label, path)
            path.unlink(missing_ok=True)
        data = download()
        if not _matches(data, manifest):
            raise CheckpointError(
                f"{label}: checksum mismatch, refused: the manifest says sha256 {manifest.sha256} ({manifest.size} "
                f"bytes), the object {manifest.checkpoint} has sha256 {_sha256(data)} ({len(data)} bytes)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{manifest.sha256}.{uuid.uuid4().hex}.tmp"  # a dot: FolderBudget skips it
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        self.budget.added(len(data))
        return data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _matches(data: bytes, manifest: Manifest) -> bool:
    return len(data) == manifest.size and _sha256(data) == manifest.sha256


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class ObjectModelStore(VersionStore):
    """Versions of every project under one ``s3://bucket/prefix`` (see the module docstring for the layout)."""

    def __init__(
        self,
        url: str,
        cache_dir: Path,
        cache_max_bytes: int,
        list_ttl_s: float,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.bucket, self.prefix = parse_s3_url(url)
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.cache = CheckpointCache(cache_dir, cache_max_bytes)
        self.list_ttl_s = list_ttl_s
        self._client = client
        self._clock = clock  # seconds, for the listing's age
        self._listings: dict[str, tuple[float, list[int]]] = {}  # project -> (monotonic time listed, versions)
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:  # made on first use: a forked worker never shares its parent's connections
            self._client = s3_client()
        return self._client

    def _key(self, project_id: str, *parts: str) -> str:
        return f"{self.prefix}{project_id}/" + "/".join(parts)

    # --- reading ---

    def versions(self, project_id: str) -> list[int]:
        """Published version numbers (those with a manifest), ascending, from a listing at most ``list_ttl_s``
        old. When the store cannot be listed, the previous listing is kept (logged) if there is one, so the web
        process goes on serving; otherwise :class:`StoreUnavailable`."""
        now = self._clock()
        with self._lock:
            cached = self._listings.get(project_id)
        if cached is not None and now - cached[0] < self.list_ttl_s:
            return list(cached[1])
        try:
            versions = self._list_versions(project_id)
        except StoreUnavailable as error:
            if cached is None:
                raise
            log.warning("project %s: %s; going on with the listing of %.0f s ago", project_id, error, now - cached[0])
            versions = cached[1]
        with self._lock:
            self._listings[project_id] = (now, versions)
        return list(versions)

    def _list_versions(self, project_id: str) -> list[int]:
        """A fresh listing of the project's manifests."""
        prefix = self._key(project_id, "manifests/")
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    match = _MANIFEST.match(item["Key"][len(prefix) :])
                    if match:
                        found.append(int(match.group(1)))
        except Exception as error:  # botocore's connection errors and ClientError
            if _error_code(error) == "NoSuchBucket":  # nothing saved yet: serve v0; the first save names the problem
                log.warning("%s: the bucket does not exist (yet); no version to serve", self.location)
                return []
            raise StoreUnavailable(f"listing {self.location} failed: {error}") from error
        return sorted(found)

    def projects(self) -> list[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
            )
            names = [item["Prefix"] for page in pages for item in page.get("CommonPrefixes", [])]
        except Exception as error:
            raise StoreUnavailable(f"listing {self.location} failed: {error}") from error
        return sorted(name[len(self.prefix) :].rstrip("/") for name in names)

    def load(self, project_id: str, version: int) -> Checkpoint:
        """The checkpoint of a published version, verified against its manifest's checksum (from the local cache
        when a verified copy is there). :class:`CheckpointError` when the manifest or the object is missing,
        unreadable or does not match; :class:`StoreUnavailable` when the store cannot be reached."""
        label = f"{self.location}/{project_id} {version_name(version)}"
        manifest = Manifest.from_json(self._get(self._key(project_id, "manifests", f"v{version}.json"), label), label)
        if manifest.version != version:
            raise CheckpointError(f"{label}: its manifest names version {manifest.version}")
        data = self.cache.get(manifest, lambda: self._get(manifest.checkpoint, label), label)
        checkpoint = read_checkpoint(io.BytesIO(data), label)
        if checkpoint.version != version:
            raise CheckpointError(f"{label}: the checkpoint holds version {checkpoint.version}")
        return checkpoint

    def _get(self, key: str, label: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as error:
            if _error_code(error) in {"NoSuchKey", "404"}:
                raise CheckpointError(f"{label}: s3://{self.bucket}/{key} is missing") from error
            raise StoreUnavailable(f"{label}: reading s3://{self.bucket}/{key} failed: {error}") from error

    # --- writing ---

    def save(
        self, project_id: str, net: SegmentationNet, class_names: tuple[str, ...], metadata: dict[str, Any]
    ) -> int:
        """Publish the next version: checkpoint object, then manifest (conditional put). Returns its number.
        :class:`StoreUnavailable` when the store fails midway (nothing is visible then: the manifest was not
        written); :class:`VersionConflict` after :data:`SAVE_ATTEMPTS` numbers taken by other writers."""
        writer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        tried = []
        for _ in range(SAVE_ATTEMPTS):
            try:
                version = max(self._list_versions(project_id), default=0) + 1
            except StoreUnavailable as error:
                raise StoreUnavailable(f"project {project_id}: no version was saved: {error}") from error
            tried.append(version)
            if self._publish(project_id, version, net, class_names, metadata, writer):
                with self._lock:
                    self._listings.pop(project_id, None)
                return version
        raise VersionConflict(
            f"project {project_id}: versions {tried} were each taken by another writer while saving to "
            f"{self.location}; no version was saved"
        )

    def _publish(
        self,
        project_id: str,
        version: int,
        net: SegmentationNet,
        class_names: tuple[str, ...],
        metadata: dict[str, Any],
        writer: str,
    ) -> bool:
        """Upload version ``version`` and claim its manifest key; False when another writer holds it already."""
        buffer = io.BytesIO()
        torch.save(checkpoint_payload(version, net, class_names, metadata), buffer)
        data = buffer.getvalue()
        checkpoint_key = self._key(project_id, "checkpoints", f"v{version}-{uuid.uuid4().hex[:12]}.pt")
        manifest_key = self._key(project_id, "manifests", f"v{version}.json")
        manifest = Manifest(
            version, checkpoint_key, _sha256(data), len(data), datetime.now(UTC).isoformat(timespec="seconds"), writer
        )
        label = f"{self.location}/{project_id} {version_name(version)}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=checkpoint_key, Body=data)
            self.client.put_object(
                Bucket=self.bucket,
                Key=manifest_key,
                Body=manifest.to_json(),
                ContentType="application/json",
                IfNoneMatch="*",  # create only: exactly one writer publishes each number
            )
        except Exception as error:
            if _error_code(error) in _LOST_RACE:
                self._delete_quietly(checkpoint_key)
                log.warning("%s was published by another writer first; trying the next number", label)
                return False
            # The checkpoint object may stay behind: no manifest names it, so no reader sees it. (It is not deleted
            # here: if the manifest put did land and only its answer was lost, the version must keep its object.)
            raise StoreUnavailable(f"saving {label} failed: {error}; no new version is visible") from error
        published = Manifest.from_json(self._get(manifest_key, label), label)
        if published.writer != writer:
            raise VersionConflict(
                f"{label}: the manifest holds writer {published.writer}, not this one ({writer}): the store does not "
                "honour conditional writes (If-None-Match), so two writers can publish the same number"
            )
        log.info("published %s (%d bytes, sha256 %s)", label, len(data), manifest.sha256[:12])
        return True

    def _delete_quietly(self, key: str) -> None:
        """Remove an object that no manifest names (best effort: an orphan is invisible to readers anyway)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            log.warning("could not delete the unpublished checkpoint s3://%s/%s: %s", self.bucket, key, error)
