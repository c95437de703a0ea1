"""Pool and evaluation images with their ground-truth masks, resized for the simulation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ls_al_backend.labeling.annotations import IGNORE


@dataclass
class Example:
    """One image at simulation resolution: ``image`` ``[H, W, 3]`` uint8 and ``gt`` ``[H, W]`` int64 (void=IGNORE)."""

    name: str
    image: np.ndarray
    gt: np.ndarray


def _resize_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _image_and_mask_paths(root: Path, limit: int | None) -> list[tuple[Path, Path]]:
    """Each image of ``root/images`` (``limit`` evenly spaced in name order) with its ``root/masks/<stem>.png``."""
    paths = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise ValueError(f"no images under {root / 'images'}")
    if limit is not None and limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    pairs = []
    for path in paths:
        mask_path = root / "masks" / f"{path.stem}.png"
        if not mask_path.is_file():
            raise ValueError(f"image {path.name} has no mask {mask_path}")
        pairs.append((path, mask_path))
    return pairs


def _class_ids(mask: Image.Image, name: str, ignore_index: int) -> np.ndarray:
    gt = np.asarray(mask, dtype=np.int64).copy()
    if gt.ndim != 2:
        raise ValueError(f"{name} must be a single-channel mask of class ids")
    gt[(gt == ignore_index) | (gt >= 255) | (gt < 0)] = IGNORE
    return gt


def load_split(folder: str | Path, resolution: int, ignore_index: int = 11, limit: int | None = None) -> list[Example]:
    """``<folder>/images/<stem>.jpg|png`` and ``<folder>/masks/<stem>.png``, resized to longest side ``resolution``
    (bilinear / nearest). Mask values ``ignore_index`` and ``>= 255`` become :data:`IGNORE`."""
    examples = []
    for path, mask_path in _image_and_mask_paths(Path(folder), limit):
        image = Image.open(path).convert("RGB")
        mask = Image.open(mask_path)
        if mask.size != image.size:
            raise ValueError(f"{mask_path.name} is {mask.size}, its image {image.size}")
        size = _resize_size(*image.size, resolution)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
            mask = mask.resize(size, Image.NEAREST)
        examples.append(
            Example(path.stem, np.asarray(image, dtype=np.uint8), _class_ids(mask, mask_path.name, ignore_index))
        )
    return examples


def load_masks(
    folder: str | Path, resolution: int, ignore_index: int = 11, limit: int | None = None
) -> list[np.ndarray]:
    """The masks of :func:`load_split` ``[H, W]`` int64, in the same order, resized (nearest) to longest side
    ``resolution`` instead: what an annotator sees when the images are shown larger than the simulation trains on."""
    masks = []
    for _, mask_path in _image_and_mask_paths(Path(folder), limit):
        mask = Image.open(mask_path)
        size = _resize_size(*mask.size, resolution)
        if size != mask.size:
            mask = mask.resize(size, Image.NEAREST)
        masks.append(_class_ids(mask, mask_path.name, ignore_index))
    return masks
