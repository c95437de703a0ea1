"""Project state: Label Studio's project references, and label configs remembered on disk across restarts."""

from __future__ import annotations

import pytest

from ls_al_backend.labeling.config import UnsupportedLabelConfig
from ls_al_backend.projects import InvalidProject, ProjectStore, project_id_from
from tests.conftest import REPO_ROOT

DENSE = (REPO_ROOT / "label_configs" / "dense_brush.xml").read_text()


@pytest.mark.parametrize(("value", "expected"), [("3.1763719200", "3"), ("12", "12"), (7, "7"), (" 4.5 ", "4")])
def test_project_references_become_the_plain_id(value: object, expected: str) -> None:
    assert project_id_from(value) == expected


@pytest.mark.parametrize("value", ["../../etc", "3.x", "", True, None, 3.5, {"id": 1}])
def test_anything_else_is_an_invalid_project(value: object) -> None:
    with pytest.raises(InvalidProject, match="project must look like|not a project id"):
        project_id_from(value)


def test_a_saved_config_survives_a_new_store_and_a_bad_one_is_refused_without_replacing_it(tmp_path) -> None:
    store = ProjectStore(tmp_path)
    assert store.label_config("3") is None and store.label_config_xml("3") is None
    config = store.save_label_config("3", DENSE)
    assert ProjectStore(tmp_path).label_config("3") == config, "read back from disk after a restart"
    with pytest.raises(UnsupportedLabelConfig):
        store.save_label_config("3", "<View/>")
    assert store.label_config_xml("3") == DENSE
    assert not [path for path in (tmp_path / "3").iterdir() if path.name.startswith(".")], "no temporary file left"
