"""AcquisitionConfig validation and score_image end to end (no Label Studio involved)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from ls_al_backend.acquisition import AcquisitionConfig, MCSummary, SuperpixelCache, score_image
from ls_al_backend.acquisition.heuristics import HEURISTICS


def half_uncertain(h: int = 32, w: int = 48, t: int = 6, c: int = 3, seed: int = 0) -> tuple[MCSummary, np.ndarray]:
    """Left half: dark image, MC samples disagree. Right half: bright image, every sample says class 1."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.zeros(t, c, h, w)
    logits[:, 1, :, w // 2 :] = 9.0
    logits[:, :, :, : w // 2] = torch.randn(t, c, h, w // 2, generator=generator) * 3.0
    probs = torch.softmax(logits, dim=1)
    image = np.zeros((h, w, 3), np.uint8)
    image[:, w // 2 :] = 220
    image[:, : w // 2] = 40
    image = np.clip(image + np.random.default_rng(seed).normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    return MCSummary.from_samples(probs, deterministic=probs[0]), image


def test_from_mapping_parses_strings_and_keeps_defaults() -> None:
    config = AcquisitionConfig.from_mapping(
        {"heuristic": "BALD", "top_k_regions": "5", "nu": "0.5", "budget": "12", "superpixel_count": None},
        seed=3,
    )
    assert (config.heuristic, config.top_k_regions, config.nu, config.budget, config.seed) == ("bald", 5, 0.5, 12.0, 3)
    assert config.superpixel_count is None and config.image_reduction == "mean"
    assert AcquisitionConfig.from_mapping({"budget": "none"}).budget is None
    assert AcquisitionConfig.from_mapping(config.to_dict()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.nu = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"heuristic": "magic"}, "heuristic='magic' is not one of"),
        ({"image_reduction": "median"}, "image_reduction"),
        ({"superpixel_method": "voronoi"}, "superpixel_method"),
        ({"class_balance": "both"}, "class_balance"),
        ({"label_mode": "polygon"}, "label_mode"),
        ({"sampling": "gumbel"}, "sampling"),
        ({"top_k_regions": "ten"}, "top_k_regions='ten'"),
        ({"top_k_regions": 2.5}, "top_k_regions"),
        ({"nu": -1}, "nu=-1"),
        ({"temperature": 0}, "temperature"),
        ({"top_fraction": 1.5}, "top_fraction"),
        ({"seed": True}, "seed"),
        ({"colour": "red"}, "unknown acquisition parameter"),
    ],
)
def test_from_mapping_rejects_bad_values_readably(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AcquisitionConfig.from_mapping(params)


def test_balanced_entropy_combines_with_class_balance_and_power_sampling() -> None:
    """Its bounded score is non-negative, so weights <= 1 and power sampling keep their meaning."""
    config = AcquisitionConfig.from_mapping({"heuristic": "balanced_entropy", "class_balance": "classbal"})
    assert config.class_balance == "classbal"
    assert AcquisitionConfig.from_mapping({"heuristic": "balanced_entropy", "sampling": "power"}).sampling == "power"


@pytest.mark.parametrize("heuristic", sorted(set(HEURISTICS) - {"random"}))
def test_uncertain_region_is_proposed_first(heuristic: str) -> None:
    summary, image = half_uncertain()
    config = AcquisitionConfig(heuristic=heuristic, superpixel_size=8, top_k_regions=3)
    result = score_image(summary, image, config, cache=SuperpixelCache())
    assert result.superpixels is not None and result.region_scores is not None
    assert result.superpixels.shape == (32, 48) and result.region_scores.numel() == result.superpixels.max() + 1
    assert result.selected_regions is not None and len(result.selected_regions) == 3
    left = result.superpixels[:, :24]
    for region in result.selected_regions.tolist():
        assert bool((left == region).any()) and not bool((result.superpixels[:, 24:] == region).any())
    # regions really ranked within the image: every pure-left region beats every pure-right region
    pure_left = set(left.unique().tolist()) - set(result.superpixels[:, 24:].unique().tolist())
    pure_right = set(result.superpixels[:, 24:].unique().tolist()) - set(left.unique().tolist())
    assert pure_left and pure_right
    assert min(result.region_scores[list(pure_left)]) > max(result.region_scores[list(pure_right)])


def test_budget_pixels_and_class_balance() -> None:
    summary, image = half_uncertain()
    config = AcquisitionConfig.from_mapping(
        {
            "heuristic": "bald",
            "superpixel_size": 8,
            "label_mode": "multiclass",
            "budget": 7,
            "top_k_regions": 100,
            "class_balance": "pixbal",
            "nu": 2.0,
            "top_n_pixels": 10,
            "pixel_selection": "pixelpick",
            "top_fraction": 0.2,
            "sampling": "power",
        }  # fmt: skip
    )
    result = score_image(summary, image, config, cache=SuperpixelCache())
    assert result.region_costs is not None and result.selected_regions is not None
    assert float(result.region_costs[result.selected_regions].sum()) <= 7.0
    assert result.weight_map is not None and result.weight_map.shape == (32, 48)
    assert result.top_pixels.shape == (10, 2) and (result.top_pixels[:, 1] < 24).all()
    again = score_image(summary, image, config, cache=SuperpixelCache())
    assert torch.equal(result.selected_regions, again.selected_regions) and torch.equal(result.top_pixels,
                                                                                        again.top_pixels)  # fmt: skip


def test_classbal_and_kcenter_and_no_superpixels() -> None:
    summary, image = half_uncertain()
    config = AcquisitionConfig(superpixel_size=8, class_balance="classbal", diversity="kcenter", top_k_regions=4)
    result = score_image(summary, image, config, cache=SuperpixelCache())
    assert result.weight_map is not None
    assert float(result.weight_map.min()) >= float(np.exp(-1)) - 1e-6 and float(result.weight_map.max()) <= 1.0
    assert result.selected_regions is not None and len(set(result.selected_regions.tolist())) == 4
    plain = score_image(summary, None, AcquisitionConfig(superpixel_method="none", top_n_pixels=5))
    assert plain.superpixels is None and plain.region_scores is None and plain.top_pixels.shape == (5, 2)
    assert (plain.top_pixels[:, 1] < 24).all()


def test_image_score_orders_images_and_errors_are_clear() -> None:
    uncertain, image = half_uncertain()
    certain = MCSummary.from_samples(torch.softmax(torch.zeros(4, 3, 32, 48).index_fill_(1, torch.tensor([1]), 9.0), 1))
    config = AcquisitionConfig(heuristic="predictive_entropy", superpixel_method="none")
    assert score_image(uncertain, image, config).image_score > score_image(certain, image, config).image_score
    with pytest.raises(ValueError, match="image is"):
        score_image(uncertain, image[:16], config)
    with pytest.raises(ValueError, match="no samples"):
        score_image(MCSummary.empty(3, 32, 48), image, config)
    with pytest.raises(ValueError, match="needs the image"):
        score_image(uncertain, None, AcquisitionConfig())
    with pytest.raises(ValueError, match="deterministic"):
        score_image(certain, None, AcquisitionConfig(heuristic="softmax_entropy", superpixel_method="none"))


def test_random_heuristic_is_reproducible_per_seed_and_image() -> None:
    summary, image = half_uncertain()
    config = AcquisitionConfig(heuristic="random", superpixel_method="none")
    a, b = score_image(summary, image, config), score_image(summary, image, config)
    assert torch.equal(a.score_map, b.score_map) and a.seed == b.seed
    other_seed = score_image(summary, image, dataclasses.replace(config, seed=1))
    other_image = score_image(summary, 255 - image, config)
    assert not torch.equal(a.score_map, other_seed.score_map)
    assert not torch.equal(a.score_map, other_image.score_map)


def test_a_random_task_order_draws_the_image_score_per_image_and_leaves_the_maps_to_the_model() -> None:
    """``task_order="random"``: the queue score is a seeded draw in [0, maximum) that no model changes (the same
    image keeps its place across versions); the score map, which the overlay shows, is the heuristic's."""
    uncertain, image = half_uncertain()
    certain = MCSummary.from_samples(torch.softmax(torch.zeros(4, 3, 32, 48).index_fill_(1, torch.tensor([1]), 9.0), 1))
    config = AcquisitionConfig(heuristic="predictive_entropy", superpixel_method="none", task_order="random")
    drawn = score_image(uncertain, image, config)
    assert drawn.image_score == score_image(certain, image, config).image_score, "the model does not move it"
    assert 0.0 <= drawn.image_score < math.log(3)
    assert drawn.image_score != score_image(uncertain, 255 - image, config).image_score
    assert drawn.image_score != score_image(uncertain, image, dataclasses.replace(config, seed=1)).image_score
    scored = score_image(uncertain, image, dataclasses.replace(config, task_order="score"))
    assert torch.equal(drawn.score_map, scored.score_map)
    assert scored.image_score == pytest.approx(float(scored.score_map.mean()))
    with pytest.raises(ValueError, match="task_order='model' is not one of: random, score"):
        AcquisitionConfig.from_mapping({"task_order": "model"})


def test_a_pool_prior_changes_pixbal_weights_from_the_single_image_estimate() -> None:
    """PixBal down-weights the classes common in the POOL, not merely in this image."""
    summary, image = half_uncertain()
    config = AcquisitionConfig(superpixel_size=8, class_balance="pixbal")
    alone = score_image(summary, image, config)
    classes = summary.num_classes
    rare_here = torch.zeros(classes)
    rare_here[int(summary.image_predicted.flatten().mode().values)] = 1.0  # the pool is all this image's majority
    pooled = score_image(summary, image, config, class_prior=rare_here, dominant_share=torch.full((classes,), 0.5))
    assert not torch.allclose(alone.weight_map, pooled.weight_map)
