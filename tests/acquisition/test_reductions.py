"""Reductions to images, superpixels and pixels; click costs; regional uncertainty is really regional."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ls_al_backend.acquisition.heuristics import HEURISTICS
from ls_al_backend.acquisition.mc import MCSummary
from ls_al_backend.acquisition.reductions import (
    IMAGE_REDUCTIONS,
    pixelpick,
    region_costs,
    region_dominant_class,
    region_means_by_class,
    region_pixel_counts,
    region_scores,
    top_pixels,
)


@st.composite
def score_maps(draw: st.DrawFn) -> torch.Tensor:
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.rand((h, w), generator=generator)


def region_map(h: int, w: int, num: int, seed: int) -> torch.Tensor:
    """Random ids with every id 0..num-1 present (when h * w >= num)."""
    generator = torch.Generator().manual_seed(seed)
    flat = torch.randint(0, num, (h * w,), generator=generator)
    flat[: min(num, h * w)] = torch.arange(min(num, h * w))
    return flat[torch.randperm(h * w, generator=generator)].reshape(h, w)


@settings(max_examples=60, deadline=None)
@given(score_map=score_maps(), data=st.data(), fraction=st.floats(0.01, 1.0))
def test_image_reductions_are_monotone(score_map: torch.Tensor, data: st.DataObject, fraction: float) -> None:
    h, w = score_map.shape
    r, c = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    raised = score_map.clone()
    raised[r, c] += data.draw(st.floats(0.0, 5.0))
    for name, reduce in IMAGE_REDUCTIONS.items():
        before, after = float(reduce(score_map, fraction)), float(reduce(raised, fraction))
        assert after >= before - 1e-6, name
        assert float(score_map.min()) - 1e-6 <= before <= float(score_map.max()) + 1e-6, name


def test_image_reduction_values() -> None:
    score_map = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    assert IMAGE_REDUCTIONS["mean"](score_map, 0.0) == pytest.approx(2.0)
    assert IMAGE_REDUCTIONS["max"](score_map, 0.0) == pytest.approx(5.0)
    assert IMAGE_REDUCTIONS["topk_mean"](score_map, 0.5) == pytest.approx(3.5)
    assert IMAGE_REDUCTIONS["topk_mean"](score_map, 0.01) == pytest.approx(5.0)


@settings(max_examples=50, deadline=None)
@given(score_map=score_maps(), num=st.integers(1, 6), seed=st.integers(0, 1000), data=st.data())
def test_region_scores_are_region_means_and_monotone(
    score_map: torch.Tensor, num: int, seed: int, data: st.DataObject
) -> None:
    h, w = score_map.shape
    regions = region_map(h, w, num, seed)
    scores = region_scores(score_map, regions)
    assert scores.shape == (int(regions.max()) + 1,)
    for rid in range(scores.numel()):
        mask = regions == rid
        assert scores[rid] == pytest.approx(float(score_map[mask].mean()), abs=1e-6)
    maxima = region_scores(score_map, regions, reduce="max")
    assert (maxima >= scores - 1e-6).all()
    assert int(region_pixel_counts(regions).sum()) == h * w
    r, c = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    raised = score_map.clone()
    raised[r, c] += 1.0
    after = region_scores(raised, regions)
    rid = int(regions[r, c])
    assert after[rid] > scores[rid] and torch.equal(torch.cat([after[:rid], after[rid + 1 :]]),
                                                    torch.cat([scores[:rid], scores[rid + 1 :]]))  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(num_maps=st.integers(1, 4), num=st.integers(1, 6), seed=st.integers(0, 1000))
def test_region_means_by_class_are_each_maps_region_scores(num_maps: int, num: int, seed: int) -> None:
    maps = torch.rand((num_maps, 5, 7), generator=torch.Generator().manual_seed(seed))
    regions = region_map(5, 7, num, seed)
    means = region_means_by_class(maps, regions)
    assert means.shape == (num, num_maps) and means.dtype == torch.float32
    for c in range(num_maps):
        assert torch.allclose(means[:, c], region_scores(maps[c], regions), atol=1e-6)


def test_region_means_by_class_rejects_maps_of_another_shape() -> None:
    with pytest.raises(ValueError, match=r"maps \[C, H, W\]"):
        region_means_by_class(torch.rand(2, 4, 4), torch.zeros(4, 5, dtype=torch.long))


def test_uncertain_region_ranks_above_certain_region_of_same_image() -> None:
    """Left half: MC samples disagree; right half: all agree. Regions are columns bands."""
    t, c, h, w = 6, 3, 8, 8
    generator = torch.Generator().manual_seed(0)
    logits = torch.zeros(t, c, h, w)
    logits[:, 0, :, 4:] = 8.0  # certain class 0 on the right, identical across samples
    logits[:, :, :, :4] = torch.randn(t, c, h, 4, generator=generator) * 3  # disagreeing samples on the left
    summary = MCSummary.from_samples(torch.softmax(logits, dim=1))
    regions = (torch.arange(w) // 2).expand(h, w)  # four vertical bands: 0, 1 uncertain; 2, 3 certain
    for name in sorted(set(HEURISTICS) - {"random", "softmax_entropy"}):
        scores = region_scores(HEURISTICS[name](summary), regions)
        assert min(scores[0], scores[1]) > max(scores[2], scores[3]), (name, scores)


def test_costs_per_label_mode() -> None:
    predicted = torch.tensor([[0, 0, 1, 1], [0, 2, 1, 1]])
    regions = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    assert region_costs(predicted, regions, 3, "dominant").tolist() == [1.0, 1.0]
    assert region_costs(predicted, regions, 3, "multiclass").tolist() == [2.0, 1.0]
    assert region_dominant_class(predicted, regions, 3).tolist() == [0, 1]
    with pytest.raises(ValueError, match="label mode"):
        region_costs(predicted, regions, 3, "polygon")


@settings(max_examples=40, deadline=None)
@given(score_map=score_maps(), n=st.integers(0, 70), fraction=st.floats(0.01, 1.0), seed=st.integers(0, 99))
def test_pixel_selection(score_map: torch.Tensor, n: int, fraction: float, seed: int) -> None:
    h, w = score_map.shape
    coords, values = top_pixels(score_map, n)
    assert coords.shape == (min(n, h * w), 2) and len(set(map(tuple, coords.tolist()))) == len(coords)
    if len(values):
        assert float(values.min()) >= float(torch.sort(score_map.reshape(-1), descending=True).values[len(values) - 1])
        assert torch.equal(score_map[coords[:, 0], coords[:, 1]], values)
    coords, values = pixelpick(score_map, n, fraction, torch.Generator().manual_seed(seed))
    assert len(coords) == min(n, h * w) and len(set(map(tuple, coords.tolist()))) == len(coords)
    pool = max(len(coords), -int(-fraction * h * w // 1))
    threshold = torch.sort(score_map.reshape(-1), descending=True).values[min(pool, h * w) - 1]
    assert (values >= threshold).all()
