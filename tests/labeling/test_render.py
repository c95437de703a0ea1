"""Rendering predictions: outlines of regions, the graded overlay. (Queries: each mode's tests in tests/modes/.)"""

from __future__ import annotations

import numpy as np

from ls_al_backend.labeling.render import overlay_alpha, region_outline


def test_outline_of_a_single_pixel_surrounds_its_centre_only() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 3] = True
    xs, ys = region_outline(mask).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (3.0, 4.0, 2.0, 3.0)
    assert len(xs) >= 4


def test_overlay_alpha_is_quantised_and_capped() -> None:
    alpha = overlay_alpha(np.array([[0.0, 0.01, 0.5, 1.0, 2.0]]), levels=4, max_alpha=200)
    assert alpha.tolist() == [[0, 50, 100, 200, 200]]
