"""MCSummary: streaming in chunks equals one shot; moments are the sample moments."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ls_al_backend.acquisition.mc import MCSummary, entropy

from .strategies import mc_probs


@settings(max_examples=40, deadline=None)
@given(probs=mc_probs(), data=st.data())
def test_streaming_in_chunks_equals_one_shot(probs: torch.Tensor, data: st.DataObject) -> None:
    t, c, h, w = probs.shape
    cuts = sorted(data.draw(st.lists(st.integers(0, t), max_size=3)))
    streamed = MCSummary.empty(c, h, w)
    for start, stop in zip([0, *cuts], [*cuts, t], strict=True):
        streamed.update(probs[start:stop])
    once = MCSummary.from_samples(probs)
    assert streamed.count == once.count == t
    torch.testing.assert_close(streamed.mean, once.mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(streamed.variance, once.variance, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(streamed.mean_entropy, once.mean_entropy, atol=1e-6, rtol=1e-5)
    assert torch.equal(streamed.votes, once.votes)


@settings(max_examples=30, deadline=None)
@given(probs=mc_probs())
def test_moments_match_direct_computation(probs: torch.Tensor) -> None:
    summary = MCSummary.from_samples(probs)
    p64 = probs.double()
    torch.testing.assert_close(summary.mean.double(), p64.mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(summary.variance.double(), p64.var(0, unbiased=False), atol=1e-6, rtol=1e-3)
    torch.testing.assert_close(summary.mean_entropy.double(), entropy(p64, dim=1).mean(0), atol=1e-5, rtol=1e-5)
    assert torch.equal(summary.votes.sum(0), torch.full(summary.spatial_shape, float(probs.shape[0])))
    assert torch.equal(summary.predicted, summary.mean.argmax(0))


def test_deterministic_is_optional_and_kept() -> None:
    probs = torch.softmax(torch.randn(3, 4, 5, 6), dim=1)
    assert MCSummary.from_samples(probs).deterministic is None
    summary = MCSummary.from_samples(probs, deterministic=probs[0])
    assert summary.deterministic is not None and torch.equal(summary.deterministic, probs[0])


def test_update_rejects_wrong_shape() -> None:
    summary = MCSummary.empty(3, 4, 4)
    with pytest.raises(ValueError, match="chunk shaped"):
        summary.update(torch.rand(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\[T, C, H, W\]"):
        MCSummary.from_samples(torch.rand(3, 4, 4))


@settings(max_examples=40, deadline=None)
@given(probs=mc_probs())
def test_votes_count_argmax_with_first_index_on_ties(probs: torch.Tensor) -> None:
    probs = probs.clone()
    probs[:, :, 0, 0] = 1.0 / probs.shape[1]  # an exact tie at one pixel: argmax picks class 0
    expected = torch.nn.functional.one_hot(probs.argmax(dim=1), probs.shape[1]).sum(dim=0).permute(2, 0, 1)
    assert torch.equal(MCSummary.from_samples(probs).votes, expected.to(torch.float32))


def test_scores_of_a_coarse_grid_are_resized_not_its_moments() -> None:
    """Samples that all agree carry no epistemic uncertainty, on a class boundary too: BALD stays 0 at the image
    size. Resizing the moments first (what ``MC_RESOLUTION < 1`` once did) invents disagreement on the boundary."""
    from ls_al_backend.acquisition.heuristics import bald

    left, right = torch.tensor([0.95, 0.05]), torch.tensor([0.05, 0.95])
    grid = torch.stack([left] * 2 + [right] * 2, dim=1)[:, None, :].expand(2, 4, 4)  # [C=2, 4, 4], boundary mid
    summary = MCSummary.from_samples(grid.expand(5, 2, 4, 4).contiguous())
    summary.image_size = (16, 16)
    assert summary.image_shape == (16, 16)
    resized_scores = summary.to_image_size(bald(summary))
    assert resized_scores.shape == (16, 16) and float(resized_scores.abs().max()) < 1e-5

    def resize(tensor: torch.Tensor) -> torch.Tensor:
        batch = tensor[None] if tensor.ndim == 3 else tensor[None, None]
        out = torch.nn.functional.interpolate(batch, size=(16, 16), mode="bilinear", align_corners=False)
        return out[0] if tensor.ndim == 3 else out[0, 0]

    moments_resized = MCSummary(
        summary.count, resize(summary.sum_probs), resize(summary.sum_sq_probs), resize(summary.sum_entropy),
        resize(summary.votes),
    )  # fmt: skip
    assert float(bald(moments_resized).max()) > 0.05, "the old way: a ridge of BALD along the class boundary"


def test_image_predicted_is_the_full_resolution_deterministic_argmax() -> None:
    probs = torch.softmax(torch.randn(3, 4, 2, 2), dim=1)
    summary = MCSummary.from_samples(probs)
    summary.image_size = (8, 8)
    assert summary.image_predicted.shape == (8, 8), "without deterministic: the resized MC mean's argmax"
    summary.deterministic = torch.softmax(torch.randn(4, 8, 8), dim=0)
    summary.deterministic[:, 0, 0] = 0.25  # an exact tie: class 0, as torch.argmax
    assert torch.equal(summary.image_predicted, summary.deterministic.argmax(dim=0))
    assert summary.image_predicted[0, 0] == 0
