"""Training loop: partial labels in, a fine-tuned network (eval mode, best-by-validation weights) out.

Every mode trains on :class:`~ls_al_backend.labeling.annotations.LabelTarget` s. Dense brush, dominant
superpixels and sparse points train with cross entropy over labelled pixels. Multi-class superpixels follow
MulActSeg (see :mod:`ls_al_backend.model.losses`): stage 1 trains with the region losses, stage 2 generates
pixel pseudo labels from the stage-1 network and trains with cross entropy on them (from the weights the
network came in with, as the authors retrain stage 2 from the initial weights; ``stage2_from_initial``).

With ``semi_supervised="mean_teacher"`` every stage also learns from unlabelled images
(:mod:`ls_al_backend.model.semi_supervised`): each supervised batch step draws one weakly augmented batch of
unlabelled images, the stage's teacher (EMA of the network) pseudo-labels it, and the confidence-weighted loss of
the network on the strong, ClassMixed view is added to the stage's supervised loss. The teacher is what the stage
returns (best-by-validation selection evaluates the teacher), so scoring, ``/predict`` and checkpoints use it.

Augmentations (random scale, random crop padded with IGNORE, horizontal flip) are drawn per sample from a
generator seeded by ``(seed, stage, epoch, sample)``, so a run is reproducible and independent of
``num_workers``.

The schedule is one rule for every mode and every size of labelled set: ``epochs`` passes over the labelled
images, at least ``min_steps`` optimizer steps in all (a few images get further passes with fresh augmentations,
so they converge too), and the learning rate warmed up over the first 5% of the steps then cosine-annealed to 0.
All labelled images train (``val_fraction=0``, the default): a user's labels all count. The forward pass runs in
channels-last layout under the autocast that :mod:`ls_al_backend.model.precision` picks for the device (float16 +
``GradScaler`` on CUDA, bfloat16 on a CPU with native bf16, float32 elsewhere).
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget
from ls_al_backend.labeling.config import QueryMode
from ls_al_backend.model.inference import pad_to_multiple, to_tensor
from ls_al_backend.model.losses import multiclass_pseudo_labels, multiclass_region_loss, partial_cross_entropy
from ls_al_backend.model.network import SegmentationNet
from ls_al_backend.model.precision import PRECISIONS, autocast, resolve_precision, to_channels_last
from ls_al_backend.model.semi_supervised import SEMI_SUPERVISED_MODES, MeanTeacher

#: Below this many samples nothing is held out for validation (and there is no early stopping).
MIN_SAMPLES_FOR_HOLDOUT = 5

#: Share of a stage's optimizer steps over which the learning rate warms up linearly (then cosine to 0).
WARMUP_SHARE = 0.05

CLASS_WEIGHTINGS = ("none", "inverse_frequency")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters. ``crop_size`` is rounded up to a multiple of the network's output stride."""

    epochs: int = 10
    """Passes over the labelled images per stage."""
    min_steps: int = 0
    """At least this many optimizer steps per stage: with few labelled images every epoch makes further passes
    (fresh augmentations) until ``epochs`` epochs hold ``min_steps`` steps."""
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-2
    crop_size: int = 256
    scale: tuple[float, float] = (0.75, 1.25)
    hflip: bool = True
    val_fraction: float = 0.0
    """Share of the labelled images held out for early stopping (never trained on); 0: every label trains."""
    patience: int = 3
    seed: int = 0
    class_weighting: str = "none"
    lambda_ce: float = 16.0
    lambda_mp: float = 8.0
    lambda_pp: float = 1.0
    stage2_epochs: int = 5
    """Multi-class mode only: epochs of stage 2 (cross entropy on pseudo labels); 0 skips stage 2."""
    stage2_from_initial: bool = True
    """Multi-class mode only: start stage 2 from the weights the network came in with (as MulActSeg does)."""
    expand_radius: int = 16
    """Multi-class mode only: how far (pixels) pseudo labels may expand around a labelled region."""
    precision: str = "auto"
    """One of :data:`~ls_al_backend.model.precision.PRECISIONS`; ``auto`` picks per device."""
    num_workers: int = 0
    steps_per_epoch: int | None = None
    """Exactly this many batches per epoch, so that training costs the same however many samples there are: a
    fresh random subset when there are more samples, further passes in fresh orders (with fresh augmentations)
    when there are fewer. None: every sample once per epoch."""
    semi_supervised: str = "none"
    """``"none"`` or ``"mean_teacher"`` (needs unlabelled images; see :mod:`ls_al_backend.model.semi_supervised`)."""
    ema_momentum: float = 0.99
    """Mean teacher: EMA momentum of the teacher (ramped up from 0 over the first steps, as in Mean Teacher)."""
    confidence_threshold: float = 0.97
    """Mean teacher: an image's unsupervised loss is weighted by its share of pixels with confidence above this."""
    unsupervised_weight: float = 1.0
    """Mean teacher: weight of the unsupervised term added to the supervised loss."""
    unlabelled_batch_size: int | None = None
    """Mean teacher: unlabelled images per step; None: ``batch_size``."""
    classmix: bool = True
    """Mean teacher: paste one class of a recent unlabelled crop onto every strong view (class-balanced ClassMix)."""
    replay_buffer_size: int = 64
    """Mean teacher: how many recent unlabelled crops ClassMix draws from."""
    classmix_alpha: float = 0.5
    """Mean teacher: ClassMix draws class c with probability proportional to (1 / labelled share of c) ** alpha."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.crop_size < 1 or self.stage2_epochs < 0:
            raise ValueError("epochs, batch_size and crop_size must be >= 1 and stage2_epochs >= 0")
        if not 0.0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting must be one of {CLASS_WEIGHTINGS}, got {self.class_weighting!r}")
        if self.patience < 1 or self.lr <= 0 or self.num_workers < 0 or self.expand_radius < 0:
            raise ValueError("patience must be >= 1, lr > 0, num_workers >= 0 and expand_radius >= 0")
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {self.min_steps}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}")
        if self.semi_supervised not in SEMI_SUPERVISED_MODES:
            raise ValueError(f"semi_supervised must be one of {SEMI_SUPERVISED_MODES}, got {self.semi_supervised!r}")
        if not 0.0 <= self.ema_momentum <= 1.0 or not 0.0 <= self.confidence_threshold < 1.0:
            raise ValueError(
                f"ema_momentum must be in [0, 1] and confidence_threshold in [0, 1), got {self.ema_momentum} and "
                f"{self.confidence_threshold}"
            )
        if self.unsupervised_weight < 0 or self.classmix_alpha < 0:
            raise ValueError("unsupervised_weight and classmix_alpha must be >= 0")
        if self.unlabelled_batch_size is not None and self.unlabelled_batch_size < 1:
            raise ValueError(f"unlabelled_batch_size must be >= 1 or None, got {self.unlabelled_batch_size}")
        if self.replay_buffer_size < 1:
            raise ValueError(f"replay_buffer_size must be >= 1, got {self.replay_buffer_size}")


@dataclass
class TrainingSample:
    """One labelled image: ``image`` ``[H, W, 3]`` uint8 RGB and its target at the same size."""

    task_id: int
    image: np.ndarray
    target: LabelTarget


@dataclass
class TrainResult:
    """The trained network (eval mode) and what happened: see :func:`train` for the metric keys."""

    net: SegmentationNet
    metrics: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class _Item:
    image: torch.Tensor  # [3, H, W] normalised
    labels: torch.Tensor  # [H, W] int64
    region_ids: torch.Tensor | None  # [H, W] int64
    candidates: torch.Tensor | None  # [R, C] bool


def _item(sample: TrainingSample, labels: np.ndarray | None = None) -> _Item:
    target = sample.target
    height, width = sample.image.shape[:2]
    if target.labels.shape != (height, width):
        raise ValueError(f"task {sample.task_id}: labels {target.labels.shape} do not match the image {height}x{width}")
    return _Item(
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


def _pad(tensor: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
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


def augment(item: _Item, rng: np.random.Generator, config: TrainConfig, stride: int) -> _Item:
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
    image = _pad(image[:, window[0], window[1]], crop_h, crop_w, 0.0)
    labels = _pad(labels[window], crop_h, crop_w, IGNORE)
    regions = None if regions is None else _pad(regions[window], crop_h, crop_w, -1)
    if config.hflip and rng.random() < 0.5:
        image, labels = image.flip(-1), labels.flip(-1)
        regions = None if regions is None else regions.flip(-1)
    return _Item(image.contiguous(), labels.contiguous(), regions, item.candidates)


class _AugmentedSet(Dataset):
    """Items augmented with a generator seeded by ``(seed, stage, epoch, index)``: reproducible with workers."""

    def __init__(self, items: list[_Item], config: TrainConfig, stride: int, stage: int):
        self.items, self.config, self.stride, self.stage = items, config, stride, stage
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> _Item:
        """Item ``index % len``: an index past the end is another pass over the items, with other augmentations."""
        rng = np.random.default_rng([self.config.seed, self.stage, self.epoch, index])
        return augment(self.items[index % len(self.items)], rng, self.config, self.stride)


@dataclass
class _Batch:
    images: torch.Tensor  # [B, 3, H, W]
    labels: torch.Tensor  # [B, H, W]
    region_ids: torch.Tensor | None  # [B, H, W], rows of candidates (global over the batch)
    candidates: torch.Tensor | None  # [R, C]

    def to(self, device: torch.device) -> _Batch:
        return _Batch(
            self.images.to(device),
            self.labels.to(device),
            None if self.region_ids is None else self.region_ids.to(device),
            None if self.candidates is None else self.candidates.to(device),
        )


def _collate(items: list[_Item]) -> _Batch:
    """Stack items padded to the largest (bottom/right, IGNORE); region ids are offset to global rows."""
    height = max(item.labels.shape[0] for item in items)
    width = max(item.labels.shape[1] for item in items)
    images = torch.stack([_pad(item.image, height, width, 0.0) for item in items])
    labels = torch.stack([_pad(item.labels, height, width, IGNORE) for item in items])
    if items[0].region_ids is None:
        return _Batch(images, labels, None, None)
    region_maps, offset = [], 0
    for item in items:
        shifted = torch.where(item.region_ids >= 0, item.region_ids + offset, item.region_ids)
        region_maps.append(_pad(shifted, height, width, -1))
        offset += item.candidates.shape[0]
    return _Batch(images, labels, torch.stack(region_maps), torch.cat([item.candidates for item in items]))


def _weak_batches(
    images: Sequence[np.ndarray], batch_size: int, config: TrainConfig, stride: int, rng: np.random.Generator
) -> Iterator[_Batch]:
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
            items.append(augment(_Item(image, blank, None, None), rng, config, stride))
        yield _collate(items)


# --------------------------------------------------------------------------------------------------------------
# Loop


def _label_counts(items: list[_Item], num_classes: int) -> torch.Tensor:
    """``[C]`` float64: labelled pixels per class."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for item in items:
        labelled = item.labels[item.labels != IGNORE]
        counts += torch.bincount(labelled, minlength=num_classes).double()
    return counts


