"""Training data: labelled images as items, crops placed to hold a labelled pixel, augmentation, batches,
per-class label counts and the stage-2 pseudo labels of the multi-class mode."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget
from ls_al_backend.model.inference import pad_to_multiple, to_tensor
from ls_al_backend.model.losses import multiclass_pseudo_labels
from ls_al_backend.model.network import SegmentationNet
from ls_al_backend.model.train_config import TrainConfig


@dataclass
class TrainingSample:
    """One labelled image: ``image`` ``[H, W, 3]`` uint8 RGB and its target at the same size."""

    task_id: int
    image: np.ndarray
    target: LabelTarget


@dataclass
class Item:
    image: torch.Tensor  # [3, H, W] normalised
    labels: torch.Tensor  # [H, W] int64
    region_ids: torch.Tensor | None  # [H, W] int64
    candidates: torch.Tensor | None  # [R, C] bool


def make_item(sample: TrainingSample, labels: np.ndarray | None = None) -> Item:
    target = sample.target
    height, width = sample.image.shape[:2]
    if target.labels.shape != (height, width):
        raise ValueError(f"task {sample.task_id}: labels {target.labels.shape} do not match the image {height}x{width}")
    return Item(
        image=to_tensor(sample.image),
        labels=torch.from_numpy(np.asarray(target.labels if labels is None else labels, dtype=np.int64)),
        region_ids=None if target.region_ids is None else torch.from_numpy(target.region_ids.astype(np.int64)),
        candidates=None if target.candidates is None else torch.from_numpy(target.candidates.astype(bool)),
    )


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _resize_nearest(index_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    resized = F.interpolate(index_map[None, None].double(), size=size, mode="nearest-exact")
    return resized[0, 0].long()


def pad(tensor: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
    """Pad the last two dims on the bottom and right to ``height x width`` with a constant."""
    pad_h, pad_w = height - tensor.shape[-2], width - tensor.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return tensor
    return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)


def _crop_origin(
    labels: torch.Tensor, regions: torch.Tensor | None, crop: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left corner of a crop that contains a labelled pixel (a label or a labelled region), drawn uniformly;
    the crop is placed uniformly around it. Sparse labels then never waste a step on an unlabelled crop; for dense
    labels this is close to a uniform random crop. Without any labelled pixel: a uniform random crop."""
    height, width = labels.shape
    labelled = labels != IGNORE
    if regions is not None:
        labelled |= regions >= 0
    flat = torch.nonzero(labelled.reshape(-1)).squeeze(1)
    if flat.numel() == 0:
        return int(rng.integers(0, max(0, height - crop[0]) + 1)), int(rng.integers(0, max(0, width - crop[1]) + 1))
    anchor = int(flat[int(rng.integers(0, flat.numel()))])
    row, col = divmod(anchor, width)

    def origin(position: int, size: int, side: int) -> int:
        low, high = max(0, position - size + 1), min(position, max(0, side - size))
        return int(rng.integers(low, max(low, high) + 1))

    return origin(row, crop[0], height), origin(col, crop[1], width)


def augment(item: Item, rng: np.random.Generator, config: TrainConfig, stride: int) -> Item:
    """Random scale, a random crop that holds a labelled pixel (:func:`_crop_origin`; padded with IGNORE /
    region -1), optional horizontal flip, applied alike to the image, labels and region ids. The crop side is
    ``min(crop_size, scaled side)`` rounded up to ``stride`` (at least ``2 * stride``, so BatchNorm never sees a
    1x1 map)."""
    image, labels, regions = item.image, item.labels, item.region_ids
    height, width = labels.shape
    factor = float(rng.uniform(config.scale[0], config.scale[1]))
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    if size != (height, width):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=factor < 1)[0]
        labels = _resize_nearest(labels, size)
        regions = None if regions is None else _resize_nearest(regions, size)
    height, width = size
    crop = _round_up(config.crop_size, stride)
    crop_h = max(2 * stride, min(crop, _round_up(height, stride)))
    crop_w = max(2 * stride, min(crop, _round_up(width, stride)))
    top, left = _crop_origin(labels, regions, (crop_h, crop_w), rng)
    window = (slice(top, top + crop_h), slice(left, left + crop_w))
    image = pad(image[:, window[0], window[1]], crop_h, crop_w, 0.0)
    labels = pad(labels[window], crop_h, crop_w, IGNORE)
    regions = None if regions is None else pad(regions[window], crop_h, crop_w, -1)
    if config.hflip and rng.random() < 0.5:
        image, labels = image.flip(-1), labels.flip(-1)
        regions = None if regions is None else regions.flip(-1)
    return Item(image.contiguous(), labels.contiguous(), regions, item.candidates)


