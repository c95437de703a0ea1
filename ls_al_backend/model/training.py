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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.model.batches import (
    Batch,
    Item,
    TrainingSample,
    inverse_frequency_weights,
    make_item,
    pseudo_label_items,
)
from ls_al_backend.model.losses import multiclass_region_loss, partial_cross_entropy
from ls_al_backend.model.network import SegmentationNet
from ls_al_backend.model.precision import resolve_precision
from ls_al_backend.model.stage import LossFn, Stage, run_stage, stage_batches_per_epoch
from ls_al_backend.model.train_config import CLASS_WEIGHTING_POWERS, TrainConfig

__all__ = ["MIN_SAMPLES_FOR_HOLDOUT", "TrainResult", "stage_batches_per_epoch", "train"]

#: Below this many samples nothing is held out for validation (and there is no early stopping).
MIN_SAMPLES_FOR_HOLDOUT = 5


@dataclass
class TrainResult:
    """The trained network (eval mode) and what happened: see :func:`train` for the metric keys."""

    net: SegmentationNet
    metrics: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# The steps of train()


def usable_samples(samples: list[TrainingSample], num_classes: int, partial_labels: bool) -> list[TrainingSample]:
    """The samples with a labelled pixel, checked: labels in ``0..num_classes-1`` or IGNORE, and with
    ``partial_labels`` region ids and candidate sets of ``num_classes`` classes. ValueError if none or invalid."""
    usable = [sample for sample in samples if sample.target.labelled_pixels > 0]
    if not usable:
        raise ValueError(f"no labelled pixels in {len(samples)} sample(s): nothing to train on")
    for sample in usable:
        labels = sample.target.labels
        if labels.max() >= num_classes or labels.min() < IGNORE:
            raise ValueError(f"task {sample.task_id}: labels outside 0..{num_classes - 1} (or IGNORE)")
        if partial_labels and (sample.target.region_ids is None or sample.target.candidates is None):
            raise ValueError(f"task {sample.task_id}: partial labels need region_ids and candidates")
        if partial_labels and sample.target.candidates.shape[1] != num_classes:
            raise ValueError(f"task {sample.task_id}: candidates do not have {num_classes} classes")
    return usable


def unlabelled_images(config: TrainConfig, unlabelled: Sequence[np.ndarray] | None) -> list[np.ndarray] | None:
    """The mean teacher's unlabelled ``[H, W, 3]`` uint8 images, checked (at least one); None without it."""
    if config.semi_supervised != "mean_teacher":
        return None
    images = [] if unlabelled is None else list(unlabelled)
    if not images:
        raise ValueError("semi_supervised='mean_teacher' needs unlabelled images: train(..., unlabelled=[...])")
    for index, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"unlabelled image {index}: expected [H, W, 3] uint8, got {image.shape} {image.dtype}")
    return images


def holdout_split(
    usable: list[TrainingSample], config: TrainConfig
) -> tuple[list[TrainingSample], list[TrainingSample]]:
    """``(train, validation)``: ``val_fraction`` of the samples held out (seeded), none below
    :data:`MIN_SAMPLES_FOR_HOLDOUT` samples or with ``val_fraction`` 0; both in the samples' order."""
    order = np.random.default_rng([config.seed, 7]).permutation(len(usable))
    holdout = len(usable) >= MIN_SAMPLES_FOR_HOLDOUT and config.val_fraction > 0
    n_val = max(1, round(config.val_fraction * len(usable))) if holdout else 0
    return [usable[i] for i in sorted(order[n_val:])], [usable[i] for i in sorted(order[:n_val])]


@dataclass(frozen=True)
class Losses:
    """The losses of one training run: cross entropy on labelled pixels, MulActSeg's region losses, each with the
    class weights of the labels they train on (``class_weighting``)."""

    config: TrainConfig
    num_classes: int
    device: torch.device

    def weights(self, items: list[Item]) -> torch.Tensor | None:
        power = CLASS_WEIGHTING_POWERS.get(self.config.class_weighting)  # None for "none"
        if power is None:
            return None
        return inverse_frequency_weights(items, self.num_classes, power).to(self.device)

    def cross_entropy(self, items: list[Item]) -> LossFn:
        weights = self.weights(items)
        return lambda logits, batch: partial_cross_entropy(logits, batch.labels, weights)

    def regions(self, items: list[Item]) -> LossFn:
        weights, config = self.weights(items), self.config

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

        return region_loss


def training_metrics(
    samples: list[TrainingSample],
    usable: list[TrainingSample],
    split: tuple[list[TrainingSample], list[TrainingSample]],
    history: dict[str, Any],
    config: TrainConfig,
    device: torch.device,
    num_classes: int,
) -> dict[str, Any]:
    """The metrics every run reports (see :func:`train`), without the per-phase and mean-teacher extras."""
    train_samples, val_samples = split
    label_counts = np.zeros(num_classes, dtype=np.int64)
    for sample in usable:
        labels = sample.target.labels
        label_counts += np.bincount(labels[labels != IGNORE], minlength=num_classes)
    if val_samples:
        validation = f"held out {len(val_samples)} of {len(usable)} samples for early stopping"
    else:
        validation = (
            f"no hold-out: {len(usable)} sample(s) (fewer than {MIN_SAMPLES_FOR_HOLDOUT} or val_fraction 0); "
            "trained on all, no early stopping"
        )
    return {
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
        "semi_supervised": config.semi_supervised,
    }


