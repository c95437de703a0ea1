"""Reading and checking setting values: the parsers for environment strings and the checks that
:meth:`ls_al_backend.config.Settings.validate` runs (ranges, choices, settings that must go together)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting has a value the backend cannot use."""


def split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def parse_value(type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    if type_name == "int":
        return int(raw)
    if type_name == "float":
        return float(raw)
    if type_name == "bool":
        return to_bool(raw)
    if type_name == "Path":
        return Path(raw)
    if type_name.startswith("tuple"):
        return split_list(raw)
    return raw


def check_settings(settings: Any) -> None:
    """Raise :class:`ConfigError` naming the first setting of ``settings`` (a ``Settings``) whose value is unusable."""
    for spec in fields(settings):
        choices = spec.metadata.get("choices")
        if choices and getattr(settings, spec.name) not in choices:
            value = getattr(settings, spec.name)
            raise ConfigError(f"{spec.name.upper()} must be one of {', '.join(choices)}, got {value!r}")
    if bool(settings.basic_auth_user) != bool(settings.basic_auth_pass):
        raise ConfigError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")
    if not 0.0 <= settings.head_dropout < 1.0:
        raise ConfigError(f"HEAD_DROPOUT must be in [0, 1), got {settings.head_dropout}")
    if settings.mc_samples < 1:
        raise ConfigError(f"MC_SAMPLES must be >= 1, got {settings.mc_samples}")
    if not 0.0 < settings.mc_resolution <= 1.0:
        raise ConfigError(f"MC_RESOLUTION must be in (0, 1], got {settings.mc_resolution}")
    if not 1 <= settings.overlay_levels <= 255 or not 0 <= settings.overlay_max_alpha <= 255:
        raise ConfigError("OVERLAY_LEVELS must be in [1, 255] and OVERLAY_MAX_ALPHA in [0, 255]")
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {settings.log_level!r}")
    if not 0.0 <= settings.train_ema_momentum <= 1.0:
        raise ConfigError(f"TRAIN_EMA_MOMENTUM must be in [0, 1], got {settings.train_ema_momentum}")
    if settings.train_unlabelled_limit < 1:
        raise ConfigError(f"TRAIN_UNLABELLED_LIMIT must be >= 1, got {settings.train_unlabelled_limit}")
    if settings.train_crop_size % 32 or settings.train_crop_size < 32:
        raise ConfigError(f"TRAIN_CROP_SIZE must be a positive multiple of 32, got {settings.train_crop_size}")
    if settings.pool_statistics_images < 1:
        raise ConfigError(f"POOL_STATISTICS_IMAGES must be >= 1, got {settings.pool_statistics_images}")
    if settings.train_min_steps < 0:
        raise ConfigError(f"TRAIN_MIN_STEPS must be >= 0, got {settings.train_min_steps}")
    if min(settings.train_every_n_annotations, settings.train_epochs, settings.train_batch_size) < 1:
        raise ConfigError("TRAIN_EVERY_N_ANNOTATIONS, TRAIN_EPOCHS and TRAIN_BATCH_SIZE must be >= 1")
    if not settings.training_queue or not settings.scoring_queue or settings.training_queue == settings.scoring_queue:
        raise ConfigError("TRAINING_QUEUE and SCORING_QUEUE must be two different, non-empty queue names")
    if settings.score_chunk_size < 0:
        raise ConfigError(f"SCORE_CHUNK_SIZE must be >= 0 (0: sized to the pool), got {settings.score_chunk_size}")
    settings.acquisition_defaults  # noqa: B018 (raises ConfigError on a malformed value)
    if settings.inference_max_side < 32:
        raise ConfigError(f"INFERENCE_MAX_SIDE must be >= 32, got {settings.inference_max_side}")
    if settings.inference_batch_size < 1:
        raise ConfigError(f"INFERENCE_BATCH_SIZE must be >= 1, got {settings.inference_batch_size}")
    if settings.analysis_max_side < 32:
        raise ConfigError(f"ANALYSIS_MAX_SIDE must be >= 32, got {settings.analysis_max_side}")
    if min(settings.max_request_bytes, settings.max_image_bytes, settings.max_image_pixels) < 1:
        raise ConfigError("MAX_REQUEST_BYTES, MAX_IMAGE_BYTES and MAX_IMAGE_PIXELS must be >= 1")
    if min(settings.image_cache_max_mb, settings.superpixel_cache_max_mb, settings.event_log_max_mb) <= 0:
        raise ConfigError("IMAGE_CACHE_MAX_MB, SUPERPIXEL_CACHE_MAX_MB and EVENT_LOG_MAX_MB must be > 0")
    if settings.model_cache_max_mb <= 0 or settings.model_list_ttl_s < 0:
        raise ConfigError("MODEL_CACHE_MAX_MB must be > 0 and MODEL_LIST_TTL_S >= 0")
    if "://" in settings.model_dir and not re.match(r"^s3://[^/]+", settings.model_dir):
        raise ConfigError(f"MODEL_DIR={settings.model_dir!r}: expected a folder or s3://bucket/prefix")
    if settings.keep_prediction_versions < 1:
        raise ConfigError(f"KEEP_PREDICTION_VERSIONS must be >= 1, got {settings.keep_prediction_versions}")
    if settings.studio_bulk_timeout_s <= 0:
        raise ConfigError(f"STUDIO_BULK_TIMEOUT_S={settings.studio_bulk_timeout_s}: must be positive")
    if settings.studio_retries < 0 or settings.studio_backoff_s < 0:
        raise ConfigError("STUDIO_RETRIES and STUDIO_BACKOFF_S must be >= 0")
    if not 0.0 <= settings.train_max_unreadable_share <= 1.0:
        raise ConfigError(f"TRAIN_MAX_UNREADABLE_SHARE must be in [0, 1], got {settings.train_max_unreadable_share}")
