"""Uncertainty heuristics: ``MCSummary -> [H, W]`` score map, HIGHER = MORE INFORMATIVE.

Every heuristic is a pure function of the streaming :class:`~ls_al_backend.acquisition.mc.MCSummary` (so memory is
``O(C x H x W)`` whatever the number T of MC samples), returns float32 on the summary's device, and is registered in
:data:`HEURISTICS` under its public name. Notation: ``p_t`` the softmax probabilities of MC sample ``t``,
``m = E_t[p_t]`` the MC mean, ``H(q) = -sum_c q_c ln q_c`` (nats), ``p1 >= p2`` the two largest entries of ``m``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ls_al_backend.acquisition.mc import EPS, MCSummary, entropy

Heuristic = Callable[[MCSummary], torch.Tensor]

LN2 = math.log(2.0)


def softmax_entropy(summary: MCSummary) -> torch.Tensor:
    """Single-pass entropy ``H(p_det)`` of the deterministic (dropout OFF) probabilities.

    Range ``[0, ln C]``, higher = more uncertain. Classic max-entropy sampling (Shannon; e.g. Settles 2009 survey).
    Needs ``summary.deterministic``; raises ``ValueError`` when the caller did not set it.
    """
    if summary.deterministic is None:
        raise ValueError(
            "softmax_entropy needs the deterministic (dropout-off) probabilities: set MCSummary.deterministic "
            "or pick an MC heuristic such as 'predictive_entropy'"
        )
    return entropy(summary.deterministic.to(torch.float32), dim=0)


def predictive_entropy(summary: MCSummary) -> torch.Tensor:
    """H(E_t[p_t]) in nats, in ``[0, ln C]``; maximal for a uniform predictive distribution.

    Source: Gal, Islam & Ghahramani 2017, "Deep Bayesian Active Learning with Image Data" (Max Entropy).
    """
    return entropy(summary.mean, dim=0)


def mc_variance(summary: MCSummary) -> torch.Tensor:
    """``(1/C) sum_c Var_t[p_t,c]`` (population variance across samples), mean over classes.

    Range ``[0, 1/4]``, higher = samples disagree more. Source: the MC-dropout "variance" score of the SuperAnnotate
    active-learning study named in the project issue; cf. MeanSD (mean of per-class standard deviations),
    Kampffmeyer et al. 2016.
    """
    return summary.variance.mean(dim=0)


def bald(summary: MCSummary) -> torch.Tensor:
    """Mutual information ``I(y; w) = H(m) - E_t[H(p_t)]`` clamped at 0 (BALD).

    Range ``[0, ln C]``; 0 when all samples agree, higher = more epistemic uncertainty.
    Source: Houlsby et al. 2011 "Bayesian Active Learning for Classification and Preference Learning";
    Gal et al. 2017.
    """
    return (entropy(summary.mean, dim=0) - summary.mean_entropy).clamp_min(0.0)


def least_confidence(summary: MCSummary) -> torch.Tensor:
    """``1 - max_c m_c``. Range ``[0, 1 - 1/C]``, higher = less confident. Source: Settles 2009 (least confident)."""
    return 1.0 - summary.mean.max(dim=0).values


def variation_ratio(summary: MCSummary) -> torch.Tensor:
    """``1 - max_c votes_c / T``: share of samples that disagree with the modal class.

    Range ``[0, 1 - 1/C]``, higher = more disagreement. Source: Freeman 1965; Gal et al. 2017 (Variation Ratios).
    """
    return 1.0 - summary.votes.max(dim=0).values / max(summary.count, 1)


def _top2(summary: MCSummary) -> tuple[torch.Tensor, torch.Tensor]:
    mean = summary.mean
    if mean.shape[0] < 2:
        zeros = torch.zeros_like(mean[0])
        return mean[0], zeros
    top = torch.topk(mean, 2, dim=0).values
    return top[0], top[1]


def bvsb_ratio(summary: MCSummary) -> torch.Tensor:
    """Best-versus-second-best as a ratio ``p2 / p1`` of the MC mean.

    Range ``[0, 1]``, 1 when the two best classes tie, higher = more ambiguous.
    Source: Joshi et al. 2009; used as ``p2/p1`` by Cai et al. CVPR 2021 and MulActSeg (Hwang et al. NeurIPS 2023).
    """
    p1, p2 = _top2(summary)
    return p2 / p1.clamp_min(EPS)


def bvsb_margin(summary: MCSummary) -> torch.Tensor:
    """Best-versus-second-best as a margin, turned into a score: ``1 - (p1 - p2)``.

    Range ``[0, 1]``, higher = smaller margin = more ambiguous. Source: Scheffer et al. 2001 (margin sampling),
    Joshi et al. 2009 (BvSB).
    """
    p1, p2 = _top2(summary)
    return 1.0 - (p1 - p2)


def vote_entropy(summary: MCSummary) -> torch.Tensor:
    """``H(votes / T)``: entropy of the distribution of the samples' argmax classes.

    Range ``[0, ln min(C, T)]``, higher = more disagreement. Source: Dagan & Engelson 1995 (query by committee).
    """
    return entropy(summary.votes / max(summary.count, 1), dim=0)


def mean_kl(summary: MCSummary) -> torch.Tensor:
    """``E_t[KL(p_t || m)]``, computed from the running sums, clamped at 0.

    ``E_t KL(p_t||m) = E_t sum_c p_t,c ln p_t,c - sum_c m_c ln m_c = H(m) - E_t[H(p_t)]``: algebraically equal
    to BALD (the identity is tested). Range ``[0, ln C]``, higher = samples further from their mean.
    Source: the "mean KL to the consensus" disagreement of query by committee (McCallum & Nigam 1998).
    """
    count = max(summary.count, 1)
    cross = (summary.sum_probs * torch.log(summary.mean.clamp_min(EPS))).sum(dim=0)
    return ((-summary.sum_entropy - cross) / count).clamp_min(0.0)


# --- balanced entropy (Woo, ICLR 2023) -------------------------------------------------------------------------------

BALENT_MEAN_EPS = 1e-6  # m_c is clamped to [eps, 1 - eps]
BALENT_VAR_MIN = 1e-9  # variance floor (as in the authors' code)
BALENT_CONCENTRATION_MIN = 1e-3  # a + b = m(1-m)/v - 1 is clamped below by this (v <= m(1-m) up to rounding)
BALENT_MAX = 1e6  # BalEntAcq is clamped to [-BALENT_MAX, BALENT_MAX]


def beta_posterior_entropy(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Differential entropy ``h(Beta(alpha + 1, beta))`` (nats, always <= 0 on [0, 1]).

    ``h(Beta(a, b)) = ln B(a, b) - (a-1) psi(a) - (b-1) psi(b) + (a+b-2) psi(a+b)`` with ``a = alpha + 1, b = beta``.
    """
    a = alpha + 1.0
    log_beta_fn = torch.lgamma(a) + torch.lgamma(beta) - torch.lgamma(a + beta)
    return (
        log_beta_fn
        - alpha * torch.digamma(a)
        - (beta - 1.0) * torch.digamma(beta)
        + (alpha + beta - 1.0) * torch.digamma(a + beta)
    )


