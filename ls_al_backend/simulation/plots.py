"""Learning-curve PNGs: mIoU against clicks, editor actions or the labelled pixel share, over strategies and seeds."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ls_al_backend.simulation.results import ResultSet, mean_std, values_per_round

#: What a learning-curve plot puts on its x axis: row key, axis label, scale factor, log scale.
PLOT_AXES: dict[str, tuple[str, str, float, bool]] = {
    "clicks": ("clicks_cumulative", "clicks (cumulative)", 1.0, False),
    "actions": ("annotator_actions_cumulative", "editor actions (cumulative key presses and clicks)", 1.0, False),
    "pixels": ("labelled_pixel_share", "labelled pixels (% of the pool, log scale)", 100.0, True),
}


def plot_learning_curves(
    paths: Iterable[str | Path], out_png: str | Path, title: str | None = None, x_axis: str = "clicks"
) -> Path:
    """PNG of mIoU vs cumulative clicks (``x_axis="clicks"``), editor actions (``"actions"``) or the labelled
    pixel share (``"pixels"``): one line per strategy (mean over seeds, a band of one std), strategies whose
    heuristic is ``random`` drawn grey (dotted, dash-dotted, ...) as baselines, the reference as a dashed
    horizontal line. Strategies whose runs lack the axis (editor actions of an unknown mode) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if x_axis not in PLOT_AXES:
        raise ValueError(f"x_axis must be one of {', '.join(PLOT_AXES)}, got {x_axis!r}")
    x_key, x_label, x_scale, x_log = PLOT_AXES[x_axis]
    results = ResultSet.read(paths)
    strategies, randoms = results.strategies, results.randoms

    figure, axes = plt.subplots(figsize=(8, 5))
    random_styles = iter([":", "-.", (0, (5, 2, 1, 2, 1, 2)), (0, (1, 3))] * 4)
    for strategy in sorted(strategies, key=lambda name: (name not in randoms, name)):
        runs = strategies[strategy]
        per_round = values_per_round(runs, x_key)
        if any(v is None for values in per_round for v in values):
            continue  # runs that do not record this axis (editor actions of an unknown mode)
        x = np.array([[x_scale * v for v in values] for values in per_round], dtype=float).mean(axis=1)
        stats = [mean_std(None if v is None else 100 * v for v in values) for values in values_per_round(runs, "miou")]
        mean = np.array([m for m, _ in stats])
        std = np.array([np.nan if s is None else s for _, s in stats])
        style = {"color": "grey", "linestyle": next(random_styles)} if strategy in randoms else {}
        label = f"{strategy} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        (line,) = axes.plot(x, mean, marker="o", markersize=3, label=label, **style)
        if len(runs) > 1:
            axes.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if results.reference_miou is not None:
        axes.axhline(100 * results.reference_miou, color="black", linestyle="--", label="fully supervised")
    if x_log:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel("mIoU (%), mean ± one std over seeds")
    axes.set_title(title or f"Active learning: mIoU vs {x_label.split(' (')[0]}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out