# --------------------------------------------------------------------------------------------------------------
# train()


def train(
    net: SegmentationNet,
    samples: list[TrainingSample],
    config: TrainConfig,
    device: torch.device,
    progress: Callable[[dict], None] | None = None,
    partial_labels: bool = False,
    unlabelled: Sequence[np.ndarray] | None = None,
) -> TrainResult:
    """Fine-tune ``net`` on ``samples`` and return it in eval mode with its best-by-validation weights.

    ``partial_labels`` (targets with ``region_ids`` and ``candidates``): MulActSeg's region losses, then stage 2.

    With ``config.semi_supervised == "mean_teacher"``, ``unlabelled`` (``[H, W, 3]`` uint8 RGB images, at least
    one) are learnt from too and ``TrainResult.net`` is the teacher, a separate network (eval mode, best by
    validation), while ``net`` is left with the student's last weights. Otherwise ``unlabelled`` is not used.

    ``progress`` gets ``{"stage": "train", "epoch", "epochs", "loss", "val_loss", "phase"}`` after every epoch
    (``epoch`` counts across both phases with ``partial_labels``; ``val_loss`` is None without a hold-out).
    ``metrics``: ``epochs_run``, ``train_loss`` / ``val_loss`` (per epoch), ``best_epoch``, ``label_counts``
    (labelled pixels per class in the annotations), ``labelled_pixels``, ``train_samples``, ``val_samples``,
    ``val_task_ids``,
    ``skipped_samples`` (no labelled pixel), ``validation`` (a sentence), ``device``, ``precision`` (``fp32``,
    ``bf16`` or ``fp16``), ``steps`` (optimizer steps, both stages), ``seconds``,
    ``semi_supervised``, with ``partial_labels`` ``stage1_epochs``, ``stage2_epochs``, ``pseudo_labelled_pixels``, and
    with the mean teacher ``unlabelled_images``, ``unsupervised_loss`` and ``confident_share`` (per epoch: the
    mean unsupervised loss before ``unsupervised_weight``, the mean share of pixels above the confidence
    threshold); ``train_loss`` stays the supervised loss. The mean teacher's progress reports carry
    ``unsupervised_loss`` too.
    """
    started = time.monotonic()
    num_classes = net.spec.num_classes
    usable = usable_samples(samples, num_classes, partial_labels)
    unlabelled_set = unlabelled_images(config, unlabelled)
    train_samples, val_samples = holdout_split(usable, config)
    train_items = [make_item(sample) for sample in train_samples]
    val_items = [make_item(sample) for sample in val_samples]

    net.to(device=device, memory_format=torch.channels_last)
    initial_state = copy.deepcopy(net.state_dict()) if partial_labels and config.stage2_from_initial else None
    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "best_epoch": None, "steps": 0}
    history |= {"unsupervised_loss": [], "confident_share": []}
    stage2_epochs = config.stage2_epochs if partial_labels else 0
    total_epochs = config.epochs + stage2_epochs
    losses = Losses(config, num_classes, device)
    region_loss = losses.regions(train_items)
    first_loss = region_loss if partial_labels else losses.cross_entropy(train_items)
    first = Stage("regions" if partial_labels else "labels", 1, config.epochs, train_items, first_loss)

    def run(stage: Stage, net: SegmentationNet, val_loss: LossFn) -> SegmentationNet:
        return run_stage(
            net, stage, val_items, val_loss, config, device, history, progress, total_epochs, unlabelled_set
        )

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        trained = run(first, net, first_loss)
        stage1_epochs, pseudo_pixels = len(history["train_loss"]), None
        if stage2_epochs > 0:  # MulActSeg's stage 2: pixel pseudo labels from the stage-1 network
            pseudo_items = pseudo_label_items(trained, train_items, config.expand_radius, device)
            pseudo_pixels = int(sum(int((item.labels != IGNORE).sum()) for item in pseudo_items))
            if initial_state is not None:
                net.load_state_dict(initial_state)
            elif trained is not net:  # stage 2 goes on from the stage-1 teacher
                net.load_state_dict(trained.state_dict())
            second = Stage("pseudo_labels", 2, stage2_epochs, pseudo_items, losses.cross_entropy(pseudo_items))
            trained = run(second, net, region_loss)
    trained.eval()

    metrics = training_metrics(samples, usable, (train_samples, val_samples), history, config, device, num_classes)
    metrics["seconds"] = round(time.monotonic() - started, 3)
    if unlabelled_set is not None:
        metrics.update(
            unlabelled_images=len(unlabelled_set),
            unsupervised_loss=history["unsupervised_loss"],
            confident_share=history["confident_share"],
        )
    if partial_labels:
        metrics.update(
            stage1_epochs=stage1_epochs,
            stage2_epochs=len(history["train_loss"]) - stage1_epochs,
            pseudo_labelled_pixels=pseudo_pixels,
        )
    return TrainResult(net=trained, metrics=metrics)
