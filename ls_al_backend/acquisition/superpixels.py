"""Superpixels with scikit-image, chosen by name, sized by a target region side, cached per image.

Every method returns ``[H, W]`` int64 labels ``0..R-1`` (contiguous). Sizing: by default regions are about
``region_size x region_size`` pixels (32 x 32 as in MulActSeg), i.e. ``n_segments = round(H * W / region_size**2)``;
passing ``n_segments`` (e.g. 100) overrides this for SLIC and watershed, which take a target count. Felzenszwalb and
quickshift have no count parameter: their scale/kernel are derived from the target region area and the count is
approximate (calibrated on 480x360 scikit-image sample photos: within about 0.6x-1.3x of the target).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from skimage.color import rgb2gray
from skimage.filters import sobel
from skimage.segmentation import felzenszwalb, quickshift, slic, watershed

from ls_al_backend.storage import FolderBudget

SuperpixelMethod = Callable[[np.ndarray, int, dict[str, Any]], np.ndarray]


def target_segments(height: int, width: int, region_size: int = 32, n_segments: int | None = None) -> int:
    """Number of regions to aim for: ``n_segments`` if given, else ``round(H * W / region_size**2)``, at least 1."""
    if n_segments is not None:
        return max(1, int(n_segments))
    return max(1, round(height * width / float(region_size * region_size)))


def _slic(image: np.ndarray, n_segments: int, params: dict[str, Any]) -> np.ndarray:
    """SLIC in Lab space. On textured images whose colour clusters fragment, connectivity enforcement can merge
    everything into a few regions; then it is re-run with 10x the compactness (more grid-like), at most twice."""
    compactness = float(params.get("compactness", 20.0))
    for _ in range(3):
        labels = slic(
            image,
            n_segments=n_segments,
            compactness=compactness,
            sigma=float(params.get("sigma", 1.0)),
            start_label=0,
            channel_axis=-1,
        )
        if "compactness" in params or labels.max() + 1 >= max(2, n_segments // 4):
            break
        compactness *= 10.0
    return labels


def _felzenszwalb(image: np.ndarray, n_segments: int, params: dict[str, Any]) -> np.ndarray:
    area = image.shape[0] * image.shape[1] / n_segments
    return felzenszwalb(
        image,
        scale=float(params.get("scale", area / 12.0)),
        sigma=float(params.get("sigma", 0.8)),
        min_size=int(params.get("min_size", max(1, area // 8))),
        channel_axis=-1,
    )


def _quickshift(image: np.ndarray, n_segments: int, params: dict[str, Any]) -> np.ndarray:
    side = math.sqrt(image.shape[0] * image.shape[1] / n_segments)
    return quickshift(
        image,
        ratio=float(params.get("ratio", 1.0)),
        kernel_size=float(params.get("kernel_size", max(1.0, side / 5.0))),
        max_dist=float(params.get("max_dist", max(2.0, side / 2.0))),
        sigma=float(params.get("sigma", 0.0)),
        channel_axis=-1,
    )


def _watershed(image: np.ndarray, n_segments: int, params: dict[str, Any]) -> np.ndarray:
    gradient = sobel(rgb2gray(image))
    return watershed(gradient, markers=n_segments, compactness=float(params.get("compactness", 1e-3)))


SUPERPIXEL_METHODS: dict[str, SuperpixelMethod] = {
    "slic": _slic,
    "felzenszwalb": _felzenszwalb,
    "quickshift": _quickshift,
    "watershed": _watershed,
}


def relabel_contiguous(labels: np.ndarray) -> np.ndarray:
    """Map arbitrary integer labels to ``0..R-1`` (in order of first sorted id), int64."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image shaped [H, W, 3], got {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def compute_superpixels(
    image: np.ndarray, method: str = "slic", region_size: int = 32, n_segments: int | None = None, **params: Any
) -> np.ndarray:
    """Superpixels of an ``[H, W, 3]`` image (uint8 or float in [0, 1]) -> ``[H, W]`` int64 labels ``0..R-1``.

    ``method`` in :data:`SUPERPIXEL_METHODS`; extra ``params`` go to the method (e.g. ``compactness``).
    """
    try:
        segment = SUPERPIXEL_METHODS[method]
    except KeyError:
        known = ", ".join(sorted(SUPERPIXEL_METHODS))
        raise ValueError(f"unknown superpixel method {method!r}; known: {known}") from None
    if region_size < 1:
        raise ValueError(f"region_size must be >= 1, got {region_size}")
    rgb = _as_rgb(image)
    count = target_segments(rgb.shape[0], rgb.shape[1], region_size, n_segments)
    return relabel_contiguous(segment(rgb, count, params))


