"""Learning curves: mean and one std over seeds, against clicks or labelled pixels."""

from __future__ import annotations

import pytest

from ls_al_backend.simulation import plot_learning_curves
from tests.simulation.fabricated_runs import write_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_plot_learning_curves(tmp_path):
    pytest.importorskip("matplotlib")
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12), ("rand", "random", 0, 0)])
    out = plot_learning_curves(files, tmp_path / "plot" / "curves.png")
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    by_pixels = plot_learning_curves(files, tmp_path / "plot" / "pixels.png", x_axis="pixels")
    assert by_pixels.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and by_pixels.read_bytes() != out.read_bytes()
    with pytest.raises(ValueError, match="x_axis"):
        plot_learning_curves(files, tmp_path / "bad.png", x_axis="seconds")
