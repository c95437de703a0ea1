"""Bounded storage on the backend's disk: cache folders with a size limit, and an append-only log that rotates.

Several processes (the server, RQ workers) may share a folder; each keeps its own running total, rescans the
folder when that total passes the limit and deletes the least recently used files (oldest modification time: a
cache hit touches its file) until the folder is back under :data:`PRUNE_TO` of the limit. The folder can pass its
limit by at most what the processes write between two scans.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: After pruning, a folder holds at most this share of its limit (so not every write triggers a scan).
PRUNE_TO = 0.8


class FolderBudget:
    """Keeps the files of ``folder`` (names starting with ``.`` are temporary and left alone) under ``max_bytes``."""

    def __init__(self, folder: Path, max_bytes: int):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._total: int | None = None  # bytes in the folder as this process last knew them
        self._lock = threading.Lock()

    def _files(self) -> list[tuple[float, int, Path]]:
        """(modification time, size, path) of every cached file; files deleted meanwhile are passed over."""
        found = []
        if not self.folder.is_dir():
            return found
        for entry in os.scandir(self.folder):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            found.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        return found

    def size(self) -> int:
        """Bytes the folder's files hold now (a scan)."""
        return sum(size for _, size, _ in self._files())

    def added(self, size: int) -> None:
        """Record a file of ``size`` bytes just written; prune when the folder is over its limit."""
        with self._lock:
            if self._total is None:
                self._total = self.size()
            else:
                self._total += size
            if self._total > self.max_bytes:
                self._total = self._prune()

    @staticmethod
    def used(path: Path) -> None:
        """Mark a cached file as just used (a hit), so it is pruned after the files not used since."""
        try:
            os.utime(path)
        except OSError:
            pass

    def _prune(self) -> int:
        files = sorted(self._files())
        total = sum(size for _, size, _ in files)
        target = PRUNE_TO * self.max_bytes
        removed = 0
        for _, size, path in files:
            if total <= target:
                break
            try:
                path.unlink()
            except FileNotFoundError:  # another process pruned it first
                pass
            total -= size
            removed += 1
        if removed:
            log.info("%s: removed %d least recently used file(s) to stay under %d bytes", self.folder, removed, target)
        return total


def append_line(path: Path, line: str, max_bytes: int, lock: threading.Lock) -> None:
    """Append ``line`` (plus a newline) to the log at ``path``; when the log has reached ``max_bytes`` it is first
    renamed to ``<path>.1`` (replacing the previous one), so the two files hold at most about ``2 * max_bytes``:
    the newest lines."""
    with lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.stat().st_size >= max_bytes:
                os.replace(path, path.with_name(path.name + ".1"))
        except FileNotFoundError:
            pass
        with path.open("a") as file:
            file.write(line + "\n")
