"""Inference: image preprocessing and efficient MC dropout.

MC dropout runs the encoder and decoder ONCE, then samples only ``dropout + 1x1 classifier`` T times,
batched in chunks, folding each chunk into an :class:`MCSummary` (memory ``O(C x H x W)``).
Only the head's dropout is stochastic: the network stays in eval mode, so BatchNorm keeps its
running statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ls_al_backend.acquisition.mc import MCSummary
from ls_al_backend.model.network import SegmentationNet
from ls_al_backend.model.precision import FLOAT32, Precision, autocast, to_channels_last
from ls_al_backend.model.pretrained import IMAGENET_MEAN, IMAGENET_STD


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """Size the network sees: the image scaled down (never up) so its longest side is at most ``max_side``."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 RGB -> ``[3, H, W]`` float32, normalised for the encoder."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image shaped [H, W, 3], got {image.shape} {image.dtype}")
    tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32) / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (tensor - mean) / std


def pad_to_multiple(batch: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``[B, C, H, W]`` on the bottom and right (reflection) so H and W divide by ``multiple``."""
    height, width = batch.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return batch
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(batch, (0, pad_w, 0, pad_h), mode=mode)


@torch.no_grad()
def mc_dropout(
    net: SegmentationNet,
    image: np.ndarray,
    samples: int,
    max_side: int = 512,
    chunk_size: int = 5,
    mc_scale: float = 1.0,
    precision: Precision = FLOAT32,
) -> MCSummary:
    """MC-dropout summary of one ``[H, W, 3]`` uint8 image (:func:`mc_dropout_batch` of one image)."""
    return mc_dropout_batch(net, [image], samples, max_side, chunk_size, mc_scale, precision)[0]


@torch.no_grad()
def mc_dropout_batch(
    net: SegmentationNet,
    images: Sequence[np.ndarray],
    samples: int,
    max_side: int = 512,
    chunk_size: int = 5,
    mc_scale: float = 1.0,
    precision: Precision = FLOAT32,
    batch_size: int = 8,
) -> list[MCSummary]:
    """MC-dropout summaries of ``[H, W, 3]`` uint8 images, in their order.

    Images of the same size go through the encoder and decoder together, ``batch_size`` at a time (so memory
    holds one batch of decoder features); the T head samples and the statistics are then taken image by image.
    The random draws follow that order: images of one size, in order, draw what one call per image would, and
    their summaries equal those up to float rounding of the batched convolutions.

    ``summary.deterministic`` holds the dropout-free softmax probabilities ``[C, H, W]``, always computed at
    full resolution. With ``mc_scale < 1`` the T head samples run on decoder features downscaled by that
    factor and the summary's sums stay on that coarser grid, with ``summary.image_size`` set to the image's
    size; heuristics' score maps are resized to the image afterwards (see :class:`MCSummary`). That is
    per-pixel uncertainty at a coarser grain for a fraction of the cost (the head's cost grows with
    T x pixels). The encoder and decoder run in channels-last layout under ``precision``'s autocast; the
    softmax and the sums are float32.
    """
    if net.training:
        raise RuntimeError("mc_dropout expects the network in eval mode (BatchNorm must use running statistics)")
    device = next(net.parameters()).device
    summaries: list[MCSummary | None] = [None] * len(images)
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(tuple(image.shape[:2]), []).append(index)
    for (height, width), indices in by_size.items():
        work_size = working_size(height, width, max_side)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batch = torch.stack([to_tensor(images[index]) for index in chunk]).to(device)
            if work_size != (height, width):
                batch = F.interpolate(batch, size=work_size, mode="bilinear", align_corners=False, antialias=True)
            padded = to_channels_last(pad_to_multiple(batch, net.output_stride))
            with autocast(device, precision):
                features = net.features(padded).float()
            padded_size = tuple(padded.shape[-2:])
            for offset, index in enumerate(chunk):
                summaries[index] = _summarise(
                    net, features[offset : offset + 1], padded_size, (height, width), max_side, samples, chunk_size,
                    mc_scale, device,
                )  # fmt: skip
    return summaries


def _summarise(
    net: SegmentationNet,
    features: torch.Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
    max_side: int,
    samples: int,
    chunk_size: int,
    mc_scale: float,
    device: torch.device,
) -> MCSummary:
    """One image's summary from its decoder ``features`` ``[1, F, h, w]``: the dropout-free probabilities at the
    image's size, then the T stochastic head samples."""
    height, width = image_size
    work_h, work_w = working_size(height, width, max_side)

    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        logits = logits[:, :, :work_h, :work_w]
        if (work_h, work_w) != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return torch.softmax(logits.float(), dim=1)

    deterministic = probabilities(net.head(features, padded_size, stochastic=False))[0]
    if mc_scale < 1.0:
        small = (max(1, round(work_h * mc_scale)), max(1, round(work_w * mc_scale)))
        padded_small = (max(1, round(padded_size[0] * mc_scale)), max(1, round(padded_size[1] * mc_scale)))
        sample_features = F.interpolate(features, size=padded_small, mode="bilinear", align_corners=False)
    else:
        small, padded_small, sample_features = (work_h, work_w), padded_size, features

    summary = MCSummary.empty(net.spec.num_classes, *small, device)
    remaining = samples
    while remaining > 0:
        count = min(chunk_size, remaining)
        logits = net.head(sample_features.expand(count, -1, -1, -1), padded_small, stochastic=True)
        summary.update(torch.softmax(logits[:, :, : small[0], : small[1]].float(), dim=1))
        remaining -= count
    summary.deterministic = deterministic
    if small != (height, width):
        summary.image_size = (height, width)
    return summary


def analysis_image(image: np.ndarray, max_side: int) -> np.ndarray:
    """The ``[H, W, 3]`` uint8 image scaled down (area average, never up) so its longest side is at most
    ``max_side``: the grid on which one prediction's probabilities, uncertainty and superpixels are computed."""
    size = working_size(*image.shape[:2], max_side)
    if size == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BOX))
