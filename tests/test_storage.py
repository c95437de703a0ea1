"""Bounded storage: a cache folder stays under its limit by dropping the least recently used files; the event log
rotates and keeps the newest lines."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ls_al_backend.storage import PRUNE_TO, FolderBudget, append_line


def write(folder: Path, name: str, size: int, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(b"x" * size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_a_folder_over_its_limit_loses_its_least_recently_used_files(tmp_path: Path) -> None:
    budget = FolderBudget(tmp_path, max_bytes=1000)
    for index in range(9):
        write(tmp_path, f"f{index}", 100, age_s=100 - index)  # f0 oldest
        budget.added(100)
    assert budget.size() == 900, "under the limit nothing goes"
    budget.used(tmp_path / "f0")  # a cache hit: f0 becomes the most recently used
    write(tmp_path, "f9", 300, age_s=0)
    budget.added(300)
    remaining = sorted(path.name for path in tmp_path.iterdir())
    assert budget.size() <= PRUNE_TO * 1000
    assert "f0" in remaining and "f9" in remaining and "f1" not in remaining and "f2" not in remaining


def test_the_limit_holds_over_many_writes_and_temporary_files_are_left_alone(tmp_path: Path) -> None:
    budget = FolderBudget(tmp_path, max_bytes=5000)
    (tmp_path / ".download-123").write_bytes(b"y" * 10_000)
    for index in range(200):
        write(tmp_path, f"f{index:03d}", 97, age_s=0)
        budget.added(97)
        assert budget.size() <= 5000
    assert (tmp_path / ".download-123").exists()


def test_a_budget_starting_on_a_full_folder_prunes_at_its_first_write(tmp_path: Path) -> None:
    for index in range(30):
        write(tmp_path, f"old{index}", 100, age_s=1000 + index)
    budget = FolderBudget(tmp_path, max_bytes=1000)
    write(tmp_path, "new", 100, age_s=0)
    budget.added(100)
    assert budget.size() <= 1000 and (tmp_path / "new").exists()


def test_a_zero_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        FolderBudget(tmp_path, 0)


def test_the_log_rotates_once_full_and_keeps_the_newest_lines(tmp_path: Path) -> None:
    path, lock = tmp_path / "events.jsonl", threading.Lock()
    for index in range(100):
        append_line(path, f'{{"n": {index}}}', max_bytes=200, lock=lock)
    rotated = path.with_name("events.jsonl.1")
    assert path.stat().st_size < 200 + 20 and rotated.stat().st_size < 200 + 20
    lines = rotated.read_text().splitlines() + path.read_text().splitlines()
    assert lines[-1] == '{"n": 99}' and lines == [f'{{"n": {n}}}' for n in range(100 - len(lines), 100)]
