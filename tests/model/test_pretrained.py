"""Offline ImageNet weights: the packaged EfficientNet-Lite0 tensors map onto smp's encoder by position, and any
count or shape mismatch fails loudly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ls_al_backend.model.network import NetworkSpec, build_network
from ls_al_backend.model.pretrained import efficientnet_lite0_state_dict, map_state_dict


def test_the_packaged_weights_load_into_the_encoder_and_are_not_its_random_init() -> None:
    spec = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=2, head_dropout=0.1)
    net = build_network(spec)
    random_init = build_network(dataclasses.replace(spec, encoder_weights="none"))
    mapped = map_state_dict(efficientnet_lite0_state_dict(), net.encoder.state_dict())
    loaded = net.encoder.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in mapped.items())
    stem = next(name for name in loaded if name.endswith("weight"))
    assert not torch.equal(loaded[stem], random_init.encoder.state_dict()[stem])


def test_a_count_or_shape_mismatch_is_refused() -> None:
    target = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)}
    with pytest.raises(ValueError, match="weight count mismatch"):
        map_state_dict({"x": torch.zeros(2, 3)}, target)
    with pytest.raises(ValueError, match="shape mismatch mapping y"):
        map_state_dict({"x": torch.zeros(2, 3), "y": torch.zeros(5), "_fc.weight": torch.zeros(1)}, target)
    mapped = map_state_dict({"x": torch.zeros(2, 3), "y": torch.ones(4), "_fc.weight": torch.zeros(1)}, target)
    assert list(mapped) == ["a.weight", "b.weight"] and torch.equal(mapped["b.weight"], torch.ones(4))
