"""The training configuration refuses values that train() cannot use, naming the field."""

from __future__ import annotations

import pytest

from ls_al_backend.model.train_config import TrainConfig


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="steps_per_epoch"):
        TrainConfig(steps_per_epoch=0)
    with pytest.raises(ValueError, match="min_steps"):
        TrainConfig(min_steps=-1)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="class_weighting"):
        TrainConfig(class_weighting="median")
    with pytest.raises(ValueError, match="scale"):
        TrainConfig(scale=(1.5, 1.0))
    with pytest.raises(ValueError, match="semi_supervised"):
        TrainConfig(semi_supervised="fixmatch")
    with pytest.raises(ValueError, match="ema_momentum"):
        TrainConfig(ema_momentum=1.5)
    with pytest.raises(ValueError, match="confidence_threshold"):
        TrainConfig(confidence_threshold=1.0)
    with pytest.raises(ValueError, match="unlabelled_batch_size"):
        TrainConfig(unlabelled_batch_size=0)
    with pytest.raises(ValueError, match="replay_buffer_size"):
        TrainConfig(replay_buffer_size=0)
