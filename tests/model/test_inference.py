"""MC dropout: encoder once, head sampled T times, BatchNorm untouched, outputs at the image size."""

from __future__ import annotations

import pytest
import torch

from ls_al_backend.model.inference import mc_dropout, mc_dropout_batch, pad_to_multiple, working_size
from ls_al_backend.model.network import NetworkSpec, build_network
from tests.conftest import random_rgb


@pytest.fixture(scope="module")
def net():
    return build_network(NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=4, head_dropout=0.5))


def batchnorm_state(net) -> list[torch.Tensor]:
    return [tensor.clone() for name, tensor in net.state_dict().items() if "running" in name or "num_batches" in name]


def test_summary_is_at_the_image_size_even_when_not_divisible_by_32(net) -> None:
    summary = mc_dropout(net, random_rgb(50, 70), samples=3)
    assert summary.count == 3
    assert summary.mean.shape == (4, 50, 70)
    assert torch.allclose(summary.mean.sum(dim=0), torch.ones(50, 70), atol=1e-5)
    assert summary.deterministic.shape == (4, 50, 70)


def test_large_images_are_downscaled_for_the_network_and_upscaled_back(net) -> None:
    summary = mc_dropout(net, random_rgb(100, 200), samples=2, max_side=64)
    assert working_size(100, 200, 64) == (32, 64)
    assert summary.spatial_shape == (32, 64) and summary.image_shape == (100, 200)
    assert summary.deterministic.shape == (4, 100, 200), "class probabilities at the image size"
    assert summary.to_image_size(summary.mean).shape == (4, 100, 200)


def test_samples_differ_but_batchnorm_statistics_do_not_change(net) -> None:
    before = batchnorm_state(net)
    summary = mc_dropout(net, random_rgb(64, 64), samples=6, chunk_size=4)
    assert summary.variance.max() > 0, "dropout must make the samples differ"
    assert all(torch.equal(a, b) for a, b in zip(before, batchnorm_state(net), strict=True))
    assert not net.training


def test_refuses_a_network_in_training_mode(net) -> None:
    net.train()
    try:
        with pytest.raises(RuntimeError, match="eval mode"):
            mc_dropout(net, random_rgb(32, 32), samples=1)
    finally:
        net.eval()


def test_padding_reaches_a_multiple() -> None:
    assert pad_to_multiple(torch.zeros(1, 3, 33, 64), 32).shape == (1, 3, 64, 64)
    assert pad_to_multiple(torch.zeros(1, 3, 5, 5), 32).shape == (1, 3, 32, 32)


def test_reduced_mc_resolution_gives_full_size_statistics_on_a_coarser_grid(net) -> None:
    image = random_rgb(64, 96)
    full = mc_dropout(net, image, samples=8)
    coarse = mc_dropout(net, image, samples=8, mc_scale=0.25)
    assert full.mean.shape == (4, 64, 96) and full.image_size is None
    assert coarse.spatial_shape == (16, 24) and coarse.image_shape == (64, 96), "sums on the coarse grid"
    assert coarse.count == 8 and torch.equal(coarse.deterministic, full.deterministic), "class masks stay exact"
    assert torch.allclose(coarse.mean.sum(dim=0), torch.ones(16, 24), atol=1e-4)
    assert torch.allclose(coarse.votes.sum(dim=0), torch.full((16, 24), 8.0), atol=1e-4)
    assert coarse.to_image_size(coarse.variance.mean(dim=0)).shape == (64, 96)
    assert coarse.variance.max() > 0


def test_a_batch_gives_the_summaries_of_one_call_per_image(net) -> None:
    images = [random_rgb(40, 56, seed) for seed in range(3)] + [random_rgb(30, 30, 9)]
    torch.manual_seed(0)
    one_by_one = [mc_dropout(net, image, samples=4, mc_scale=0.5) for image in images]
    torch.manual_seed(0)
    batched = mc_dropout_batch(net, images, samples=4, mc_scale=0.5, batch_size=2)
    assert len(batched) == len(images)
    for single, together in zip(one_by_one, batched, strict=True):
        assert together.image_shape == single.image_shape and together.count == 4
        torch.testing.assert_close(together.deterministic, single.deterministic, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(together.sum_probs, single.sum_probs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(together.sum_sq_probs, single.sum_sq_probs, atol=1e-4, rtol=1e-4)