def _class_weights(items: list[_Item], num_classes: int) -> torch.Tensor:
    """Inverse label frequency, normalised to mean 1 over the classes that occur (absent classes get 1)."""
    counts = _label_counts(items, num_classes)
    present = counts > 0
    weights = torch.ones(num_classes, dtype=torch.float64)
    if present.any():
        inverse = counts[present].sum() / counts[present]
        weights[present] = inverse / inverse.mean()
    return weights.float()


LossFn = Callable[[torch.Tensor, _Batch], torch.Tensor]


def _evaluate(net: SegmentationNet, items: list[_Item], loss_fn: LossFn, device: torch.device) -> float:
    """Mean loss over whole, un-augmented validation images (eval mode, padded to the output stride)."""
    net.eval()
    losses = []
    with torch.no_grad():
        for item in items:
            batch = _collate([item])
            images = pad_to_multiple(batch.images, net.output_stride)
            height, width = images.shape[-2:]
            batch = _Batch(
                images,
                _pad(batch.labels, height, width, IGNORE),
                None if batch.region_ids is None else _pad(batch.region_ids, height, width, -1),
                batch.candidates,
            ).to(device)
            losses.append(float(loss_fn(net(batch.images).float(), batch)))
    return float(np.mean(losses))


@dataclass
class _Stage:
    name: str
    index: int
    epochs: int
    items: list[_Item]
    loss_fn: LossFn


