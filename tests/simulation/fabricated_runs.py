"""Fabricated result files for the summary tests: runs of a few rounds with chosen mIoU, and the edits the tests make
to them (other clicks, a final training, another query mode)."""

from __future__ import annotations

import json
from pathlib import Path


def write_runs(tmp_path, runs, reference_miou=0.6, rounds=3) -> list[Path]:
    """Result files of fabricated runs ``(strategy, heuristic, seed, offset of the last mIoU)`` and a reference."""
    files = []
    for strategy, heuristic, seed, offset in runs:
        rows = [
            {
                "round": i,
                "clicks_cumulative": 10 * (i + 1),
                "labelled_pixel_share": 1e-4 * (i + 1),
                "click_share_of_full": 0.01 * (i + 1),
                "miou": 0.2 + i / 9,
                "units_selected": 10,
                "labelled_images": 2 * (i + 1),
                "train_steps": 5,
                "train_seconds": 1.0,
            }
            for i in range(3)
        ]
        rows[-1]["miou"] += offset
        folder = tmp_path / strategy / f"seed_{seed}"
        folder.mkdir(parents=True)
        payload = {"kind": "active_learning", "strategy": strategy, "seed": seed, "rows": rows}
        config = {"acquisition": {"heuristic": heuristic}, "rounds": rounds, "query_mode": "superpixel_dominant"}
        (folder / "results.json").write_text(json.dumps(payload | {"config": config}))
        files.append(folder)
    reference = tmp_path / "reference" / "seed_0"
    reference.mkdir(parents=True)
    payload = {"kind": "reference", "miou": reference_miou, "miou_at_half_steps": reference_miou - 0.005}
    (reference / "reference.json").write_text(json.dumps(payload))
    return [*files, reference]


def with_clicks(folder: Path, clicks: float) -> None:
    """Give a fabricated run other clicks at its last round."""
    payload = json.loads((folder / "results.json").read_text())
    payload["rows"][-1]["clicks_cumulative"] = clicks
    (folder / "results.json").write_text(json.dumps(payload))


def trained_again(folder: Path, miou: float, clicks: float | None = None) -> None:
    """Give a fabricated run a ``final`` (its final labels trained again), and other clicks if given."""
    if clicks is not None:
        with_clicks(folder, clicks)
    payload = json.loads((folder / "results.json").read_text())
    final = {"epochs": 40, "train_steps": 300, "miou": miou, "per_class_iou": {}}
    (folder / "results.json").write_text(json.dumps(payload | {"final": final}))


def in_query_mode(folder: Path, query_mode: str) -> None:
    """Give a fabricated run another query mode."""
    payload = json.loads((folder / "results.json").read_text())
    payload["config"]["query_mode"] = query_mode
    (folder / "results.json").write_text(json.dumps(payload))
