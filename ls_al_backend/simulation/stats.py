"""Comparing two arms over seeds: Welch's t with each arm's variance weighted by its own seed count.

Both functions take the per-seed values of two arms (e.g. the last round's mIoU of every seed of a strategy and of a
random baseline) and use sample variances (``ddof=1``), so each arm needs at least two seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WelchResult:
    """``gap``: mean(a) - mean(b); ``t``: the gap over its standard error sqrt(var_a / n_a + var_b / n_b) (inf or
    -inf when both arms have no spread and the gap is not 0; 0 when neither); ``df``: the Welch-Satterthwaite degrees
    of freedom (nan when both arms have no spread); ``standard_error``: that denominator."""

    gap: float
    t: float
    df: float
    standard_error: float


def _arm(values: Sequence[float], name: str) -> tuple[float, float, int]:
    """Mean, sample variance (ddof 1) and count of one arm; ValueError for fewer than two finite values."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size < 2:
        raise ValueError(f"arm {name} needs at least two values (seeds), got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"arm {name} holds a value that is not finite: {array.tolist()}")
    return float(array.mean()), float(array.var(ddof=1)), int(array.size)


def welch(a: Sequence[float], b: Sequence[float]) -> WelchResult:
    """Welch's unequal-variances t of ``a`` against ``b`` (the same t as ``scipy.stats.ttest_ind(a, b,
    equal_var=False)``): each arm's sample variance divided by its own seed count, so an arm with more seeds weighs
    its spread less."""
    mean_a, var_a, n_a = _arm(a, "a")
    mean_b, var_b, n_b = _arm(b, "b")
    gap = mean_a - mean_b
    share_a, share_b = var_a / n_a, var_b / n_b
    standard_error = math.sqrt(share_a + share_b)
    if standard_error == 0.0:
        t = 0.0 if gap == 0.0 else math.copysign(math.inf, gap)
        return WelchResult(gap=gap, t=t, df=math.nan, standard_error=0.0)
    df = (share_a + share_b) ** 2 / (share_a**2 / (n_a - 1) + share_b**2 / (n_b - 1))
    return WelchResult(gap=gap, t=gap / standard_error, df=df, standard_error=standard_error)


def seed_weighted_pooled_std(a: Sequence[float], b: Sequence[float]) -> float:
    """The pooled standard deviation of two arms with each sample variance (ddof 1) weighted by its degrees of
    freedom: sqrt(((n_a - 1) var_a + (n_b - 1) var_b) / (n_a + n_b - 2)), the pooled std of Student's two-sample t.

    With equal seed counts it is sqrt((var_a + var_b) / 2), the unweighted pooled std the earlier goal checks used;
    with unequal counts the arm with more seeds counts more. It is the spread of one seed, not of a mean: the gap's
    standard error is :func:`welch`'s ``standard_error``.
    """
    _, var_a, n_a = _arm(a, "a")
    _, var_b, n_b = _arm(b, "b")
    return math.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / (n_a + n_b - 2))
