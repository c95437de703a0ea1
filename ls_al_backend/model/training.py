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
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.labeling.config import QueryMode
from ls_al_backend.model.batches import (
    AugmentedSet,
    Batch,
    Item,
    TrainingSample,
    collate,
    inverse_frequency_weights,
    label_counts,
    make_item,
    pad,
    pseudo_label_items,
    weak_batches,
)
from ls_al_backend.model.inference import pad_to_multiple
from ls_al_backend.model.losses import multiclass_region_loss, partial_cross_entropy
from ls_al_backend.model.network import SegmentationNet
from ls_al_backend.model.precision import autocast, resolve_precision, to_channels_last
from ls_al_backend.model.semi_supervised import MeanTeacher
from ls_al_backend.model.train_config import TrainConfig

#: Below this many samples nothing is held out for validation (and there is no early stopping).
MIN_SAMPLES_FOR_HOLDOUT = 5

#: Share of a stage's optimizer steps over which the learning rate warms up linearly (then cosine to 0).
WARMUP_SHARE = 0.05


@dataclass
class TrainResult:
    """The trained network (eval mode) and what happened: see :func:`train` for the metric keys."""

    net: SegmentationNet
    metrics: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Loop


LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]


def _evaluate(net: SegmentationNet, items: list[Item], loss_fn: LossFn, device: torch.device) -> float:
    """Mean loss over whole, un-augmented validation images (eval mode, padded to the output stride)."""
    net.eval()
    losses = []
    with torch.no_grad():
        for item in items:
            batch = collate([item])
            images = pad_to_multiple(batch.images, net.output_stride)
            height, width = images.shape[-2:]
            batch = Batch(
                images,
                pad(batch.labels, height, width, IGNORE),
                None if batch.region_ids is None else pad(batch.region_ids, height, width, -1),
                batch.candidates,
            ).to(device)
            losses.append(float(loss_fn(net(batch.images).float(), batch)))
    return float(np.mean(losses))


@dataclass
class _Stage:
    name: str
    index: int
    epochs: int
    items: list[Item]
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
    val_items: list[Item],
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
    dataset = AugmentedSet(stage.items, config, net.output_stride, stage.index)
    batches_per_epoch = stage_batches_per_epoch(len(dataset), config, stage.epochs)
    total_steps = batches_per_epoch * stage.epochs
    warmup = max(1, round(WARMUP_SHARE * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, warmup, total_steps))
    best_loss, best_state, best_epoch, waited = math.inf, None, None, 0
    mean_teacher, weak_stream = None, None
    if unlabelled is not None:
        rng = np.random.default_rng([config.seed, stage.index, 1 << 21])
        mean_teacher = MeanTeacher(
            net,
            label_counts(stage.items, net.spec.num_classes).numpy(),
            rng,
            momentum=config.ema_momentum,
            threshold=config.confidence_threshold,
            classmix=config.classmix,
            buffer_size=config.replay_buffer_size,
            alpha=config.classmix_alpha,
        )
        batch_size = config.unlabelled_batch_size or config.batch_size
        weak_stream = weak_batches(unlabelled, batch_size, config, net.output_stride, rng)
    result = net if mean_teacher is None else mean_teacher.teacher

    def batches(epoch: int) -> Iterator[Batch]:
        dataset.epoch = epoch
        rng = np.random.default_rng([config.seed, stage.index, epoch, 1 << 20])
        needed = batches_per_epoch * config.batch_size
        passes = [rng.permutation(len(dataset))]  # further passes (indices >= len: fresh augmentations) if needed
        while len(passes) * len(dataset) < needed:
            passes.append(rng.permutation(len(dataset)) + len(passes) * len(dataset))
        order = np.concatenate(passes)[:needed]
        sampler = [order[i : i + config.batch_size].tolist() for i in range(0, len(order), config.batch_size)]
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=config.num_workers)
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
                weak = next(weak_stream).to(device)
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
    train_items = [make_item(sample) for sample in train_samples]
    val_items = [make_item(sample) for sample in val_samples]

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

    def weights_for(items: list[Item]) -> torch.Tensor | None:
        if config.class_weighting == "inverse_frequency":
            return inverse_frequency_weights(items, num_classes).to(device)
        return None

    weights = weights_for(train_items)

    def ce_loss(logits: torch.Tensor, batch: Batch, class_weights: torch.Tensor | None = weights) -> torch.Tensor:
        return partial_cross_entropy(logits, batch.labels, class_weights)

    def region_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
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
            pseudo_items = pseudo_label_items(trained, train_items, config.expand_radius, device)
            pseudo_pixels = int(sum(int((item.labels != IGNORE).sum()) for item in pseudo_items))
            if initial_state is not None:
                net.load_state_dict(initial_state)
            elif trained is not net:  # stage 2 goes on from the stage-1 teacher
                net.load_state_dict(trained.state_dict())
            pseudo_weights = weights_for(pseudo_items)

            def pseudo_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
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
