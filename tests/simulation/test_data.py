"""Loading a split: images and masks resized together, void and out-of-range ids ignored, bad folders refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.simulation import load_masks, load_split


def write_pair(root: Path, stem: str, size: tuple[int, int], mask: np.ndarray | None = None) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    Image.new("RGB", size, (10, 200, 30)).save(root / "images" / f"{stem}.png")
    if mask is not None:
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"{stem}.png")


def test_images_and_masks_are_resized_together_and_void_becomes_ignore(tmp_path: Path) -> None:
    mask = np.zeros((40, 80), dtype=np.uint8)
    mask[:, 40:] = 3
    mask[0, :] = 11  # the void id
    mask[1, :] = 255
    write_pair(tmp_path, "a", (80, 40), mask)
    (example,) = load_split(tmp_path, resolution=40)
    assert example.name == "a" and example.image.shape == (20, 40, 3) and example.gt.shape == (20, 40)
    assert example.image.dtype == np.uint8 and example.gt.dtype == np.int64
    assert (example.gt[0] == IGNORE).all(), "rows 0-1 (void, 255) shrink into row 0"
    assert set(np.unique(example.gt[1:]).tolist()) == {0, 3}
    assert (example.gt[1:, :20] == 0).all() and (example.gt[1:, 20:] == 3).all()


def test_a_smaller_image_is_never_scaled_up_and_a_limit_keeps_evenly_spaced_files(tmp_path: Path) -> None:
    for index in range(5):
        write_pair(tmp_path, f"img{index}", (30, 20), np.ones((20, 30)))
    examples = load_split(tmp_path, resolution=240, limit=3)
    assert [example.name for example in examples] == ["img0", "img2", "img4"]
    assert examples[0].gt.shape == (20, 30)


def test_folders_that_do_not_fit_the_layout_are_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images under"):
        load_split(tmp_path / "empty", resolution=64)
    write_pair(tmp_path / "no_mask", "a", (8, 8))
    with pytest.raises(ValueError, match="has no mask"):
        load_split(tmp_path / "no_mask", resolution=64)
    write_pair(tmp_path / "wrong_size", "a", (8, 8), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"is \(4, 4\), its image \(8, 8\)"):
        load_split(tmp_path / "wrong_size", resolution=64)


def test_masks_alone_load_in_the_splits_order_at_their_own_size_never_scaled_up(tmp_path: Path) -> None:
    for index, value in enumerate((1, 2, 11)):
        write_pair(tmp_path, f"img{index}", (80, 40), np.full((40, 80), value))
    examples = load_split(tmp_path, resolution=40)
    masks = load_masks(tmp_path, resolution=80)
    assert [mask.shape for mask in masks] == [(40, 80)] * 3, "at 80, the stored size"
    assert [int(mask[0, 0]) for mask in masks] == [int(example.gt[0, 0]) for example in examples] == [1, 2, IGNORE]
    assert load_masks(tmp_path, resolution=400)[0].shape == (40, 80)
