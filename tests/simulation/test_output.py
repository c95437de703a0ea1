"""What a run writes: JSON without NaN, a CSV with one IoU column per class, files replaced atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ls_al_backend.simulation.output import json_value, rows_to_csv, write_atomic


def test_non_finite_floats_become_null_at_any_depth() -> None:
    value = {"miou": math.nan, "rows": [{"loss": math.inf, "steps": 3}], "name": "x"}
    assert json.dumps(json_value(value)) == '{"miou": null, "rows": [{"loss": null, "steps": 3}], "name": "x"}'


def test_the_csv_has_the_scalar_columns_then_one_iou_column_per_class_with_blanks_for_missing() -> None:
    rows = [
        {"round": 0, "miou": 0.5, "per_class_iou": {"sky": 0.9, "road": math.nan}},
        {"round": 1, "miou": None, "per_class_iou": {"sky": 0.8}},
    ]
    table = list(csv.reader(io.StringIO(rows_to_csv(rows, ["sky", "road"]))))
    assert table == [["round", "miou", "iou_sky", "iou_road"], ["0", "0.5", "0.9", ""], ["1", "", "0.8", ""]]
    assert rows_to_csv([], ["sky"]) == "iou_sky\n"


def test_an_atomic_write_replaces_the_file_and_leaves_no_temporary_behind(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")
    write_atomic(path, b"new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
