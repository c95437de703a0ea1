"""Checkpoints and model versions per project, and the web process's cache of loaded networks.

Layout of a local folder (the default ``MODEL_DIR``): ``<MODEL_DIR>/<project id>/v<N>.pt``. Version ``v0`` is the
network before any training (ImageNet encoder, untrained head) and has no file. A checkpoint is written to a
temporary file and hard-linked into place, so readers never see a partial one and two writers never share a
number. An ``s3://bucket/prefix`` ``MODEL_DIR`` is :class:`ls_al_backend.model.object_store.ObjectModelStore`:
the same interface, with a manifest and checksum per version (:func:`ls_al_backend.model.object_store.open_model_store`
picks one).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ls_al_backend.model.network import NetworkSpec, SegmentationNet, build_network, fold_batchnorm

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^v(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded (missing, truncated, corrupt, or not a plain payload)."""


def version_name(number: int) -> str:
    return f"v{number}"


@dataclass(frozen=True)
class Checkpoint:
    """A trained network and what it was trained for."""

    version: int
    spec: NetworkSpec
    class_names: tuple[str, ...]
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]


def plain_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` as JSON-like plain values (numpy scalars and arrays to Python numbers and lists, paths to
    strings, tuples to lists), so that checkpoints load with ``torch.load(weights_only=True)``."""

    def plain(value: Any) -> Any:
        if hasattr(value, "tolist"):  # numpy scalars and arrays, tensors
            return value.tolist()
        return str(value)

    return json.loads(json.dumps(metadata, default=plain))


def checkpoint_payload(
    version: int, net: SegmentationNet, class_names: tuple[str, ...], metadata: dict[str, Any]
) -> dict[str, Any]:
    """What a checkpoint file holds: tensors and plain containers only (loadable with ``weights_only=True``)."""
    return {
        "version": version,
        "spec": dataclasses.asdict(net.spec),
        "class_names": list(class_names),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()},
        "metadata": plain_metadata(metadata),
    }


def read_checkpoint(source: Path | BinaryIO, label: str) -> Checkpoint:
    """The checkpoint in a file (a path or an open binary file); :class:`CheckpointError` naming ``label`` when it
    is truncated, corrupt or holds anything but tensors and plain containers."""
    try:
        # tensors and plain containers only: loading a checkpoint never runs code from the file
        payload = torch.load(source, map_location="cpu", weights_only=True)
        return Checkpoint(
            version=int(payload["version"]),
            spec=NetworkSpec(**payload["spec"]),
            class_names=tuple(payload["class_names"]),
            state_dict=payload["state_dict"],
            metadata=payload.get("metadata", {}),
        )
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError, ...
        raise CheckpointError(f"{label} cannot be loaded: {type(error).__name__}: {error}") from error


class VersionStore(ABC):
    """Numbered checkpoints per project (``v1``, ``v2``, ...): what training saves and the web process serves."""

    #: Where the versions live, for messages (a folder, or an ``s3://`` URL).
    location: str

    @abstractmethod
    def versions(self, project_id: str) -> list[int]:
        """Saved version numbers of a project, ascending (``v0`` is implicit and not listed)."""

    @abstractmethod
    def projects(self) -> list[str]:
        """Ids of the projects with a saved version (or a folder / prefix of their own)."""

    @abstractmethod
    def save(
        self, project_id: str, net: SegmentationNet, class_names: tuple[str, ...], metadata: dict[str, Any]
    ) -> int:
        """Publish the next version (complete or not at all) and return its number."""

    @abstractmethod
    def load(self, project_id: str, version: int) -> Checkpoint:
        """The checkpoint of one version; :class:`CheckpointError` when it is missing or unreadable."""

    def latest(self, project_id: str) -> int:
        """Newest saved version number, 0 when the project has none."""
        versions = self.versions(project_id)
        return versions[-1] if versions else 0

    def newest_readable(self, project_id: str, below: int | None = None) -> Checkpoint | None:
        """The newest version (below ``below`` if given) whose checkpoint loads; unreadable ones are logged and
        passed over. None when there is none."""
        for version in reversed(self.versions(project_id)):
            if below is not None and version >= below:
                continue
            try:
                return self.load(project_id, version)
            except CheckpointError as error:
                log.error("project %s: %s; falling back to an older version", project_id, error)
        return None


class ModelStore(VersionStore):
    """Versioned checkpoints in a local folder, one subfolder per project."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.location = str(self.root)

    def project_dir(self, project_id: str) -> Path:
        return self.root / project_id

    def versions(self, project_id: str) -> list[int]:
        """Saved version numbers of a project, ascending (``v0`` is implicit and not listed)."""
        folder = self.project_dir(project_id)
        if not folder.is_dir():
            return []
        found = (_CHECKPOINT.match(path.name) for path in folder.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def projects(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(path.name for path in self.root.iterdir() if path.is_dir())

    def save(
        self, project_id: str, net: SegmentationNet, class_names: tuple[str, ...], metadata: dict[str, Any]
    ) -> int:
        """Write the next version atomically and return its number."""
        folder = self.project_dir(project_id)
        folder.mkdir(parents=True, exist_ok=True)
        version = self.latest(project_id) + 1
        payload = checkpoint_payload(version, net, class_names, metadata)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".v", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(payload, file)
                file.flush()
                os.fsync(file.fileno())
            target = folder / f"v{version}.pt"
            try:  # a hard link is created atomically and never replaces an existing file
                os.link(temporary, target)
            except FileExistsError:
                raise FileExistsError(f"{target} appeared while saving; another trainer saved concurrently") from None
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return version

    def load(self, project_id: str, version: int) -> Checkpoint:
        """The checkpoint of one version; :class:`CheckpointError` when the file is missing, truncated, corrupt
        or holds anything but tensors and plain containers."""
        path = self.project_dir(project_id) / f"v{version}.pt"
        return read_checkpoint(path, str(path))


class ModelCache:
    """Loaded networks of the web process: one per project, reloaded when a newer version appears in the store.
    They serve inference only, as ``prepare(network, project id, version)`` makes them: by default with their
    BatchNorms folded into the convolutions (:func:`fold_batchnorm`), or on another runtime
    (:meth:`ls_al_backend.model.runtimes.ServingRuntime.prepare`)."""

    def __init__(
        self,
        store: VersionStore,
        base_spec: NetworkSpec,
        device: torch.device,
        prepare: Callable[[SegmentationNet, str, int], SegmentationNet] | None = None,
    ):
        self.store = store
        self.base_spec = base_spec
        self.device = device
        self.prepare = prepare or (lambda net, project_id, version: fold_batchnorm(net))
        # project id -> (newest version in the store when built, class names, network, version served)
        self._entries: dict[str, tuple[int, tuple[str, ...], SegmentationNet, int]] = {}
        self._metadata: dict[str, dict[str, Any]] = {}  # project id -> metadata of the version served
        self._lock = threading.Lock()

    def get(self, project_id: str, class_names: tuple[str, ...]) -> tuple[SegmentationNet, int]:
        """The network to serve for a project and its version number (0 = untrained head). Asks the store for its
        newest version on every call: a folder lists it; an object store answers from a listing at most
        ``MODEL_LIST_TTL_S`` old, so a new version is served within that time (plus its download)."""
        latest = self.store.latest(project_id)
        with self._lock:
            cached = self._entries.get(project_id)
            if cached is not None and cached[0] == latest and cached[1] == class_names:
                return cached[2], cached[3]
            net, version, metadata = self._build(project_id, class_names, latest)
            net = self.prepare(net, project_id, version)
            self._entries[project_id] = (latest, class_names, net, version)
            self._metadata[project_id] = metadata
            return net, version

    def metadata(self, project_id: str) -> dict[str, Any]:
        """Metadata of the version :meth:`get` last returned for the project (empty for v0 or before any call)."""
        with self._lock:
            return self._metadata.get(project_id, {})

    def _build(
        self, project_id: str, class_names: tuple[str, ...], latest: int
    ) -> tuple[SegmentationNet, int, dict[str, Any]]:
        checkpoint = self.store.newest_readable(project_id) if latest > 0 else None
        if checkpoint is not None:
            if checkpoint.class_names == class_names:
                with torch.random.fork_rng(devices=[]):  # its random init is overwritten: leave torch's RNG alone
                    net = SegmentationNet(checkpoint.spec)
                net.load_state_dict(checkpoint.state_dict)
                log.info("project %s: serving model %s", project_id, version_name(checkpoint.version))
                return net.to(self.device).eval(), checkpoint.version, checkpoint.metadata
            log.warning(
                "project %s: checkpoint %s was trained for classes %s, the label config has %s; serving v0",
                project_id,
                version_name(checkpoint.version),
                checkpoint.class_names,
                class_names,
            )
        spec = dataclasses.replace(self.base_spec, num_classes=len(class_names))
        net = build_network(spec)
        return net.to(self.device).eval(), 0, {}
