"""The command line: offline training from an export, and readable errors instead of tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ls_al_backend.cli import main
from ls_al_backend.model.store import ModelStore
from tests.conftest import REPO_ROOT
from tests.jobs.conftest import make_project

DENSE = REPO_ROOT / "label_configs" / "dense_brush.xml"


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, Path]:
    """A Label Studio JSON export of a small project and the folder holding its image files."""
    files, tasks = make_project(labelled=2, unlabelled=1)
    images = tmp_path / "images"
    images.mkdir()
    for path, data in files.items():
        (images / Path(path).name).write_bytes(data)
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(tasks))
    return export_path, images


def test_train_offline_saves_a_new_version(tmp_path: Path, export, monkeypatch, capsys) -> None:
    export_path, images = export
    for name, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "TRAIN_EPOCHS": "1",
        "TRAIN_MIN_STEPS": "0",
        "TRAIN_CROP_SIZE": "64",
    }.items():
        monkeypatch.setenv(name, value)
    argv = ["train", "--export", str(export_path), "--images", str(images), "--label-config", str(DENSE)]
    assert main([*argv, "--project", "12"]) == 0
    assert "saved model v1 for project 12" in capsys.readouterr().out
    checkpoint = ModelStore(tmp_path / "data" / "models").load("12", 1)
    assert checkpoint.metadata["labelled_tasks"] == [1, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--export", "/nope.json", "--images", "/tmp", "--label-config", str(DENSE), "--project", "1"],
            "No such file",
        ),
        (
            ["train", "--export", str(DENSE), "--images", "/tmp", "--label-config", str(DENSE), "--project", "1"],
            "Expecting value",
        ),
        (
            ["train", "--export", str(DENSE), "--images", "/tmp", "--label-config", str(DENSE), "--project", "x"],
            "project must look like",
        ),
        (["worker"], "needs REDIS_URL"),
    ],
)
def test_bad_input_gets_a_readable_message_and_exit_code_2(argv, message, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_bad_setting_is_reported_before_anything_starts(monkeypatch, capsys) -> None:
    monkeypatch.setenv("PORT", "ninety")
    assert main(["serve"]) == 2
    assert "PORT='ninety'" in capsys.readouterr().err


def test_simulate_refuses_a_bad_acquisition_json(tmp_path: Path, capsys) -> None:
    argv = ["simulate", "--pool", str(tmp_path), "--eval", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*argv, "--acquisition", "{heuristic: bald"]) == 2
    assert "ls-al-backend simulate:" in capsys.readouterr().err


def test_simulate_refuses_final_epochs_below_one_readably(tmp_path: Path, capsys) -> None:
    argv = ["simulate", "--pool", str(tmp_path), "--eval", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*argv, "--final-epochs", "0"]) == 2
    assert "final_epochs must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--queues", "gpu"], "--queues 'gpu': expected training, scoring"),
        (["--queues", "training,training"], "each once"),
        (["--metrics-port", "70000"], "--metrics-port 70000"),
    ],
)
def test_a_worker_with_bad_options_says_which_and_exits_2(options, message, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/9")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the worker points it elsewhere; restored after
    assert main(["worker", *options]) == 2
    assert message in capsys.readouterr().err
