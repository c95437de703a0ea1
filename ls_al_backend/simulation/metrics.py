"""Evaluation: confusion matrices, per-class IoU and mIoU of a network over the evaluation split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.model.inference import pad_to_multiple, to_tensor
from ls_al_backend.model.network import SegmentationNet
from ls_al_backend.simulation.data import Example
from ls_al_backend.simulation.output import progress_bar


def confusion_matrix(predicted: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` int64 counts (rows: ground truth, columns: prediction); pixels with ``gt == IGNORE`` skipped."""
    valid = (gt != IGNORE) & (gt >= 0) & (gt < num_classes)
    index = gt[valid].astype(np.int64) * num_classes + predicted[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """``[C]`` IoU = TP / (TP + FP + FN); NaN for a class absent from both ground truth and prediction."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean of the defined per-class IoUs (NaN classes left out)."""
    ious = iou_per_class(confusion)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


@torch.no_grad()
def predict_classes(net: SegmentationNet, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Argmax ``[H, W]`` of one deterministic (dropout-off) pass."""
    net.eval()
    height, width = image.shape[:2]
    batch = pad_to_multiple(to_tensor(image)[None].to(device), net.output_stride)
    logits = net(batch)[0, :, :height, :width]
    return logits.argmax(dim=0).cpu().numpy()


def evaluate(net: SegmentationNet, examples: Sequence[Example], num_classes: int, device: torch.device) -> np.ndarray:
    """Confusion matrix of the network over ``examples`` (void ignored)."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for done, example in enumerate(examples, 1):
        confusion += confusion_matrix(predict_classes(net, example.image, device), example.gt, num_classes)
        progress_bar("evaluating", done, len(examples))
    return confusion
