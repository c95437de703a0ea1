"""What a run writes: log lines, progress bars, atomic files, JSON-safe values and the per-round CSV."""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def log_line(line: str) -> None:
    """The default log: one line on stdout, flushed (runs are often followed through a redirected log file)."""
    print(line, flush=True)


def progress_bar(label: str, done: int, total: int) -> None:
    """Redraw a one-line progress bar on stderr; silent unless stderr is a terminal (logs get the round lines)."""
    if not sys.stderr.isatty():
        return
    filled = 30 * done // max(total, 1)
    sys.stderr.write(f"\r{label:<12} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
    sys.stderr.write("\n" if done >= total else "")
    sys.stderr.flush()


def training_progress(update: dict[str, Any]) -> None:
    """A ``train()`` progress callback: a progress bar over the epochs."""
    progress_bar("training", update["epoch"], update["epochs"])


def write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_value(item) for item in value]
    return value


def rows_to_csv(rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """CSV text of result rows, one ``iou_<class>`` column per class."""
    buffer = io.StringIO()
    scalar = [key for key in (rows[0] if rows else {}) if key != "per_class_iou"]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*scalar, *(f"iou_{name}" for name in class_names)])
    for row in rows:
        ious = row.get("per_class_iou", {})
        values = [row[key] for key in scalar] + [ious.get(name) for name in class_names]
        writer.writerow(["" if value is None or value != value else value for value in values])
    return buffer.getvalue()
