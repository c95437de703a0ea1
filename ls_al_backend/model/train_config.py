"""The training configuration: what :func:`~ls_al_backend.model.training.train` does, checked on construction."""

from __future__ import annotations

from dataclasses import dataclass

from ls_al_backend.model.precision import PRECISIONS
from ls_al_backend.model.semi_supervised import SEMI_SUPERVISED_MODES

CLASS_WEIGHTING_POWERS = {"inverse_frequency": 1.0, "inverse_sqrt_frequency": 0.5}
"""Class weighting -> the power of the inverse label frequency it weights the loss by."""
CLASS_WEIGHTINGS = ("none", *CLASS_WEIGHTING_POWERS)


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
