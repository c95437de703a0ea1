"""The network: real ImageNet encoder weights loaded offline, a dropout-only stochastic head."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from ls_al_backend.model.inference import to_tensor
from ls_al_backend.model.network import NetworkSpec, PretrainedWeightsError, build_network, dropout, fold_batchnorm
from ls_al_backend.model.pretrained import efficientnet_lite0_state_dict, map_state_dict
from tests.conftest import camvid_root

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


def batchnorms_run(net: torch.nn.Module) -> int:
    """How many BatchNorm calls one forward of ``net`` on a 64 x 64 image makes."""
    calls = []
    hooks = [
        module.register_forward_pre_hook(lambda *_: calls.append(1))
        for module in net.modules()
        if isinstance(module, torch.nn.BatchNorm2d)
    ]
    with torch.no_grad():
        net(torch.zeros(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    return len(calls)


def camvid_batch(count: int, size: tuple[int, int] = (128, 96)) -> torch.Tensor:
    """The first ``count`` CamVid validation images, resized to ``size`` (width, height), normalised."""
    paths = sorted((camvid_root() / "val" / "images").glob("*.jpg"))[:count]
    images = [np.asarray(Image.open(path).convert("RGB").resize(size, Image.BILINEAR)) for path in paths]
    return torch.stack([to_tensor(image) for image in images]).contiguous(memory_format=torch.channels_last)


def test_folding_batchnorm_keeps_the_features_on_camvid_images_and_leaves_the_network_alone(net) -> None:
    trained_like = copy.deepcopy(net)  # the encoder keeps its ImageNet statistics, the decoder's move off 0 / 1
    generator = torch.Generator().manual_seed(0)
    for module in trained_like.decoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
    before = {name: value.clone() for name, value in trained_like.state_dict().items()}
    folded = fold_batchnorm(trained_like)
    assert folded is not trained_like and not folded.training
    assert batchnorms_run(trained_like) == 58 and batchnorms_run(folded) == 0, "every BatchNorm that runs is folded"
    images = camvid_batch(2)
    with torch.no_grad():
        expected, actual = trained_like.eval().features(images), folded.features(images)
        logits_expected, logits_actual = trained_like(images), folded(images)
    scale = float(expected.abs().max())
    assert float((actual - expected).abs().max()) <= 3e-5 * scale, "folding changes the features by rounding only"
    assert torch.allclose(logits_actual, logits_expected, atol=1e-4, rtol=1e-4)
    assert folded.output_stride == trained_like.output_stride == 32
    after = trained_like.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before), "the original keeps its weights"


def test_a_convolution_whose_output_is_read_twice_is_not_folded(net, caplog) -> None:
    class ReadsTwice(torch.nn.Module):
        """The decoder, then a convolution whose output feeds a BatchNorm and, besides, the sum."""

        def __init__(self, decoder: torch.nn.Module):
            super().__init__()
            self.decoder = decoder
            self.conv = torch.nn.Conv2d(16, 16, kernel_size=1)
            self.norm = torch.nn.BatchNorm2d(16).eval()
            self.norm.running_var.fill_(4.0)

        def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
            convolved = self.conv(self.decoder(features))
            return self.norm(convolved) + convolved

    reads_twice = copy.deepcopy(net)
    reads_twice.decoder = ReadsTwice(reads_twice.decoder).eval()
    assert fold_batchnorm(reads_twice) is reads_twice
    assert "BatchNorm not folded (folding changed the features" in caplog.text


def test_a_network_without_batchnorm_is_served_as_it_is(caplog) -> None:
    plain = build_network(NetworkSpec("Unet", "resnet18", 2, 0.1, encoder_weights="none"))
    for name, module in list(plain.named_modules()):
        if isinstance(module, torch.nn.BatchNorm2d):
            parent, _, attribute = name.rpartition(".")
            setattr(plain.get_submodule(parent), attribute, torch.nn.Identity())
    assert fold_batchnorm(plain) is plain
    assert "no convolution followed by a BatchNorm" in caplog.text
