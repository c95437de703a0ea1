"""The fully supervised reference: the same network and training rule on every pool label."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget
from ls_al_backend.model.batches import TrainingSample
from ls_al_backend.model.network import build_network, select_device
from ls_al_backend.model.train_config import TrainConfig
from ls_al_backend.model.training import TrainResult, train
from ls_al_backend.simulation.config import SimulationConfig
from ls_al_backend.simulation.data import load_split
from ls_al_backend.simulation.metrics import evaluate, iou_per_class, mean_iou
from ls_al_backend.simulation.output import json_value, log_line, training_progress, write_atomic


def full_label_splits(config: SimulationConfig) -> tuple[list, list[TrainingSample], list]:
    """The pool (every image with its dense ground truth), the pool as training samples, and the evaluation split."""
    pool = load_split(config.pool_dir, config.resolution, config.ignore_index, config.pool_limit)
    evaluation = load_split(config.eval_dir, config.resolution, config.ignore_index, config.eval_limit)
    samples = [TrainingSample(i, example.image, LabelTarget(example.gt.copy())) for i, example in enumerate(pool)]
    return pool, samples, evaluation


def train_on_every_label(
    config: SimulationConfig, samples: list[TrainingSample], evaluation: list, device: torch.device, share: float
) -> tuple[TrainConfig, TrainResult, np.ndarray]:
    """A fresh network (the config's seed) trained on ``samples`` by :meth:`SimulationConfig.reference_train_config`
    at ``share`` of its epochs: ``(train config, training result, [C, C] confusion on evaluation)``."""
    train_config = config.reference_train_config(share)
    result = train(
        build_network(config.network_spec(), seed=config.seed), samples, train_config, device, training_progress
    )
    return train_config, result, evaluate(result.net, evaluation, config.num_classes, device)


def fully_supervised_reference(
    config: SimulationConfig, log: Callable[[str], None] | None = log_line
) -> dict[str, Any]:
    """Train on every pool label (dense ground truth) once; writes and returns ``<out_dir>/reference.json``.

    Uses the config's network, resolution, seed and :meth:`SimulationConfig.reference_train_config` (query mode
    and acquisition are ignored), and trains a second network for half the epochs from the same start
    (``miou_at_half_steps``: a converged reference gains little from the second half). An existing
    ``reference.json`` is returned as is.
    """
    out = Path(config.out_dir)
    path = out / "reference.json"
    if path.is_file():
        return json.loads(path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda _line: None)
    started = time.monotonic()
    device = select_device(config.device)
    pool, samples, evaluation = full_label_splits(config)
    runs = {}
    for share in (0.5, 1.0):  # from the same start: how much doubling the training adds
        train_config, result, confusion = train_on_every_label(config, samples, evaluation, device, share)
        runs[share] = (train_config, result, confusion)
        log(f"[fully supervised seed {config.seed}] {train_config.epochs} epochs: mIoU {100 * mean_iou(confusion):.2f}")
    train_config, result, confusion = runs[1.0]
    ious = iou_per_class(confusion)
    payload = {
        "kind": "reference",
        "strategy": "fully supervised",
        "seed": config.seed,
        "miou": mean_iou(confusion),
        "per_class_iou": {name: float(iou) for name, iou in zip(config.class_names, ious, strict=True)},
        "miou_at_half_steps": mean_iou(runs[0.5][2]),
        "labelled_pixel_share": sum(int((e.gt != IGNORE).sum()) for e in pool) / sum(e.gt.size for e in pool),
        "images": len(pool),
        "epochs_run": result.metrics["epochs_run"],
        "train_steps": result.metrics["steps"],
        "train_steps_half": runs[0.5][1].metrics["steps"],
        "precision": result.metrics["precision"],
        "seconds": round(time.monotonic() - started, 3),
        "config": config.to_dict(),
    }
    write_atomic(path, json.dumps(json_value(payload), indent=2).encode())
    log(f"[fully supervised seed {config.seed}] mIoU {100 * payload['miou']:.2f} ({payload['seconds']:.1f} s)")
    return payload
