"""Balanced entropy (BalEntAcq, Woo 2023) against a direct, slow numpy/scipy implementation."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from ls_al_backend.acquisition.heuristics import (
    balanced_entropy,
    balanced_entropy_acquisition,
    balanced_entropy_from_moments,
    balanced_entropy_rank_score,
    beta_posterior_entropy,
)
from ls_al_backend.acquisition.mc import MCSummary

from .strategies import mc_probs


def beta_entropy(a: float, b: float) -> float:
    """Differential entropy of Beta(a, b), textbook form with scipy's special functions.

    (``scipy.stats.beta(a, b).entropy()`` is used for moderate parameters below; scipy 1.17 returns 0.0 for
    parameters in the millions, which a variance floor of 1e-9 produces.)
    """
    return float(
        special.betaln(a, b)
        - (a - 1) * special.digamma(a)
        - (b - 1) * special.digamma(b)
        + (a + b - 2) * special.digamma(a + b)
    )


def reference_balentacq(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Pixel by pixel, class by class, in plain Python + scipy; same clamps as the implementation."""
    num_classes = mean.shape[0]
    out = np.empty(mean.shape[1:])
    for index in np.ndindex(*mean.shape[1:]):
        m_all = mean[(slice(None), *index)]
        pred_entropy = -sum(float(p) * math.log(p) for p in m_all if p > 0)
        mjent = pred_entropy
        for c in range(num_classes):
            m = min(max(float(m_all[c]), 1e-6), 1 - 1e-6)
            v = max(float(var[(c, *index)]), 1e-9)
            s = max(m * (1 - m) / v - 1, 1e-3)
            a, b = m * s, (1 - m) * s
            mjent += min(m * beta_entropy(a + 1, b), 0.0)
        balent = mjent / (pred_entropy + math.log(2))
        out[index] = 1 / max(balent, 1e-6) if balent >= 0 else max(balent, -1e6)
    return out


@st.composite
def moments(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel class means (a distribution) and admissible variances ``v = f * m (1 - m)``, f in (0, 1)."""
    c = draw(st.integers(2, 5))
    h = draw(st.integers(1, 4))
    w = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    concentration = draw(st.sampled_from([0.3, 1.0, 5.0, 50.0]))
    mean = rng.dirichlet([concentration] * c, size=(h, w)).transpose(2, 0, 1)
    mean = np.clip(mean, 1e-4, None)
    mean /= mean.sum(0, keepdims=True)
    fraction = rng.uniform(1e-3, 0.999, size=mean.shape) ** draw(st.sampled_from([1.0, 3.0]))
    return mean, fraction * mean * (1 - mean)


@settings(max_examples=40, deadline=None)
@given(mv=moments())
def test_matches_reference_from_moments(mv: tuple[np.ndarray, np.ndarray]) -> None:
    mean, var = mv
    balent = balanced_entropy_from_moments(torch.from_numpy(mean), torch.from_numpy(var))
    ours = balanced_entropy_acquisition(balent).double().numpy()
    np.testing.assert_allclose(ours, reference_balentacq(mean, var), rtol=2e-5, atol=1e-6)


def reference_rank_score(acquisition: np.ndarray) -> np.ndarray:
    """The heuristic's bounded score from the authors' value: 2 - 1/acq above 1, exp(acq) below 0."""
    return np.where(acquisition > 0, 2.0 - 1.0 / acquisition, np.exp(acquisition))


@settings(max_examples=25, deadline=None)
@given(probs=mc_probs(min_c=2, max_c=4, max_hw=4))
def test_matches_reference_from_summary(probs: torch.Tensor) -> None:
    summary = MCSummary.from_samples(probs)
    expected = reference_balentacq(summary.mean.double().numpy(), summary.variance.double().numpy())
    np.testing.assert_allclose(
        balanced_entropy(summary).double().numpy(), reference_rank_score(expected), rtol=2e-5, atol=1e-5
    )


@settings(max_examples=40, deadline=None)
@given(mv=moments())
def test_bounded_score_orders_pixels_as_the_authors_value(mv: tuple[np.ndarray, np.ndarray]) -> None:
    """The registered score lies in [0, 2] and ranks every pair of pixels as BalEntAcq does."""
    balent = balanced_entropy_from_moments(torch.from_numpy(mv[0]), torch.from_numpy(mv[1])).double().flatten()
    authors = balanced_entropy_acquisition(balent)
    ours = balanced_entropy_rank_score(balent)
    assert ours.min() >= 0.0 and ours.max() <= 2.0
    for i in range(len(balent)):
        for j in range(len(balent)):
            if authors[i] > authors[j] * (1 + 1e-9) + 1e-12:
                assert ours[i] >= ours[j], (float(balent[i]), float(balent[j]))


@settings(max_examples=40, deadline=None)
@given(a=st.floats(0.05, 60.0), b=st.floats(0.05, 60.0))
def test_posterior_entropy_formula_matches_scipy(a: float, b: float) -> None:
    ours = beta_posterior_entropy(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    assert math.isclose(float(ours), float(stats.beta(a + 1, b).entropy()), rel_tol=1e-7, abs_tol=1e-9)
    assert math.isclose(beta_entropy(a + 1, b), float(stats.beta(a + 1, b).entropy()), rel_tol=1e-7, abs_tol=1e-9)


def test_posterior_entropy_matches_numerical_integration() -> None:
    for a, b in [(0.5, 0.5), (2.0, 3.0), (10.0, 1.5)]:
        dist = stats.beta(a + 1, b)
        direct = integrate.quad(lambda x, d=dist: -d.pdf(x) * d.logpdf(x) if 0 < x < 1 else 0.0, 0, 1, limit=200)[0]
        ours = float(beta_posterior_entropy(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)))
        assert math.isclose(ours, direct, rel_tol=1e-5, abs_tol=1e-6)


def test_reciprocal_rule_and_ordering() -> None:
    """BalEnt >= 0 -> 1/BalEnt (> 1), BalEnt < 0 -> BalEnt (< 0): balanced pixels outrank unbalanced ones."""
    mean = torch.tensor([[0.5], [0.5]], dtype=torch.float64).reshape(2, 1, 1).repeat(1, 1, 2)
    # a + b = 2 (Beta(1, 1) marginals, v = 1/12) versus a + b ~ 2500 (v = 1e-4)
    var = torch.tensor([1 / 12, 1e-4], dtype=torch.float64).reshape(1, 1, 2).repeat(2, 1, 1)
    scores = balanced_entropy_acquisition(balanced_entropy_from_moments(mean, var))[0]
    reference = reference_balentacq(mean.numpy(), var.numpy())[0]
    np.testing.assert_allclose(scores.double().numpy(), reference, rtol=2e-5)
    assert scores[0] > 1.0  # BalEnt = (ln 2 - h(Beta(2, 1))) / (2 ln 2) > 0: reciprocal taken
    assert math.isclose(float(scores[0]), 2 * math.log(2) / (math.log(2) + beta_entropy(2, 1)), rel_tol=1e-5)
    assert scores[1] < 0.0  # tightly concentrated samples: MJEnt < 0, BalEnt kept
