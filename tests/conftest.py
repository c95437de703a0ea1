"""Shared fixtures: repository paths, CamVid samples, settings with a temporary data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings as hypothesis_settings
from PIL import Image

from ls_al_backend.config import Settings
from ls_al_backend.labeling.annotations import IGNORE

# CI draws the same property-test examples on every run (a failure there is reproducible, never a lucky draw);
# locally each run explores new examples.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parents[1]
LABEL_CONFIGS = sorted((REPO_ROOT / "label_configs").glob("*.xml"))


def camvid_root() -> Path:
    return Path(os.environ.get("CAMVID_DIR", REPO_ROOT.parent / "shared" / "datasets" / "camvid"))


def camvid_training_pairs(size: int, every: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every ``every``-th CamVid training image (sorted by name), ``count`` of them, resized to ``size x size``:
    ``(image [size, size, 3] uint8, labels [size, size] int64)``, the mask resized nearest, void (11) as IGNORE."""
    root = camvid_root() / "train"
    paths = sorted((root / "images").glob("*.jpg"))[::every][:count]
    assert len(paths) == count, f"CamVid training images not found under {root} (set CAMVID_DIR)"
    pairs = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
        mask = Image.open(root / "masks" / f"{path.stem}.png").resize((size, size), Image.NEAREST)
        labels = np.asarray(mask).astype(np.int64)
        labels[labels == 11] = IGNORE
        pairs.append((image, labels))
    return pairs


@pytest.fixture(scope="session")
def camvid_image_path() -> Path:
    """One real CamVid validation image (480x360 JPEG)."""
    images = sorted((camvid_root() / "val" / "images").glob("*.jpg"))
    assert images, f"CamVid not found under {camvid_root()} (set CAMVID_DIR)"
    return images[0]


@pytest.fixture
def small_image_path(tmp_path: Path, camvid_image_path: Path) -> Path:
    """A CamVid image scaled down to 96x72, for fast predictions."""
    path = tmp_path / "small.png"
    Image.open(camvid_image_path).convert("RGB").resize((96, 72)).save(path)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread avoids OpenMP spin-waits on a busy shared CPU (3-5x faster there)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for tests: temporary data folder, local images under tmp_path and CamVid, few MC samples."""
    return Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        local_image_roots=(str(tmp_path), str(camvid_root())),
        mc_samples=4,
    )


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
