"""Real ground truth for the simulated annotators (four CamVid train images at 64x48 with their masks), and the
simulation's tiny pool (``data``) for a simulated round of a toy mode."""

from __future__ import annotations

import pytest

from ls_al_backend.simulation import Example, load_split
from tests.simulation.conftest import _copy_split, data  # noqa: F401 (data: a fixture shared with tests/)


@pytest.fixture(scope="session")
def examples(tmp_path_factory) -> list[Example]:
    return load_split(_copy_split("train", 4, tmp_path_factory.mktemp("camvid-modes") / "pool"), resolution=64)
