"""Settings: every environment variable has a documented default, bad values get a readable error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ls_al_backend.config import ConfigError, Settings
from ls_al_backend.jobs.pipeline import train_config_from
from ls_al_backend.model.precision import PRECISIONS
from ls_al_backend.model.semi_supervised import SEMI_SUPERVISED_MODES
from ls_al_backend.model.train_config import CLASS_WEIGHTINGS
from tests.conftest import REPO_ROOT


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.port == 9090 and settings.mc_samples == 20 and settings.models_dir == Path("data/models")


def test_values_are_parsed_from_their_variables() -> None:
    settings = Settings.from_env(
        {"PORT": "8000", "HEAD_DROPOUT": "0.1", "ALLOWED_IMAGE_HOSTS": "a.example, b.example", "MODEL_DIR": "/m"}
    )
    assert settings.port == 8000 and settings.head_dropout == 0.1
    assert settings.allowed_image_hosts == ("a.example", "b.example") and settings.models_dir == Path("/m")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PORT": "http"}, "PORT='http'"),
        ({"HEAD_DROPOUT": "1.5"}, "HEAD_DROPOUT"),
        ({"MC_SAMPLES": "0"}, "MC_SAMPLES"),
        ({"BASIC_AUTH_USER": "me"}, "BASIC_AUTH_PASS"),
        ({"ENCODER_WEIGHTS": "hub"}, "ENCODER_WEIGHTS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"TRAIN_SEMI_SUPERVISED": "fixmatch"}, "TRAIN_SEMI_SUPERVISED"),
        ({"TRAIN_EMA_MOMENTUM": "1.5"}, "TRAIN_EMA_MOMENTUM"),
        ({"TRAIN_UNLABELLED_LIMIT": "0"}, "TRAIN_UNLABELLED_LIMIT"),
        ({"SCORE_CHUNK_SIZE": "-1"}, "SCORE_CHUNK_SIZE"),
        ({"QUEUE_NAME": "jobs"}, "QUEUE_NAME is no longer read: .*TRAINING_QUEUE and SCORING_QUEUE"),
        ({"TRAINING_QUEUE": "jobs", "SCORING_QUEUE": "jobs"}, "two different"),
        ({"SCORING_QUEUE": ""}, "non-empty"),
        ({"MODEL_DIR": "gs://bucket/models"}, "MODEL_DIR='gs://bucket/models': expected a folder or s3://"),
        ({"MODEL_DIR": "s3:///models"}, "MODEL_DIR"),
        ({"MODEL_CACHE_MAX_MB": "0"}, "MODEL_CACHE_MAX_MB"),
        ({"MODEL_LIST_TTL_S": "-1"}, "MODEL_LIST_TTL_S"),
    ],
)
def test_bad_values_are_refused_with_the_variable_name(environ: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)


def test_an_s3_model_dir_stays_a_url() -> None:
    settings = Settings.from_env({"MODEL_DIR": "s3://bucket/models"})
    assert settings.models_dir == "s3://bucket/models"
    assert settings.model_cache_dir == Path("data") / "model-cache"


def test_the_mean_teacher_is_off_by_default_and_its_settings_reach_the_train_config() -> None:
    assert train_config_from(Settings.from_env({})).semi_supervised == "none"
    settings = Settings.from_env(
        {"TRAIN_SEMI_SUPERVISED": "mean_teacher", "TRAIN_EMA_MOMENTUM": "0.9", "TRAIN_UNLABELLED_LIMIT": "20"}
    )
    config = train_config_from(settings)
    assert (config.semi_supervised, config.ema_momentum, settings.train_unlabelled_limit) == ("mean_teacher", 0.9, 20)


@pytest.mark.parametrize(
    ("setting", "accepted"),
    [
        ("train_class_weighting", CLASS_WEIGHTINGS),
        ("train_semi_supervised", SEMI_SUPERVISED_MODES),
        ("precision", PRECISIONS),
    ],
)
def test_a_choice_setting_offers_exactly_what_training_accepts(setting: str, accepted: tuple[str, ...]) -> None:
    """The settings module lists choices without importing torch; they must stay the model's."""
    choices = next(f.metadata["choices"] for f in dataclasses.fields(Settings) if f.name == setting)
    assert choices == accepted


def test_the_configuration_reference_documents_every_setting() -> None:
    """The settings table moved from README.md to the generated docs/configuration.md (python -m
    ls_al_backend.docs_config > docs/configuration.md)."""
    reference = (REPO_ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name, _, _ in Settings.documentation() if f"`{name}`" not in reference]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_the_training_rule_and_precision_settings_reach_the_train_config() -> None:
    defaults = train_config_from(Settings.from_env({}))
    assert (defaults.min_steps, defaults.precision, defaults.val_fraction) == (200, "auto", 0.0)
    config = train_config_from(Settings.from_env({"TRAIN_MIN_STEPS": "7", "PRECISION": "fp32"}))
    assert (config.min_steps, config.precision) == (7, "fp32")
    with pytest.raises(ConfigError, match="PRECISION"):
        Settings.from_env({"PRECISION": "fp8"})
    with pytest.raises(ConfigError, match="POOL_STATISTICS_IMAGES"):
        Settings.from_env({"POOL_STATISTICS_IMAGES": "0"})
