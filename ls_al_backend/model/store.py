"""Checkpoints and model versions per project, and the web process's cache of loaded networks.

Layout: ``<MODELS_DIR>/<project id>/v<N>.pt``. Version ``v0`` is the network before any training
(ImageNet encoder, untrained head) and has no file. A checkpoint is written to a temporary file and
renamed into place, so readers never see a partial one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class ModelStore:
    """Versioned checkpoints on disk, one folder per project."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def project_dir(self, project_id: str) -> Path:
        return self.root / project_id

    def versions(self, project_id: str) -> list[int]:
        """Saved version numbers of a project, ascending (``v0`` is implicit and not listed)."""
        folder = self.project_dir(project_id)
        if not folder.is_dir():
            return []
        found = (_CHECKPOINT.match(path.name) for path in folder.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def latest(self, project_id: str) -> int:
        """Newest saved version number, 0 when the project has none."""
        versions = self.versions(project_id)
        return versions[-1] if versions else 0

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
        payload = {
            "version": version,
            "spec": dataclasses.asdict(net.spec),
            "class_names": list(class_names),
            "state_dict": {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()},
            "metadata": plain_metadata(metadata),
        }
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
        try:
            # tensors and plain containers only: loading a checkpoint never runs code from the file
            payload = torch.load(path, map_location="cpu", weights_only=True)
            return Checkpoint(
                version=int(payload["version"]),
                spec=NetworkSpec(**payload["spec"]),
                class_names=tuple(payload["class_names"]),
                state_dict=payload["state_dict"],
                metadata=payload.get("metadata", {}),
            )
        except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError, ...
            raise CheckpointError(f"{path} cannot be loaded: {type(error).__name__}: {error}") from error

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


class ModelCache:
    """Loaded networks of the web process: one per project, reloaded when a newer version appears on disk.
    They serve inference only, with their BatchNorms folded into the convolutions (:func:`fold_batchnorm`)."""

    def __init__(self, store: ModelStore, base_spec: NetworkSpec, device: torch.device):
        self.store = store
        self.base_spec = base_spec
        self.device = device
        # project id -> (newest version on disk when built, class names, network, version served)
        self._entries: dict[str, tuple[int, tuple[str, ...], SegmentationNet, int]] = {}
        self._metadata: dict[str, dict[str, Any]] = {}  # project id -> metadata of the version served
        self._lock = threading.Lock()

    def get(self, project_id: str, class_names: tuple[str, ...]) -> tuple[SegmentationNet, int]:
        """The network to serve for a project and its version number (0 = untrained head)."""
        latest = self.store.latest(project_id)
        with self._lock:
            cached = self._entries.get(project_id)
            if cached is not None and cached[0] == latest and cached[1] == class_names:
                return cached[2], cached[3]
            net, version, metadata = self._build(project_id, class_names, latest)
            net = fold_batchnorm(net)
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
