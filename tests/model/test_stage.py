"""One training stage's schedule: warm-up then cosine to zero, and at least ``min_steps`` steps however few
samples there are."""

from __future__ import annotations

import pytest

from ls_al_backend.model.stage import lr_factor, stage_batches_per_epoch
from ls_al_backend.model.train_config import TrainConfig


def test_the_learning_rate_warms_up_then_anneals_to_zero() -> None:
    factors = [lr_factor(step, warmup=4, total=20) for step in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(later <= earlier for earlier, later in zip(factors[3:], factors[4:], strict=False))
    assert lr_factor(20, warmup=4, total=20) == pytest.approx(0.0)


def test_an_epoch_is_one_pass_over_the_samples_raised_to_reach_min_steps() -> None:
    assert stage_batches_per_epoch(17, TrainConfig(batch_size=4, min_steps=0), epochs=8) == 5
    assert stage_batches_per_epoch(17, TrainConfig(batch_size=4, min_steps=300), epochs=8) == 38  # 300 / 8
    assert stage_batches_per_epoch(17, TrainConfig(batch_size=4, steps_per_epoch=3), epochs=8) == 3