def compact(labels: np.ndarray) -> np.ndarray:
    """Non-negative labels in the smallest unsigned integer type that holds them (uint8 to uint64)."""
    largest = int(labels.max()) if labels.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max:
            return labels.astype(dtype)
    return labels.astype(np.uint64)


def image_digest(image: np.ndarray) -> str:
    """SHA-256 hex digest of an array's bytes, shape and dtype."""
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256()
    digest.update(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(image: np.ndarray, method: str, region_size: int, n_segments: int | None, params: dict[str, Any]) -> str:
    """Cache key: hash of the image bytes + method + parameters."""
    spec = json.dumps(
        {"method": method, "region_size": region_size, "n_segments": n_segments, "params": params},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(f"{image_digest(image)}|{spec}".encode()).hexdigest()


class SuperpixelCache:
    """Thread-safe in-memory LRU of superpixel maps, plus an optional on-disk ``<key>.npz`` folder.

    Lookups return an int64 copy, so callers may modify what they get. ``hits`` / ``misses`` count lookups.
    Maps are kept in the smallest unsigned integer type that holds their labels (uint16 for any realistic count)
    and compressed on disk: a 480x360 SLIC map is about 8 KB there instead of 1.4 MB, so the default disk limit
    holds the maps of a 100,000-image pool, not of 700 images.
    """

    def __init__(
        self, max_items: int = 256, directory: str | Path | None = None, max_disk_bytes: int = 1024**3
    ) -> None:
        if max_items < 0:
            raise ValueError(f"max_items must be >= 0, got {max_items}")
        self.max_items = max_items
        self.directory = None if directory is None else Path(directory)
        self.disk_budget = None if self.directory is None else FolderBudget(self.directory, max_disk_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _remember(self, key: str, labels: np.ndarray) -> None:
        with self._lock:
            self._items[key] = labels
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get(
        self,
        image: np.ndarray,
        method: str = "slic",
        region_size: int = 32,
        n_segments: int | None = None,
        **params: Any,
    ) -> np.ndarray:
        """Superpixels of ``image`` (see :func:`compute_superpixels`), from the cache when possible."""
        key = cache_key(image, method, region_size, n_segments, params)
        with self._lock:
            cached = self._items.get(key)
            if cached is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return cached.astype(np.int64)
        path = None if self.directory is None else self.directory / f"{key}.npz"
        labels = self._from_disk(path)
        if labels is not None:
            with self._lock:
                self.hits += 1
        else:
            labels = compact(compute_superpixels(image, method, region_size, n_segments, **params))
            with self._lock:
                self.misses += 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f"{path.stem}.{threading.get_ident()}.tmp.npz")
                np.savez_compressed(temporary, labels=labels)
                temporary.replace(path)
                self.disk_budget.added(path.stat().st_size)
        self._remember(key, labels)
        return labels.astype(np.int64)

    def _from_disk(self, path: Path | None) -> np.ndarray | None:
        """The map stored at ``path`` (marked as just used), or None when absent (never stored, or pruned)."""
        if path is None:
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                labels = stored["labels"]
        except FileNotFoundError:
            return None
        self.disk_budget.used(path)
        return labels

    def clear(self) -> None:
        """Forget the in-memory entries (files on disk stay)."""
        with self._lock:
            self._items.clear()
