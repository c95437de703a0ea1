"""Superpixels: every method covers every pixel with contiguous int64 ids; sizing; cache hits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ls_al_backend.acquisition.superpixels import (
    SUPERPIXEL_METHODS,
    SuperpixelCache,
    cache_key,
    compact,
    compute_superpixels,
    relabel_contiguous,
    target_segments,
)


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour field (sum of a few sinusoids per channel) with mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / 16.0
    channels = []
    for _ in range(3):
        fx, fy, px, py = rng.uniform(0.3, 1.5, 2).tolist() + rng.uniform(0, 6.3, 2).tolist()
        channels.append(np.sin(fx * xx + px) + np.cos(fy * yy + py))
    image = (np.stack(channels, -1) + 2.0) * 60.0 + rng.normal(0, 3, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", sorted(SUPERPIXEL_METHODS))
def test_every_method_covers_the_image_with_contiguous_ids(method: str) -> None:
    image = smooth_image(48, 64)
    labels = compute_superpixels(image, method, region_size=16)
    assert labels.shape == (48, 64) and labels.dtype == np.int64
    assert labels.min() == 0
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))
    assert 2 <= labels.max() + 1 <= 48 * 64 // 16  # on the order of the 12 regions aimed at, not per-pixel


def test_sizing() -> None:
    assert target_segments(360, 480) == round(360 * 480 / 1024)
    assert target_segments(360, 480, 32, n_segments=100) == 100
    assert target_segments(4, 4, 32) == 1
    image = smooth_image(96, 128)
    for method in ("slic", "watershed"):
        count = compute_superpixels(image, method, n_segments=24).max() + 1
        assert 8 <= count <= 48, (method, count)


@settings(max_examples=30, deadline=None)
@given(labels=st.lists(st.integers(-5, 1000), min_size=1, max_size=64))
def test_relabel_contiguous(labels: list[int]) -> None:
    array = np.array(labels).reshape(1, -1)
    out = relabel_contiguous(array)
    assert np.array_equal(np.unique(out), np.arange(len(set(labels))))
    # same partition: equal inputs <-> equal outputs
    assert np.array_equal(array[:, :, None] == array[:, None, :], out[:, :, None] == out[:, None, :])


def test_cache_hit_returns_identical_array(tmp_path) -> None:
    image = smooth_image(32, 40)
    cache = SuperpixelCache(max_items=2, directory=tmp_path)
    first = cache.get(image, "slic", 8)
    first[0, 0] = 999  # callers get a copy
    second = cache.get(image, "slic", 8)
    assert (cache.hits, cache.misses) == (1, 1)
    assert np.array_equal(second, compute_superpixels(image, "slic", 8))
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    fresh = SuperpixelCache(directory=tmp_path)  # served from disk
    assert np.array_equal(fresh.get(image, "slic", 8), second) and fresh.hits == 1 and fresh.misses == 0
    assert second.dtype == fresh.get(image, "slic", 8).dtype == np.int64, "callers get int64 labels from every path"


def test_maps_are_stored_in_the_smallest_unsigned_type_and_compressed(tmp_path) -> None:
    assert compact(np.array([0, 255])).dtype == np.uint8
    assert compact(np.array([0, 256])).dtype == np.uint16
    assert compact(np.array([0, 70_000])).dtype == np.uint32
    image = smooth_image(96, 128)
    labels = SuperpixelCache(directory=tmp_path).get(image, "slic", 8)
    (stored,) = tmp_path.glob("*.npz")
    assert stored.stat().st_size < labels.nbytes / 20, "a compressed map is a small fraction of its int64 array"


def test_cache_key_depends_on_image_method_and_params() -> None:
    image = smooth_image(16, 16)
    other = image.copy()
    other[0, 0, 0] ^= 1
    base = cache_key(image, "slic", 32, None, {})
    assert base == cache_key(image.copy(), "slic", 32, None, {})
    assert len({base, cache_key(other, "slic", 32, None, {}), cache_key(image, "watershed", 32, None, {}),
                cache_key(image, "slic", 16, None, {}), cache_key(image, "slic", 32, 100, {}),
                cache_key(image, "slic", 32, None, {"compactness": 5})}) == 6  # fmt: skip


def test_lru_evicts_and_unknown_method_is_refused() -> None:
    cache = SuperpixelCache(max_items=1)
    a, b = smooth_image(16, 16, 1), smooth_image(16, 16, 2)
    cache.get(a, "slic", 8)
    cache.get(b, "slic", 8)
    cache.get(a, "slic", 8)
    assert cache.misses == 3
    with pytest.raises(ValueError, match="unknown superpixel method"):
        compute_superpixels(a, "voronoi")
    with pytest.raises(ValueError, match="RGB"):
        compute_superpixels(np.zeros((4, 4, 5), np.uint8))


def test_the_disk_cache_stays_under_its_limit(tmp_path) -> None:
    images = [smooth_image(32, 40, seed) for seed in range(8)]
    one_file = SuperpixelCache(directory=tmp_path / "probe")
    one_file.get(images[0], "slic", 8)
    (probe,) = (tmp_path / "probe").glob("*.npz")
    limit = 3 * probe.stat().st_size
    cache = SuperpixelCache(max_items=0, directory=tmp_path / "cache", max_disk_bytes=limit)
    for image in images:
        cache.get(image, "slic", 8)
        assert cache.disk_budget.size() <= limit
    assert np.array_equal(cache.get(images[0], "slic", 8), compute_superpixels(images[0], "slic", 8))
