"""Mean-teacher semi-supervised training on unlabelled images, after S4AL (Rangnekar, Kanan, Hoffman 2023).

A teacher network, the exponential moving average (EMA) of the student, pseudo-labels a weakly augmented view of
each unlabelled image (geometric augmentation only). The student learns those pseudo labels on a strongly
augmented view (the same crop with photometric augmentation), where class-balanced ClassMix has pasted the pixels
of one class from a recently seen unlabelled crop. The loss of a pixel is weighted by the teacher's confidence p
(its largest softmax probability), the loss of an image by the share of its pixels with p above a threshold.

Conventions: images are normalised ``[3, H, W]`` / ``[B, 3, H, W]`` float tensors (see
:func:`~ls_al_backend.model.inference.to_tensor`), pseudo labels ``[H, W]`` / ``[B, H, W]`` int64 with
:data:`~ls_al_backend.labeling.annotations.IGNORE` where there is none (crop padding), confidences ``[H, W]`` /
``[B, H, W]`` float in [0, 1] with 0 where there is no pseudo label.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.model.precision import FLOAT32, Precision, autocast
from ls_al_backend.model.pretrained import IMAGENET_MEAN, IMAGENET_STD

SEMI_SUPERVISED_MODES = ("none", "mean_teacher")

# --------------------------------------------------------------------------------------------------------------
# Teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student``, in place, for every parameter and every
    floating-point buffer (BatchNorm's running mean and variance are averaged like the weights, so they follow the
    averaged weights); integer buffers (BatchNorm's ``num_batches_tracked``) are copied from the student.
    Momentum 0 copies the student, momentum 1 keeps the teacher."""
    student_state = student.state_dict()
    for name, value in teacher.state_dict().items():
        source = student_state[name]
        if value.is_floating_point():
            value.mul_(momentum).add_(source.to(value.dtype), alpha=1.0 - momentum)
        else:
            value.copy_(source)


def ramped_momentum(step: int, momentum: float) -> float:
    """The momentum of the EMA update after optimizer step ``step`` (0-based): ``min(momentum, 1 - 1 / (step + 1))``.

    The ramp from Mean Teacher (Tarvainen & Valpola 2017): over the first ``1 / (1 - momentum)`` steps the teacher
    is the plain average of the student's weights so far, so a short training does not return a teacher that is
    still mostly the network it started from."""
    return min(momentum, 1.0 - 1.0 / (step + 1))


# --------------------------------------------------------------------------------------------------------------
# Strong augmentation