class AugmentedSet(Dataset):
    """Items augmented with a generator seeded by ``(seed, stage, epoch, index)``: reproducible with workers."""

    def __init__(self, items: list[Item], config: TrainConfig, stride: int, stage: int):
        self.items, self.config, self.stride, self.stage = items, config, stride, stage
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item:
        """Item ``index % len``: an index past the end is another pass over the items, with other augmentations."""
        rng = np.random.default_rng([self.config.seed, self.stage, self.epoch, index])
        return augment(self.items[index % len(self.items)], rng, self.config, self.stride)


@dataclass
class Batch:
    images: torch.Tensor  # [B, 3, H, W]
    labels: torch.Tensor  # [B, H, W]
    region_ids: torch.Tensor | None  # [B, H, W], rows of candidates (global over the batch)
    candidates: torch.Tensor | None  # [R, C]

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.images.to(device),
            self.labels.to(device),
            None if self.region_ids is None else self.region_ids.to(device),
            None if self.candidates is None else self.candidates.to(device),
        )


def collate(items: list[Item]) -> Batch:
    """Stack items padded to the largest (bottom/right, IGNORE); region ids are offset to global rows."""
    height = max(item.labels.shape[0] for item in items)
    width = max(item.labels.shape[1] for item in items)
    images = torch.stack([pad(item.image, height, width, 0.0) for item in items])
    labels = torch.stack([pad(item.labels, height, width, IGNORE) for item in items])
    if items[0].region_ids is None:
        return Batch(images, labels, None, None)
    region_maps, offset = [], 0
    for item in items:
        shifted = torch.where(item.region_ids >= 0, item.region_ids + offset, item.region_ids)
        region_maps.append(pad(shifted, height, width, -1))
        offset += item.candidates.shape[0]
    return Batch(images, labels, torch.stack(region_maps), torch.cat([item.candidates for item in items]))


def weak_batches(
    images: Sequence[np.ndarray], batch_size: int, config: TrainConfig, stride: int, rng: np.random.Generator
) -> Iterator[Batch]:
    """Endless batches of weakly augmented unlabelled images (the labelled set's scale, crop and flip), cycling
    through ``images`` in a fresh random order per pass. ``labels`` is 0 on image pixels and IGNORE on padding."""

    def indices() -> Iterator[int]:
        while True:
            yield from rng.permutation(len(images)).tolist()

    order = indices()
    while True:
        items = []
        for index in itertools.islice(order, batch_size):
            image = to_tensor(images[index])
            blank = torch.zeros(image.shape[-2:], dtype=torch.int64)
            items.append(augment(Item(image, blank, None, None), rng, config, stride))
        yield collate(items)


def label_counts(items: list[Item], num_classes: int) -> torch.Tensor:
    """``[C]`` float64: labelled pixels per class."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for item in items:
        labelled = item.labels[item.labels != IGNORE]
        counts += torch.bincount(labelled, minlength=num_classes).double()
    return counts


def inverse_frequency_weights(items: list[Item], num_classes: int, power: float = 1.0) -> torch.Tensor:
    """``[C]``: inverse label frequency raised to ``power`` (1: inverse frequency, 0.5: its square root, which
    weights rare classes less), normalised to mean 1 over the classes that occur (absent classes get 1)."""
    counts = label_counts(items, num_classes)
    present = counts > 0
    weights = torch.ones(num_classes, dtype=torch.float64)
    if present.any():
        inverse = (counts[present].sum() / counts[present]) ** power
        weights[present] = inverse / inverse.mean()
    return weights.float()


@torch.no_grad()
def pseudo_label_items(net: SegmentationNet, items: list[Item], radius: int, device: torch.device) -> list[Item]:
    """Stage-2 targets: MulActSeg pseudo labels from the current network; annotated single classes win."""
    net.eval()
    pseudo_items = []
    for item in items:
        height, width = item.labels.shape
        images = pad_to_multiple(item.image[None].to(device), net.output_stride)
        features = net.features(images)
        logits = net.head(features, tuple(images.shape[-2:]))[0, :, :height, :width]
        if features.shape[-2:] != images.shape[-2:]:
            features = F.interpolate(features, size=images.shape[-2:], mode="bilinear", align_corners=False)
        features = features[0, :, :height, :width]
        pseudo = multiclass_pseudo_labels(
            features, logits, item.region_ids.to(device), item.candidates.to(device), radius
        ).cpu()
        pseudo = torch.where(item.labels != IGNORE, item.labels, pseudo)
        pseudo_items.append(Item(item.image, pseudo, None, None))
    return pseudo_items
