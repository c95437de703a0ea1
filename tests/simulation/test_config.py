"""Simulation settings: validated, and presets fill what the options leave open."""

from __future__ import annotations

import pytest

from ls_al_backend.simulation import (
    PRESETS,
    SimulationConfig,
    config_from_preset,
)
from tests.simulation.conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_config_is_validated(data, tmp_path):
    with pytest.raises(ValueError, match="budget_unit"):
        tiny_config(data, tmp_path, budget_unit="seconds")
    with pytest.raises(ValueError, match="query_mode"):
        tiny_config(data, tmp_path, query_mode="boxes", budget=1, initial_budget=1)
    with pytest.raises(ValueError, match="heuristic"):
        tiny_config(data, tmp_path, acquisition={"heuristic": "nope"})
    with pytest.raises(ValueError, match="diversity"):
        tiny_config(data, tmp_path, acquisition={"diversity": "kcenter"})
    with pytest.raises(ValueError, match="final_epochs"):
        tiny_config(data, tmp_path, final_epochs=0)
    with pytest.raises(ValueError, match="final_min_steps"):
        tiny_config(data, tmp_path, final_epochs=1, final_min_steps=-1)
    with pytest.raises(ValueError, match="outline_resolution prices whole-image outlines"):
        tiny_config(data, tmp_path, outline_resolution=480)
    with pytest.raises(ValueError, match="outline_resolution must be >= 32"):
        tiny_config(data, tmp_path, "dense_brush", outline_resolution=16)


def test_the_final_labels_train_by_their_own_epochs_steps_and_seed(data, tmp_path):
    with pytest.raises(ValueError, match="final_epochs is not set"):
        tiny_config(data, tmp_path).final_train_config()
    config = tiny_config(data, tmp_path, final_epochs=30, final_min_steps=500)
    final, rounds = config.final_train_config(), config.train_config(0)
    assert (final.epochs, final.min_steps) == (30, 500)
    assert final.seed != rounds.seed and final.crop_size == rounds.crop_size
    assert final.class_weighting == rounds.class_weighting and final.batch_size == rounds.batch_size


def test_presets_fill_what_the_options_leave_open(tmp_path):
    paths = {"pool_dir": "pool", "eval_dir": "eval", "out_dir": str(tmp_path)}
    cpu = config_from_preset("cpu", **paths, epochs=None, acquisition={"heuristic": "bald"})
    assert (cpu.resolution, cpu.rounds, cpu.epochs) == (240, PRESETS["cpu"]["rounds"], PRESETS["cpu"]["epochs"])
    assert cpu.acquisition == {"heuristic": "bald", "superpixel_size": 16}
    mine = config_from_preset("cpu", **paths, epochs=7, acquisition={"superpixel_size": 24})
    assert mine.epochs == 7 and mine.acquisition == {"superpixel_size": 24}
    assert config_from_preset(None, **paths).epochs == SimulationConfig("p", "e", "o").epochs
    gpu = config_from_preset("gpu", **paths)
    assert (gpu.resolution, gpu.warm_start, gpu.epochs) == (480, True, PRESETS["cpu"]["epochs"]), "the server's rule"
    assert config_from_preset("gpu_retrain", **paths).warm_start is False, "PixelPick's: from ImageNet every round"
    with pytest.raises(ValueError, match="preset 'tpu'"):
        config_from_preset("tpu", **paths)
