"""The fully supervised reference: trained once, for its epochs and half as many."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ls_al_backend.simulation import (
    fully_supervised_reference,
)
from tests.simulation.conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fully_supervised_reference_is_written_once(data, tmp_path):
    config = dataclasses.replace(tiny_config(data, tmp_path), out_dir=str(tmp_path / "reference"))
    reference = fully_supervised_reference(config, log=None)
    assert reference["kind"] == "reference" and 0.0 <= reference["miou"] <= 1.0
    assert json.loads((tmp_path / "reference" / "reference.json").read_text())["miou"] == reference["miou"]
    assert fully_supervised_reference(config, log=None) == json.loads(json.dumps(reference))


def test_the_reference_trains_its_epochs_and_half_as_many(data, tmp_path):
    config = tiny_config(data, tmp_path, rounds=3, epochs=2, min_steps=50)
    reference = config.reference_train_config()
    assert (reference.epochs, reference.min_steps, reference.stage2_epochs) == (6, 0, 0)
    assert config.reference_train_config(0.5).epochs == 3
    assert dataclasses.replace(config, reference_epochs=4).reference_train_config().epochs == 4


def test_the_reference_weighs_classes_as_the_rounds_do(data, tmp_path):
    config = tiny_config(data, tmp_path, class_weighting="inverse_frequency")
    assert config.train_config(0).class_weighting == "inverse_frequency"
    assert config.reference_train_config().class_weighting == "inverse_frequency"


def test_the_cli_can_train_only_the_reference(data, tmp_path):
    from ls_al_backend.cli import main

    pool, evaluation = data
    argv = ["simulate", "--pool", str(pool), "--eval", str(evaluation), "--out", str(tmp_path), "--reference-only"]
    argv += ["--semi-supervised", "mean_teacher"]  # the reference trains supervised all the same
    argv += ["--class-weighting", "inverse_frequency"]
    assert main([*argv, "--resolution", "64", "--epochs", "1", "--rounds", "1", "--batch-size", "2"]) == 0
    config = json.loads((tmp_path / "reference.json").read_text())["config"]
    assert config["resolution"] == 64 and config["semi_supervised"] == "mean_teacher"
    assert config["class_weighting"] == "inverse_frequency"
    assert not (tmp_path / "results.json").exists()