def balanced_entropy_from_moments(mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """BalEntAcq from per-class MC mean ``m`` and variance ``v`` (``[C, ...]`` each); see :func:`balanced_entropy`.

    Computed in float64, returned float32.
    """
    m = mean.to(torch.float64).clamp(BALENT_MEAN_EPS, 1.0 - BALENT_MEAN_EPS)
    v = variance.to(torch.float64).clamp_min(BALENT_VAR_MIN)
    concentration = (m * (1.0 - m) / v - 1.0).clamp_min(BALENT_CONCENTRATION_MIN)  # a_c + b_c
    alpha = m * concentration
    beta = (1.0 - m) * concentration
    posterior = (m * beta_posterior_entropy(alpha, beta)).clamp_max(0.0)  # h <= 0 exactly; clamp rounding only
    pred_entropy = entropy(mean.to(torch.float64).clamp_min(0.0), dim=0)
    mjent = posterior.sum(dim=0) + pred_entropy
    return (mjent / (pred_entropy + LN2)).to(torch.float32)


def balanced_entropy_acquisition(balent: torch.Tensor) -> torch.Tensor:
    """The authors' acquisition value of BalEnt (``< 1``): ``1 / BalEnt`` if ``BalEnt >= 0`` (in ``(1, 1e6]``), else
    ``BalEnt`` (in ``[-1e6, 0)``). Unbounded: a mean over pixels is decided by the few nearest ``BalEnt = 0``."""
    return torch.where(balent >= 0, 1.0 / balent.clamp_min(1.0 / BALENT_MAX), balent.clamp_min(-BALENT_MAX))


def balanced_entropy_rank_score(balent: torch.Tensor) -> torch.Tensor:
    """A bounded score in ``[0, 2]`` that orders pixels exactly as :func:`balanced_entropy_acquisition` does:
    ``2 - BalEnt`` in ``(1, 2]`` for ``BalEnt >= 0`` and ``exp(BalEnt)`` in ``(0, 1)`` below, so every
    non-negative BalEnt still outranks every negative one and the maximum is at ``BalEnt = 0+``."""
    return torch.where(balent >= 0, 2.0 - balent, torch.exp(balent.clamp_min(-BALENT_MAX)))


def balanced_entropy(summary: MCSummary) -> torch.Tensor:
    """Balanced entropy acquisition BalEntAcq (Woo, ICLR 2023, "Active Learning in Bayesian Neural Networks with
    Balanced Entropy Learning Principle", arXiv 2105.14559; applied per pixel to segmentation in "Bayesian Active
    Learning for Semantic Segmentation", arXiv 2408.01694).

    Per class, the marginal ``P_c`` of the softmax probability is approximated by ``Beta(a_c, b_c)`` fitted by
    moments: ``a_c + b_c = m_c (1 - m_c) / v_c - 1``, ``a_c = m_c (a_c + b_c)``, ``b_c = (1 - m_c)(a_c + b_c)``.
    ``MJEnt = sum_c m_c h(Beta(a_c + 1, b_c)) + H(m)`` (marginalised joint entropy, ``h`` differential entropy),
    ``BalEnt = MJEnt / (H(m) + ln 2)`` and ``BalEntAcq = 1 / BalEnt if BalEnt >= 0 else BalEnt`` (as implemented
    in the authors' code, github.com/jaeohwoo/BalancedEntropy, ``src/torch_utils.py``). Since ``h <= 0``,
    ``BalEnt < 1``. BalEntAcq spans ``(1, 1e6]`` and ``[-1e6, 0)``, so means over regions and images would be
    decided by a few pixels near ``BalEnt = 0``; this heuristic returns
    :func:`balanced_entropy_rank_score` instead: the same order of pixels, bounded to ``[0, 2]`` (maximum at the
    balance point ``BalEnt -> 0+``). Higher = more informative.

    ``v`` is the population variance over the T samples (the authors' code uses the unbiased ``T - 1`` estimator,
    a factor ``T / (T - 1)`` larger, which can exceed ``m (1 - m)``). Numerics: computed in float64; ``m`` clamped
    to ``[1e-6, 1 - 1e-6]``, ``v >= 1e-9``, ``a + b >= 1e-3``, each
    class term ``m_c h_c <= 0``.
    """
    return balanced_entropy_rank_score(balanced_entropy_from_moments(summary.mean, summary.variance))


def random_scores(summary: MCSummary, generator: torch.Generator | None = None) -> torch.Tensor:
    """I.i.d. ``U[0, 1)`` scores (the random baseline). Range ``[0, 1)``; carries no information.

    The seed is passed as a CPU ``torch.Generator`` (``get_heuristic("random", generator=g)`` binds it); the draw
    happens on CPU and is moved to the summary's device, so a seed gives the same map on CPU and CUDA. Without a
    generator, torch's global RNG is used.
    """
    height, width = summary.image_shape  # drawn at the image's size: pixel-level random stays uniform
    values = torch.rand((height, width), generator=generator, dtype=torch.float32)
    return values.to(summary.sum_probs.device)


@dataclass(frozen=True)
class HeuristicRecord:
    """Everything the rest of the code knows about one heuristic.

    Attributes:
        name: its public name (``params.acquisition.heuristic``).
        function: ``MCSummary -> [H, W]`` float32 score map; HIGHER = MORE INFORMATIVE for every heuristic.
        maximum: the largest value it can take for ``C`` classes (scores are divided by it so that task, region
            and pixel scores lie in [0, 1], and the overlay is comparable across images).
        stochastic: it draws random numbers and accepts a ``generator`` keyword (bound by :func:`get_heuristic`).
    """

    name: str
    function: Heuristic
    maximum: Callable[[int], float]
    stochastic: bool = False

    def __post_init__(self) -> None:
        for classes in (2, 3, 19):
            top = self.maximum(classes)
            if not (isinstance(top, (int, float)) and math.isfinite(top) and top > 0):
                raise ValueError(f"heuristic {self.name!r}: maximum({classes}) must be a positive number, got {top!r}")


def _log_classes(classes: int) -> float:
    return math.log(max(2, classes))


def _one_minus_inverse(classes: int) -> float:
    return 1.0 - 1.0 / max(2, classes)


#: Every heuristic, by name. A new one is one :class:`HeuristicRecord` here (its maximum is required).
HEURISTIC_RECORDS: dict[str, HeuristicRecord] = {
    record.name: record
    for record in (
        HeuristicRecord("softmax_entropy", softmax_entropy, _log_classes),
        HeuristicRecord("predictive_entropy", predictive_entropy, _log_classes),
        HeuristicRecord("mc_variance", mc_variance, lambda classes: 0.25),
        HeuristicRecord("bald", bald, _log_classes),
        HeuristicRecord("least_confidence", least_confidence, _one_minus_inverse),
        HeuristicRecord("variation_ratio", variation_ratio, _one_minus_inverse),
        HeuristicRecord("bvsb_ratio", bvsb_ratio, lambda classes: 1.0),
        HeuristicRecord("bvsb_margin", bvsb_margin, lambda classes: 1.0),
        HeuristicRecord("vote_entropy", vote_entropy, _log_classes),
        HeuristicRecord("mean_kl", mean_kl, _log_classes),
        HeuristicRecord("balanced_entropy", balanced_entropy, lambda classes: 2.0),
        HeuristicRecord("random", random_scores, lambda classes: 1.0, stochastic=True),
    )
}

#: name -> score function, read from :data:`HEURISTIC_RECORDS`.
HEURISTICS: dict[str, Heuristic] = {name: record.function for name, record in HEURISTIC_RECORDS.items()}


def heuristic_maximum(heuristic: str, num_classes: int) -> float:
    """The largest value a heuristic can take for ``num_classes`` classes (``KeyError`` for an unknown name)."""
    return HEURISTIC_RECORDS[heuristic].maximum(num_classes)


def get_heuristic(name: str, generator: torch.Generator | None = None) -> Heuristic:
    """The heuristic registered as ``name``; a stochastic one gets ``generator`` bound to it.

    Raises ``KeyError`` listing the known names for an unknown one.
    """
    try:
        heuristic = HEURISTICS[name]
    except KeyError:
        raise KeyError(f"unknown heuristic {name!r}; known: {', '.join(sorted(HEURISTICS))}") from None
    if HEURISTIC_RECORDS[name].stochastic:
        return functools.partial(heuristic, generator=generator)
    return heuristic