def strong_photometric(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``[B, 3, H, W]`` normalised images -> new normalised images, each with its own random colour jitter
    (brightness, contrast, saturation in [0.6, 1.4], with probability 0.8), grayscale (0.2) and Gaussian blur
    (sigma in [0.1, 2], 0.5). Photometric only: the pixels stay where they are, so pseudo labels computed on
    ``images`` still line up."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(3, 1, 1)
    augmented = []
    for image in images.float():
        rgb = (image * std + mean).clamp(0.0, 1.0)
        if rng.random() < 0.8:
            rgb = TF.adjust_brightness(rgb, float(rng.uniform(0.6, 1.4)))
            rgb = TF.adjust_contrast(rgb, float(rng.uniform(0.6, 1.4)))
            rgb = TF.adjust_saturation(rgb, float(rng.uniform(0.6, 1.4)))
        if rng.random() < 0.2:
            rgb = TF.rgb_to_grayscale(rgb, num_output_channels=3)
        if rng.random() < 0.5:
            sigma = float(rng.uniform(0.1, 2.0))
            kernel = 2 * math.ceil(3 * sigma) + 1
            rgb = TF.gaussian_blur(rgb, [kernel, kernel], [sigma, sigma])
        augmented.append((rgb - mean) / std)
    return torch.stack(augmented).to(images.dtype)


# --------------------------------------------------------------------------------------------------------------
# Pseudo labels and their loss


def pseudo_labels(teacher_logits: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher logits ``[B, C, H, W]`` and the image's pixels ``valid [B, H, W]`` (False on crop padding) ->
    pseudo labels ``[B, H, W]`` (argmax; IGNORE where not valid) and confidence ``[B, H, W]`` (largest softmax
    probability; 0 where not valid)."""
    confidence, labels = teacher_logits.float().softmax(dim=1).max(dim=1)
    return torch.where(valid, labels, IGNORE), torch.where(valid, confidence, 0.0)


def confidence_weights(
    labels: torch.Tensor, confidence: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss weights ``[B, H, W]`` and the confident share ``[B]`` of pseudo labels ``[B, H, W]``.

    The weight of a pixel with a pseudo label is its confidence p times its image's confident share, the share
    of the image's pseudo-labelled pixels with ``p > threshold``; pixels without a pseudo label weigh 0. An image
    with no confident pixel therefore weighs 0 everywhere."""
    labelled = labels != IGNORE
    counts = labelled.flatten(1).sum(dim=1)
    confident = (labelled & (confidence > threshold)).flatten(1).sum(dim=1)
    share = confident / counts.clamp(min=1)
    weights = torch.where(labelled, confidence, 0.0) * share[:, None, None]
    return weights, share


def confidence_weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student logits ``[B, C, H, W]`` against pseudo labels and confidences ``[B, H, W]`` -> (scalar loss, the
    confident share ``[B]``): the mean over images of ``sum_x w(x) CE(x) / n``, with the weights ``w`` of
    :func:`confidence_weights` and ``n`` the image's number of pseudo-labelled pixels."""
    weights, share = confidence_weights(labels, confidence, threshold)
    cross_entropy = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="none")
    counts = (labels != IGNORE).flatten(1).sum(dim=1).clamp(min=1)
    per_image = (weights * cross_entropy).flatten(1).sum(dim=1) / counts
    return per_image.mean(), share


# --------------------------------------------------------------------------------------------------------------
# Class-balanced ClassMix


class RareClassSampler:
    """Draws class ids with a bias toward classes that are rare in the labelled pixels.

    The weight of a class is ``(1 / f) ** alpha``, ``f`` its share of the labelled pixels; a class absent from the
    labels gets the weight of the rarest present class (it is at least as rare, and the teacher has never been
    told what it looks like, so it is not favoured beyond that). No labels at all: uniform. ``alpha`` 0 is
    uniform, 1 fully inverse-frequency.
    """

    def __init__(self, label_counts: Sequence[int] | np.ndarray, alpha: float = 0.5):
        counts = np.asarray(label_counts, dtype=np.float64)
        present = counts > 0
        weights = np.ones_like(counts)
        if present.any():
            frequency = counts[present] / counts[present].sum()
            weights[present] = (1.0 / frequency) ** alpha
            weights[~present] = weights[present].max()
        self.weights = weights

    def probabilities(self, allowed: np.ndarray | None = None) -> np.ndarray:
        """``[C]`` probabilities, restricted to the ``allowed [C]`` bool classes when given (renormalised)."""
        weights = self.weights if allowed is None else np.where(allowed, self.weights, 0.0)
        if weights.sum() <= 0:
            raise ValueError("no class is allowed")
        return weights / weights.sum()

    def sample(self, rng: np.random.Generator, allowed: np.ndarray | None = None) -> int:
        """One class id drawn from :meth:`probabilities`."""
        return int(rng.choice(len(self.weights), p=self.probabilities(allowed)))


@dataclass
class BufferEntry:
    """One unlabelled crop as the student saw it: ``image [3, H, W]``, its teacher ``labels [H, W]`` and
    ``confidence [H, W]``, and ``classes [C]`` (bool, the classes in ``labels``)."""

    image: torch.Tensor
    labels: torch.Tensor
    confidence: torch.Tensor
    classes: np.ndarray


class ReplayBuffer:
    """The ``capacity`` most recent unlabelled crops (first in, first out), the sources of ClassMix."""

    def __init__(self, capacity: int, num_classes: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.num_classes = num_classes
        self.entries: deque[BufferEntry] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, image: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor) -> None:
        """Keep a copy of one crop (``[3, H, W]``, ``[H, W]``, ``[H, W]``); the oldest entry leaves when full."""
        present = torch.bincount(labels[labels != IGNORE], minlength=self.num_classes) > 0
        self.entries.append(
            BufferEntry(
                image.detach().clone(), labels.detach().clone(), confidence.detach().clone(), present.cpu().numpy()
            )
        )

    def classes_present(self) -> np.ndarray:
        """``[C]`` bool: the classes some entry's pseudo labels contain."""
        present = np.zeros(self.num_classes, dtype=bool)
        for entry in self.entries:
            present |= entry.classes
        return present

    def sample_containing(self, class_id: int, rng: np.random.Generator) -> BufferEntry:
        """A uniformly drawn entry whose pseudo labels contain ``class_id``."""
        holders = [entry for entry in self.entries if entry.classes[class_id]]
        if not holders:
            raise ValueError(f"no buffer entry contains class {class_id}")
        return holders[int(rng.integers(len(holders)))]


def class_mix(
    image: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor, source: BufferEntry, class_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste the pixels of ``source`` whose pseudo label is ``class_id`` (image values, pseudo label and confidence)
    onto ``image [3, H, W]``, ``labels [H, W]``, ``confidence [H, W]``; returns new tensors, the others are not
    changed. Source and target are aligned at their top-left corners; source pixels beyond the target are
    dropped."""
    height = min(labels.shape[0], source.labels.shape[0])
    width = min(labels.shape[1], source.labels.shape[1])
    rows, cols = slice(0, height), slice(0, width)
    paste = source.labels[rows, cols] == class_id
    image, labels, confidence = image.clone(), labels.clone(), confidence.clone()
    image[:, rows, cols] = torch.where(paste, source.image[:, rows, cols], image[:, rows, cols])
    labels[rows, cols] = torch.where(paste, source.labels[rows, cols], labels[rows, cols])
    confidence[rows, cols] = torch.where(paste, source.confidence[rows, cols], confidence[rows, cols])
    return image, labels, confidence


# --------------------------------------------------------------------------------------------------------------
# One training stage


class MeanTeacher:
    """The teacher, the replay buffer and the class sampler of one training stage.

    Per optimizer step the training loop calls :meth:`unsupervised_loss` (student and one weakly augmented batch of
    unlabelled images) and, after the optimizer step, :meth:`update`. The teacher starts as a copy of the student,
    stays in eval mode (BatchNorm running statistics, no dropout) and is never trained by gradients.
    """

    def __init__(
        self,
        student: nn.Module,
        label_counts: Sequence[int] | np.ndarray,
        rng: np.random.Generator,
        momentum: float = 0.99,
        threshold: float = 0.97,
        classmix: bool = True,
        buffer_size: int = 64,
        alpha: float = 0.5,
    ):
        self.teacher = copy.deepcopy(student).eval()
        for parameter in self.teacher.parameters():
            parameter.grad = None
        self.rng = rng
        self.momentum, self.threshold = momentum, threshold
        self.sampler = RareClassSampler(label_counts, alpha)
        self.buffer = ReplayBuffer(buffer_size, len(self.sampler.weights)) if classmix else None
        self.steps = 0

    def unsupervised_loss(
        self, student: nn.Module, weak: torch.Tensor, valid: torch.Tensor, precision: Precision = FLOAT32
    ) -> tuple[torch.Tensor, float]:
        """Loss of the student on one unlabelled batch and the batch's mean confident share.

        ``weak [B, 3, H, W]``: weakly augmented images, ``valid [B, H, W]``: their image pixels (not padding). The
        teacher labels ``weak``; the student sees the strong view, ClassMixed with buffer entries when ClassMix
        is on; the un-mixed strong views then join the buffer.
        """
        device = weak.device
        with torch.no_grad(), autocast(device, precision):
            teacher_logits = self.teacher(weak)
        labels, confidence = pseudo_labels(teacher_logits, valid)
        strong = strong_photometric(weak, self.rng)
        if self.buffer is not None:
            views = list(zip(strong, labels, confidence, strict=True))
            mixed = [self._mix(self.buffer, *view) for view in views]
            for view in views:
                self.buffer.add(*view)
            strong, labels, confidence = (torch.stack(part) for part in zip(*mixed, strict=True))
        with autocast(device, precision):
            student_logits = student(strong)
        loss, share = confidence_weighted_loss(student_logits.float(), labels, confidence, self.threshold)
        return loss, float(share.mean())

    def _mix(
        self, buffer: ReplayBuffer, image: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        allowed = buffer.classes_present()
        if not allowed.any():  # an empty buffer
            return image, labels, confidence
        class_id = self.sampler.sample(self.rng, allowed=allowed)
        source = buffer.sample_containing(class_id, self.rng)
        return class_mix(image, labels, confidence, source, class_id)

    def update(self, student: nn.Module) -> None:
        """EMA step of the teacher toward ``student``; call after every optimizer step."""
        ema_update(self.teacher, student, ramped_momentum(self.steps, self.momentum))
        self.steps += 1
