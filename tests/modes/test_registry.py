"""The query modes by name and by label config; a new mode is one file plus its registration (the toy mode)."""

from __future__ import annotations

import numpy as np
import pytest

from ls_al_backend.backend import Backend
from ls_al_backend.config import Settings
from ls_al_backend.labeling.config import UnsupportedLabelConfig
from ls_al_backend.modes import (
    QueryMode,
    annotation_to_target,
    handler_for,
    parse_label_config,
    register,
    registered,
    unregister,
)
from ls_al_backend.modes.superpixel_dominant import SuperpixelDominant
from ls_al_backend.simulation import run_simulation
from tests.conftest import REPO_ROOT
from tests.modes import toy_box
from tests.simulation.conftest import tiny_config

CONFIGS = {path.stem: parse_label_config(path.read_text()) for path in (REPO_ROOT / "label_configs").glob("*.xml")}


def answered(results: list[dict], choices: list[str]) -> list[dict]:
    """The annotator's answer: the query regions with their per-region choices filled in."""
    return [dict(r, value={**r["value"], "choices": choices}) if r["type"] == "choices" else r for r in results]


def test_every_built_in_mode_is_registered_and_serves_its_shipped_config() -> None:
    assert sorted(handler.name for handler in registered()) == sorted(QueryMode)
    for mode in QueryMode:
        assert CONFIGS[mode.value].handler is handler_for(mode)


def test_an_unknown_mode_and_a_second_registration_are_refused() -> None:
    with pytest.raises(ValueError, match="'boxes' is not one of: dense_brush, "):
        handler_for("boxes")
    with pytest.raises(ValueError, match="registered already"):
        register(SuperpixelDominant())
    twin = type("Twin", (SuperpixelDominant,), {"name": "twin"})
    with pytest.raises(ValueError, match="same label configs as 'superpixel_dominant'"):
        register(twin())
    assert "twin" not in {handler.name for handler in registered()}


def test_a_config_whose_query_tag_no_mode_draws_is_refused_with_the_tags_that_modes_draw() -> None:
    # RectangleLabels: no mode draws boxes until one is registered
    with pytest.raises(UnsupportedLabelConfig, match="needs a query tag to attach to: one of KeyPointLabels, Polygon"):
        parse_label_config(toy_box.LABEL_CONFIG)


@pytest.fixture
def toy_mode():
    handler = register(toy_box.SuperpixelBox())
    yield handler
    unregister(handler.name)


def test_a_toy_mode_in_one_file_runs_through_predict_annotation_target_and_a_simulated_round(
    toy_mode,
    settings: Settings,
    small_image_path,
    data,
    tmp_path,
) -> None:
    config = parse_label_config(toy_box.LABEL_CONFIG)
    assert config.mode == "superpixel_box" and config.query_type == "rectanglelabels"

    backend = Backend(settings)
    assert backend.acquisition_config(config).top_k_regions == 3  # the mode's acquisition defaults
    (prediction,) = backend.predict([{"id": 1, "data": {"image": str(small_image_path)}}], config, project_id="7")
    boxes = [r for r in prediction.result if r["type"] == "rectanglelabels"]
    answers = [r for r in prediction.result if r["type"] == "choices"]
    assert len(boxes) == len(answers) == 3 and [a["id"] for a in answers] == [b["id"] for b in boxes]
    assert 0.0 < prediction.score <= 1.0

    target = annotation_to_target(answered(prediction.result, ["Road"]), config, 72, 96)
    road = config.class_names.index("Road")
    assert target.labelled_pixels > 0 and set(np.unique(target.labels).tolist()) <= {-1, road}

    rows = run_simulation(tiny_config(data, tmp_path / "run", "superpixel_box", rounds=1, budget=6, initial_budget=6))
    assert rows[0]["clicks_cumulative"] == 6 and rows[0]["labelled_pixels"] > 0 and 0.0 <= rows[0]["miou"] <= 1.0
