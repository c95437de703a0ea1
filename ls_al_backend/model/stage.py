"""One training stage: optimizer steps over augmented crops of the stage's items, on a warm-up + cosine schedule,
with early stopping on whole validation images (:func:`run_stage`). :func:`~ls_al_backend.model.training.train`
runs one stage per phase (labels or regions, then pseudo labels)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.model.batches import AugmentedSet, Batch, Item, collate, label_counts, pad, weak_batches
from ls_al_backend.model.inference import pad_to_multiple
from ls_al_backend.model.network import SegmentationNet
from ls_al_backend.model.precision import autocast, resolve_precision, to_channels_last
from ls_al_backend.model.semi_supervised import MeanTeacher
from ls_al_backend.model.train_config import TrainConfig

#: Share of a stage's optimizer steps over which the learning rate warms up linearly (then cosine to 0).
WARMUP_SHARE = 0.05

LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]


def evaluate_loss(net: SegmentationNet, items: list[Item], loss_fn: LossFn, device: torch.device) -> float:
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
class Stage:
    """A phase of training: its name (``phase`` in progress reports), index (seeds), epochs, items and loss."""

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


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up over ``warmup`` steps, then cosine from 1 to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def run_stage(
    net: SegmentationNet,
    stage: Stage,
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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total_steps))
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
        val_loss = evaluate_loss(result, val_items, val_loss_fn, device) if val_items else None
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
