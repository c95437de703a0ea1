"""The backend's operations without HTTP: every query mode has acquisition defaults, training needs a runner, and
large images are analysed on a bounded grid."""

from __future__ import annotations

import numpy as np
import pytest

from ls_al_backend.acquisition.api import AcquisitionConfig
from ls_al_backend.backend import Backend, analysis_image
from ls_al_backend.config import Settings
from ls_al_backend.modes import QueryMode, parse_label_config, registered
from tests.conftest import LABEL_CONFIGS, REPO_ROOT

DENSE = (REPO_ROOT / "label_configs" / "dense_brush.xml").read_text()


def test_every_query_mode_and_shipped_config_has_valid_acquisition_defaults(settings: Settings) -> None:
    assert {handler.name for handler in registered()} >= set(QueryMode)
    backend = Backend(settings)
    for handler in registered():
        assert AcquisitionConfig.from_mapping(handler.acquisition_defaults), handler.name
    for path in LABEL_CONFIGS:
        assert backend.acquisition_config(parse_label_config(path.read_text())), path.name


def test_a_training_event_without_a_runner_is_a_clear_error(settings: Settings) -> None:
    backend = Backend(settings)
    with pytest.raises(RuntimeError, match="no job runner"):
        backend.handle_event({"action": "START_TRAINING", "project": {"id": 3, "label_config": DENSE}})
    assert (settings.data_path / "events.jsonl").exists(), "the event is recorded all the same"


def test_the_analysis_grid_scales_large_images_down_and_leaves_small_ones_alone() -> None:
    small = np.zeros((90, 120, 3), np.uint8)
    assert analysis_image(small, 2048) is small
    large = np.full((3000, 4000, 3), 200, np.uint8)
    analysed = analysis_image(large, 2048)
    assert analysed.shape == (1536, 2048, 3) and analysed.dtype == np.uint8 and int(analysed.mean()) == 200
