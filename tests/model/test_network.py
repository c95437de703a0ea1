"""The network: real ImageNet encoder weights loaded offline, a dropout-only stochastic head."""

from __future__ import annotations

import copy

import pytest
import torch

from ls_al_backend.model.network import NetworkSpec, PretrainedWeightsError, build_network, dropout, fold_batchnorm
from ls_al_backend.model.pretrained import efficientnet_lite0_state_dict, map_state_dict

SPEC = NetworkSpec(arch="Unet", encoder="timm-tf_efficientnet_lite0", num_classes=3, head_dropout=0.5)


@pytest.fixture(scope="module")
def net():
    return build_network(SPEC)


def test_encoder_holds_the_packaged_imagenet_weights(net) -> None:
    packaged = [tensor for name, tensor in efficientnet_lite0_state_dict().items() if not name.startswith("_fc.")]
    loaded = list(net.encoder.state_dict().values())
    assert len(loaded) == len(packaged) == 294
    assert all(torch.equal(a, b) for a, b in zip(loaded, packaged, strict=True))


def test_mapping_fails_loudly_on_a_shape_mismatch() -> None:
    source = {"a": torch.zeros(3), "b": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match="shape mismatch"):
        map_state_dict(source, {"x": torch.zeros(3), "y": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="count mismatch"):
        map_state_dict(source, {"x": torch.zeros(3)})


def test_encoders_without_offline_weights_are_refused_with_advice() -> None:
    with pytest.raises(PretrainedWeightsError, match="ENCODER_WEIGHTS=none"):
        build_network(NetworkSpec("Unet", "resnet18", 3, 0.1, encoder_weights="imagenet"))


def test_random_weights_need_no_download() -> None:
    net = build_network(NetworkSpec("FPN", "resnet18", 4, 0.1, encoder_weights="none"))
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)


def test_forward_gives_logits_at_input_size(net) -> None:
    assert net(torch.zeros(2, 3, 64, 96)).shape == (2, 3, 64, 96)


def test_untrained_network_is_the_same_on_every_build() -> None:
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(build_network(SPEC)(x), build_network(SPEC)(x))


def test_only_the_head_is_stochastic(net) -> None:
    x = torch.randn(1, 3, 64, 64)
    features = net.features(x)
    assert torch.equal(features, net.features(x)), "encoder/decoder must be deterministic in eval mode"
    a = net.head(features, (64, 64), stochastic=True)
    b = net.head(features, (64, 64), stochastic=True)
    assert not torch.equal(a, b)
    assert torch.equal(net.head(features, (64, 64)), net.head(features, (64, 64)))


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_dropout_zeroes_a_share_p_and_keeps_the_mean(p: float) -> None:
    torch.manual_seed(0)
    features = torch.full((20, 16, 32, 32), 2.0)  # 327,680 elements: the share is within 0.005 of p
    dropped = dropout(features, p)
    kept = dropped != 0
    assert abs(1.0 - kept.float().mean().item() - p) < 0.005
    assert torch.allclose(dropped[kept], torch.tensor(2.0 / (1.0 - p))), "survivors scaled by 1 / (1 - p)"
    assert abs(dropped.mean().item() - 2.0) < 0.02, "the expectation is unchanged, as F.dropout's"


def test_dropout_of_zero_is_the_identity_and_of_one_all_zeros() -> None:
    features = torch.randn(2, 3, 4, 4)
    assert dropout(features, 0.0) is features
    assert torch.equal(dropout(features, 1.0), torch.zeros_like(features))


def test_dropout_draws_from_the_torch_generator() -> None:
    features = torch.ones(4, 8, 8)
    torch.manual_seed(7)
    first = dropout(features, 0.5)
    torch.manual_seed(7)
    assert torch.equal(first, dropout(features, 0.5)), "seeded runs repeat"


def test_folding_batchnorm_keeps_the_logits_and_leaves_the_network_alone(net) -> None:
    trained_like = copy.deepcopy(net)
    generator = torch.Generator().manual_seed(0)
    for module in trained_like.modules():  # running statistics away from their initial 0 / 1
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1.0, 1.0, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    before = {name: value.clone() for name, value in trained_like.state_dict().items()}
    folded = fold_batchnorm(trained_like)
    assert folded is not trained_like and not folded.training
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.encoder.modules())
    images = torch.randn(2, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, actual = trained_like.eval()(images), folded(images)
    assert torch.allclose(actual, expected, atol=1e-4, rtol=1e-4)
    assert folded.output_stride == trained_like.output_stride == 32
    after = trained_like.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before), "the original keeps its weights"


def test_a_network_that_cannot_be_traced_is_served_unfolded(net, caplog) -> None:
    class Untraceable(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            if images.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return images
            return -images

    untraceable = copy.deepcopy(net)
    untraceable.decoder = Untraceable()
    assert fold_batchnorm(untraceable) is untraceable
    assert "BatchNorm not folded" in caplog.text