def stage_batches_per_epoch(samples: int, config: TrainConfig, epochs: int) -> int:
    """Optimizer steps per epoch: ``steps_per_epoch`` if set, else one pass over ``samples`` in batches, raised so
    that ``epochs`` epochs hold at least ``min_steps`` steps."""
    if config.steps_per_epoch is not None:
        return config.steps_per_epoch
    one_pass = math.ceil(samples / config.batch_size)
    return max(one_pass, math.ceil(config.min_steps / max(epochs, 1)))


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up over ``warmup`` steps, then cosine from 1 to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _run_stage(
    net: SegmentationNet,
    stage: _Stage,
    val_items: list[_Item],
    val_loss_fn: LossFn,
    config: TrainConfig,
    device: torch.device,
    history: dict[str, Any],
    progress: Callable[[dict], None] | None,
    total_epochs: int,
    unlabelled: Sequence[np.ndarray] | None = None,
) -> SegmentationNet:
    """Train one stage with early stopping on ``val_items`` and return its network with the best weights: ``net``
    itself, or with ``unlabelled`` images the mean teacher of ``net`` (then ``net`` keeps its last weights)."""
    precision = resolve_precision(device, config.precision)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.needs_grad_scaler and device.type == "cuda")
    dataset = _AugmentedSet(stage.items, config, net.output_stride, stage.index)
    batches_per_epoch = stage_batches_per_epoch(len(dataset), config, stage.epochs)
    total_steps = batches_per_epoch * stage.epochs
    warmup = max(1, round(WARMUP_SHARE * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, warmup, total_steps))
    best_loss, best_state, best_epoch, waited = math.inf, None, None, 0
    mean_teacher, weak_batches = None, None
    if unlabelled is not None:
        rng = np.random.default_rng([config.seed, stage.index, 1 << 21])
        mean_teacher = MeanTeacher(
            net,
            _label_counts(stage.items, net.spec.num_classes).numpy(),
            rng,
            momentum=config.ema_momentum,
            threshold=config.confidence_threshold,
            classmix=config.classmix,
            buffer_size=config.replay_buffer_size,
            alpha=config.classmix_alpha,
        )
        batch_size = config.unlabelled_batch_size or config.batch_size
        weak_batches = _weak_batches(unlabelled, batch_size, config, net.output_stride, rng)
    result = net if mean_teacher is None else mean_teacher.teacher

    def batches(epoch: int) -> Iterator[_Batch]:
        dataset.epoch = epoch
        rng = np.random.default_rng([config.seed, stage.index, epoch, 1 << 20])
        needed = batches_per_epoch * config.batch_size
        passes = [rng.permutation(len(dataset))]  # further passes (indices >= len: fresh augmentations) if needed
        while len(passes) * len(dataset) < needed:
            passes.append(rng.permutation(len(dataset)) + len(passes) * len(dataset))
        order = np.concatenate(passes)[:needed]
        sampler = [order[i : i + config.batch_size].tolist() for i in range(0, len(order), config.batch_size)]
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate, num_workers=config.num_workers)
        yield from loader

    for epoch in range(stage.epochs):
        net.train()
        epoch_losses, epoch_sizes, unsupervised_losses, confident_shares = [], [], [], []
        for batch in batches(epoch):
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, precision):
                logits = net(to_channels_last(batch.images))
            loss = stage.loss_fn(logits.float(), batch)
            scaler.scale(loss).backward()
            if mean_teacher is not None:  # backward per term: one graph in memory at a time
                weak = next(weak_batches).to(device)
                unsupervised, share = mean_teacher.unsupervised_loss(
                    net, to_channels_last(weak.images), weak.labels != IGNORE, precision
                )
                scaler.scale(config.unsupervised_weight * unsupervised).backward()
                unsupervised_losses.append(float(unsupervised.detach()))
                confident_shares.append(share)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            history["steps"] += 1
            if mean_teacher is not None:
                mean_teacher.update(net)
            epoch_losses.append(float(loss.detach()))
            epoch_sizes.append(batch.images.shape[0])
        train_loss = float(np.average(epoch_losses, weights=epoch_sizes))
        val_loss = _evaluate(result, val_items, val_loss_fn, device) if val_items else None
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        global_epoch = len(history["train_loss"])
        report = {"stage": "train", "epoch": global_epoch, "epochs": total_epochs, "loss": train_loss}
        if mean_teacher is not None:
            history["unsupervised_loss"].append(float(np.mean(unsupervised_losses)))
            history["confident_share"].append(float(np.mean(confident_shares)))
            report["unsupervised_loss"] = history["unsupervised_loss"][-1]
        if progress is not None:
            progress({**report, "val_loss": val_loss, "phase": stage.name})
        if val_loss is None:
            best_epoch = global_epoch
            continue
        if val_loss < best_loss:
            best_loss, best_epoch, waited = val_loss, global_epoch, 0
            best_state = copy.deepcopy(result.state_dict())
        else:
            waited += 1
            if waited >= config.patience:
                break
    if best_state is not None:
        result.load_state_dict(best_state)
    history["best_epoch"] = best_epoch
    return result


