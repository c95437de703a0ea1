"""The multiprocess-mode folders: a worker's own, with the leftovers of killed workers removed; serve's, emptied."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from ls_al_backend import metrics_folders


def test_a_worker_gets_a_fresh_folder_and_the_folders_of_dead_workers_go(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv(metrics_folders.VARIABLE, "restored after the test")
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead = tmp_path / f"{metrics_folders.WORKER_PREFIX}{ended.pid}-abc"
    alive = tmp_path / f"{metrics_folders.WORKER_PREFIX}{os.getppid()}-def"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"")

    folder = metrics_folders.use_private_folder()

    assert os.environ[metrics_folders.VARIABLE] == str(folder) and folder.is_dir() and not list(folder.iterdir())
    assert folder.name.startswith(f"{metrics_folders.WORKER_PREFIX}{os.getpid()}-")
    assert not dead.exists(), "a SIGKILLed worker's folder"
    assert alive.exists(), "a running process's folder stays"


def test_serve_s_folder_is_created_and_emptied_of_an_earlier_run(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    metrics_folders.empty_folder(folder)
    assert folder.is_dir()
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "notes.txt").write_text("not ours")
    metrics_folders.empty_folder(folder)
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]
