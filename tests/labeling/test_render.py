"""Rendering predictions: outlines of regions, the graded overlay. (Queries: each mode's tests in tests/modes/.)"""

from __future__ import annotations

import numpy as np
from skimage.measure import approximate_polygon, find_contours

from ls_al_backend.labeling.render import douglas_peucker, overlay_alpha, region_outline


def test_outline_of_a_single_pixel_surrounds_its_centre_only() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 3] = True
    xs, ys = region_outline(mask).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (3.0, 4.0, 2.0, 3.0)
    assert len(xs) >= 4


def test_overlay_alpha_is_quantised_and_capped() -> None:
    alpha = overlay_alpha(np.array([[0.0, 0.01, 0.5, 1.0, 2.0]]), levels=4, max_alpha=200)
    assert alpha.tolist() == [[0, 50, 100, 200, 200]]


def test_douglas_peucker_keeps_the_points_scikit_image_keeps() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = np.zeros((40, 50), dtype=bool)
        for _ in range(4):  # a blob of overlapping rectangles: staircases, corners and straight runs
            top, left = rng.integers(2, 30), rng.integers(2, 40)
            mask[top : top + rng.integers(3, 9), left : left + rng.integers(3, 9)] = True
        contour = max(find_contours(np.pad(mask.astype(np.float32), 1), 0.5), key=len)
        for tolerance in (0.25, 1.0, 3.0):
            assert np.array_equal(douglas_peucker(contour, tolerance), approximate_polygon(contour, tolerance))