@torch.no_grad()
def _pseudo_label_items(net: SegmentationNet, items: list[_Item], radius: int, device: torch.device) -> list[_Item]:
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
        pseudo_items.append(_Item(item.image, pseudo, None, None))
    return pseudo_items


def train(
    net: SegmentationNet,
    samples: list[TrainingSample],
    config: TrainConfig,
    device: torch.device,
    progress: Callable[[dict], None] | None = None,
    mode: QueryMode = QueryMode.DENSE_BRUSH,
    unlabelled: Sequence[np.ndarray] | None = None,
) -> TrainResult:
    """Fine-tune ``net`` on ``samples`` and return it in eval mode with its best-by-validation weights.

    With ``config.semi_supervised == "mean_teacher"``, ``unlabelled`` (``[H, W, 3]`` uint8 RGB images, at least
    one) are learnt from too and ``TrainResult.net`` is the teacher, a separate network (eval mode, best by
    validation), while ``net`` is left with the student's last weights. Otherwise ``unlabelled`` is not used.

    ``progress`` gets ``{"stage": "train", "epoch", "epochs", "loss", "val_loss", "phase"}`` after every epoch
    (``epoch`` counts across both phases of multi-class mode; ``val_loss`` is None without a hold-out).
    ``metrics``: ``epochs_run``, ``train_loss`` / ``val_loss`` (per epoch), ``best_epoch``, ``label_counts``
    (labelled pixels per class in the annotations), ``labelled_pixels``, ``train_samples``, ``val_samples``,
    ``val_task_ids``,
    ``skipped_samples`` (no labelled pixel), ``validation`` (a sentence), ``device``, ``precision`` (``fp32``,
    ``bf16`` or ``fp16``), ``steps`` (optimizer steps, both stages), ``seconds``,
    ``semi_supervised``, in multi-class mode ``stage1_epochs``, ``stage2_epochs``, ``pseudo_labelled_pixels``, and
    with the mean teacher ``unlabelled_images``, ``unsupervised_loss`` and ``confident_share`` (per epoch: the
    mean unsupervised loss before ``unsupervised_weight``, the mean share of pixels above the confidence
    threshold); ``train_loss`` stays the supervised loss. The mean teacher's progress reports carry
    ``unsupervised_loss`` too.
    """
    started = time.monotonic()
    num_classes = net.spec.num_classes
    multiclass = mode is QueryMode.SUPERPIXEL_MULTICLASS
    usable = [sample for sample in samples if sample.target.labelled_pixels > 0]
    if not usable:
        raise ValueError(f"no labelled pixels in {len(samples)} sample(s): nothing to train on")
    for sample in usable:
        labels = sample.target.labels
        if labels.max() >= num_classes or labels.min() < IGNORE:
            raise ValueError(f"task {sample.task_id}: labels outside 0..{num_classes - 1} (or IGNORE)")
        if multiclass and (sample.target.region_ids is None or sample.target.candidates is None):
            raise ValueError(f"task {sample.task_id}: multi-class mode needs region_ids and candidates")
        if multiclass and sample.target.candidates.shape[1] != num_classes:
            raise ValueError(f"task {sample.task_id}: candidates do not have {num_classes} classes")
    unlabelled_images = None
    if config.semi_supervised == "mean_teacher":
        unlabelled_images = [] if unlabelled is None else list(unlabelled)
        if not unlabelled_images:
            raise ValueError("semi_supervised='mean_teacher' needs unlabelled images: train(..., unlabelled=[...])")
        for index, image in enumerate(unlabelled_images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"unlabelled image {index}: expected [H, W, 3] uint8, got {image.shape} {image.dtype}")
    split_rng = np.random.default_rng([config.seed, 7])
    order = split_rng.permutation(len(usable))
    holdout = len(usable) >= MIN_SAMPLES_FOR_HOLDOUT and config.val_fraction > 0
    n_val = max(1, round(config.val_fraction * len(usable))) if holdout else 0
    val_samples = [usable[i] for i in sorted(order[:n_val])]
    train_samples = [usable[i] for i in sorted(order[n_val:])]
    train_items = [_item(sample) for sample in train_samples]
    val_items = [_item(sample) for sample in val_samples]

    net.to(device=device, memory_format=torch.channels_last)
    initial_state = copy.deepcopy(net.state_dict()) if multiclass and config.stage2_from_initial else None
    history: dict[str, Any] = {
        "train_loss": [],
        "val_loss": [],
        "best_epoch": None,
        "unsupervised_loss": [],
        "confident_share": [],
        "steps": 0,
    }
    stage2_epochs = config.stage2_epochs if multiclass else 0
    total_epochs = config.epochs + stage2_epochs

    def weights_for(items: list[_Item]) -> torch.Tensor | None:
        if config.class_weighting == "inverse_frequency":
            return _class_weights(items, num_classes).to(device)
        return None

    weights = weights_for(train_items)

    def ce_loss(logits: torch.Tensor, batch: _Batch, class_weights: torch.Tensor | None = weights) -> torch.Tensor:
        return partial_cross_entropy(logits, batch.labels, class_weights)

    def region_loss(logits: torch.Tensor, batch: _Batch) -> torch.Tensor:
        total, _ = multiclass_region_loss(
            logits,
            batch.labels,
            batch.region_ids,
            batch.candidates,
            lambda_ce=config.lambda_ce,
            lambda_mp=config.lambda_mp,
            lambda_pp=config.lambda_pp,
            class_weights=weights,
        )
        return total

    first_loss = region_loss if multiclass else ce_loss
    phase = "regions" if multiclass else "labels"
    first = _Stage(phase, 1, config.epochs, train_items, first_loss)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        trained = _run_stage(
            net, first, val_items, first_loss, config, device, history, progress, total_epochs, unlabelled_images
        )
        stage1_epochs = len(history["train_loss"])
        pseudo_pixels = None
        if stage2_epochs > 0:
            pseudo_items = _pseudo_label_items(trained, train_items, config.expand_radius, device)
            pseudo_pixels = int(sum(int((item.labels != IGNORE).sum()) for item in pseudo_items))
            if initial_state is not None:
                net.load_state_dict(initial_state)
            elif trained is not net:  # stage 2 goes on from the stage-1 teacher
                net.load_state_dict(trained.state_dict())
            pseudo_weights = weights_for(pseudo_items)

            def pseudo_loss(logits: torch.Tensor, batch: _Batch) -> torch.Tensor:
                return partial_cross_entropy(logits, batch.labels, pseudo_weights)

            second = _Stage("pseudo_labels", 2, stage2_epochs, pseudo_items, pseudo_loss)
            trained = _run_stage(
                net, second, val_items, region_loss, config, device, history, progress, total_epochs, unlabelled_images
            )
    trained.eval()

    label_counts = np.zeros(num_classes, dtype=np.int64)
    for sample in usable:
        labels = sample.target.labels
        label_counts += np.bincount(labels[labels != IGNORE], minlength=num_classes)
    if holdout:
        validation = f"held out {len(val_samples)} of {len(usable)} samples for early stopping"
    else:
        validation = (
            f"no hold-out: {len(usable)} sample(s) (fewer than {MIN_SAMPLES_FOR_HOLDOUT} or val_fraction 0); "
            "trained on all, no early stopping"
        )
    metrics: dict[str, Any] = {
        "epochs_run": len(history["train_loss"]),
        "train_loss": history["train_loss"],
        "val_loss": history["val_loss"],
        "best_epoch": history["best_epoch"],
        "label_counts": label_counts.tolist(),
        "labelled_pixels": int(sum(sample.target.labelled_pixels for sample in usable)),
        "train_samples": len(train_samples),
        "val_samples": len(val_samples),
        "val_task_ids": [sample.task_id for sample in val_samples],
        "skipped_samples": len(samples) - len(usable),
        "validation": validation,
        "device": str(device),
        "precision": resolve_precision(device, config.precision).name,
        "steps": history["steps"],
        "seconds": round(time.monotonic() - started, 3),
        "semi_supervised": config.semi_supervised,
    }
    if unlabelled_images is not None:
        metrics.update(
            unlabelled_images=len(unlabelled_images),
            unsupervised_loss=history["unsupervised_loss"],
            confident_share=history["confident_share"],
        )
    if multiclass:
        metrics.update(
            stage1_epochs=stage1_epochs,
            stage2_epochs=len(history["train_loss"]) - stage1_epochs,
            pseudo_labelled_pixels=pseudo_pixels,
        )
    return TrainResult(net=trained, metrics=metrics)
