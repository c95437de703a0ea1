"""Per-project state kept by the backend: the label config Label Studio sent, on disk so restarts keep it."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ls_al_backend.modes import LabelConfig, parse_label_config

_PROJECT_UID = re.compile(r"^(\d+)(?:\.\d+)?$")


class InvalidProject(ValueError):
    """A project reference that is not a Label Studio project id."""


def project_id_from(value: object) -> str:
    """Project id from Label Studio's ``"<id>.<created timestamp>"``, a plain id, or an int."""
    if isinstance(value, bool):
        raise InvalidProject(f"not a project id: {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        match = _PROJECT_UID.match(value.strip())
        if match:
            return match.group(1)
    raise InvalidProject(f"project must look like '<id>' or '<id>.<timestamp>', got {value!r}")


class ProjectStore:
    """Label configs per project, under ``<DATA_DIR>/projects/<id>/label_config.xml``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._parsed: dict[str, tuple[str, LabelConfig]] = {}

    def save_label_config(self, project_id: str, xml: str) -> LabelConfig:
        """Parse (raising ``UnsupportedLabelConfig``) and remember a project's label config."""
        config = parse_label_config(xml)
        folder = self.root / project_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "label_config.xml"
        if not path.exists() or path.read_text() != xml:
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=".label_config-")
            with os.fdopen(handle, "w") as file:
                file.write(xml)
            os.replace(temporary, path)
        self._parsed[project_id] = (xml, config)
        return config

    def label_config_xml(self, project_id: str) -> str | None:
        path = self.root / project_id / "label_config.xml"
        return path.read_text() if path.exists() else None

    def label_config(self, project_id: str) -> LabelConfig | None:
        """The remembered config, or None for a project this backend has never been set up for."""
        xml = self.label_config_xml(project_id)
        if xml is None:
            return None
        cached = self._parsed.get(project_id)
        if cached is None or cached[0] != xml:
            cached = (xml, parse_label_config(xml))
            self._parsed[project_id] = cached
        return cached[1]
