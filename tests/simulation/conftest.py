"""Shared simulation fixtures: a tiny CamVid pool and evaluation split (64x48), tiny run settings, and one finished
run per mode (run once per test session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ls_al_backend.simulation import (
    SimulationConfig,
    run_simulation,
)
from tests.conftest import camvid_root

BUDGETS = {"dense_brush": 220, "superpixel_dominant": 6, "superpixel_multiclass": 8, "sparse_points": 40}


def _copy_split(split: str, count: int, destination: Path) -> Path:
    source = camvid_root() / split
    images = sorted((source / "images").glob("*.jpg"))[::50][:count]
    assert len(images) == count, f"CamVid {split} images not found under {source}"
    (destination / "images").mkdir(parents=True)
    (destination / "masks").mkdir()
    for path in images:
        Image.open(path).convert("RGB").resize((64, 48), Image.BILINEAR).save(
            destination / "images" / f"{path.stem}.png"
        )
        mask = Image.open(source / "masks" / f"{path.stem}.png").resize((64, 48), Image.NEAREST)
        mask.save(destination / "masks" / f"{path.stem}.png")
    return destination


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("camvid-tiny")
    return _copy_split("train", 4, root / "pool"), _copy_split("val", 2, root / "eval")


def tiny_config(data, out: Path, mode: str = "superpixel_dominant", **overrides) -> SimulationConfig:
    pool, evaluation = data
    values = dict(
        query_mode=mode,
        acquisition={"heuristic": "bald", "class_balance": "pixbal", "superpixel_size": 16},
        budget=BUDGETS.get(mode, 6),
        initial_budget=BUDGETS.get(mode, 6),
        rounds=2,
        resolution=64,
        epochs=1,
        stage2_epochs=1,
        batch_size=2,
        mc_samples=3,
        device="cpu",
    )
    values.update(overrides)
    return SimulationConfig(str(pool), str(evaluation), str(out), **values)


@pytest.fixture(scope="session")
def finished(data, tmp_path_factory):
    """``finished(mode)``: the rows and out dir of one uninterrupted 2-round run per mode (run once, shared)."""
    runs: dict[str, tuple[list[dict], Path, list[str]]] = {}

    def get(mode: str) -> tuple[list[dict], Path, list[str]]:
        if mode not in runs:
            out = tmp_path_factory.mktemp(mode)
            lines: list[str] = []
            runs[mode] = (run_simulation(tiny_config(data, out, mode), log=lines.append), out, lines)
        return runs[mode]

    return get


def without_time(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if not key.endswith("seconds")} for row in rows]


def saved_state(out: Path, round_index: int) -> list[dict]:
    return json.loads((out / "state" / f"round_{round_index:03d}.json").read_text())["images"]
