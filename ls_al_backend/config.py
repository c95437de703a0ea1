"""All configuration in one place: environment variables with documented defaults.

Every setting is read once by :func:`Settings.from_env`; the rest of the package receives a
``Settings`` object and never reads ``os.environ`` itself. docs/configuration.md is generated from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ls_al_backend.config_rules import ConfigError, check_settings, parse_value, split_list

__all__ = ["ConfigError", "Settings"]


#: Settings that were removed, with what to set instead; setting one is an error rather than silently ignored.
RETIRED_SETTINGS = {
    "QUEUE_NAME": "training and scoring have separate queues, set TRAINING_QUEUE and SCORING_QUEUE instead "
    "(defaults ls-al-backend-training and ls-al-backend-scoring)",
}


def _choice(default: str, choices: tuple[str, ...], help_text: str) -> Any:
    """A setting that takes one of ``choices`` (checked by :meth:`Settings.validate`)."""
    return field(default=default, metadata={"choices": choices, "help": help_text})


@dataclass(frozen=True)
class Settings:
    """Backend settings. Field ``foo_bar`` is read from the environment variable ``FOO_BAR``."""

    # --- server ---
    host: str = field(default="0.0.0.0", metadata={"help": "Interface the HTTP server binds to."})
    port: int = field(default=9090, metadata={"help": "HTTP port (Label Studio's default for ML backends)."})
    log_level: str = field(default="INFO", metadata={"help": "Python logging level."})
    basic_auth_user: str = field(
        default="", metadata={"help": "If set (with BASIC_AUTH_PASS), every route requires HTTP basic auth."}
    )
    basic_auth_pass: str = field(default="", metadata={"help": "Password for basic auth."})
    webhook_secret: str = field(
        default="",
        metadata={
            "help": "If set, /webhook requires this value in the X-Webhook-Secret header (on its own, or instead of "
            "basic auth: Label Studio's auto-created event webhook sends custom headers but no basic auth)."
        },
    )
    max_request_bytes: int = field(
        default=32 * 1024 * 1024,
        metadata={"help": "Largest request body accepted (bytes); a larger one is answered 413."},
    )
    # --- Label Studio ---
    label_studio_url: str = field(
        default="",
        metadata={
            "help": "Base URL of Label Studio, with its path prefix when it is served under one "
            "(https://host/labelstudio); used for its API and the images it serves: uploads, local files, and cloud "
            "storage URIs (s3://, gs://, azure-blob://) through /tasks/<id>/presign/."
        },
    )
    label_studio_api_key: str = field(
        default="",
        metadata={"help": "Legacy API token or personal access token (JWT refresh token); the kind is detected."},
    )
    # --- images ---
    allowed_image_hosts: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Comma-separated extra hosts that task image URLs may point to; the LABEL_STUDIO_URL host is "
            "always allowed. '*' allows every host (the backend then fetches any URL a task names)."
        },
    )
    local_image_roots: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Comma-separated folders from which plain file paths in tasks may be read."},
    )
    image_timeout_s: float = field(
        default=30.0, metadata={"help": "Timeout for one image download and for every other Label Studio request."}
    )
    studio_bulk_timeout_s: float = field(
        default=600.0,
        metadata={
            "help": "Timeout for one bulk request to Label Studio (a scoring job's predictions import, deleting a "
            "model version's predictions): deleting 10,000 predictions took Label Studio 1.23.2 over 30 s in the "
            "scale benchmark, 78 s in the write probe."
        },
    )
    studio_retries: int = field(
        default=5,
        metadata={
            "help": "Retries of a Label Studio read or write and of an image download after a connection error or a "
            "5xx answer, with exponential backoff."
        },
    )
    studio_backoff_s: float = field(
        default=0.5, metadata={"help": "First retry delay (seconds); it doubles with every further retry."}
    )
    max_image_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata={"help": "Largest image file read or downloaded (bytes); a larger one is refused, not truncated."},
    )
    max_image_pixels: int = field(
        default=50_000_000,
        metadata={
            "help": "Largest image (width x height) decoded; a larger one (or a decompression bomb) is refused "
            "before its pixels are read."
        },
    )
    analysis_max_side: int = field(
        default=2048,
        metadata={
            "help": "Longest side of the grid on which class probabilities, uncertainty and superpixels of one image "
            "are computed; larger images are analysed scaled down and their masks drawn back at full size. Bounds "
            "the memory of one prediction."
        },
    )
    # --- storage ---
    data_dir: Path = field(
        default=Path("data"), metadata={"help": "Root for checkpoints, project state and the image cache."}
    )
    model_dir: str = field(
        default="",
        metadata={
            "help": "Where model versions live: a folder (default DATA_DIR/models; share it with the workers) or "
            "s3://bucket/prefix on an S3-compatible store (endpoint and credentials from AWS_ENDPOINT_URL, "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)."
        },
    )
    model_cache_max_mb: float = field(
        default=2048.0,
        metadata={
            "help": "Size limit of DATA_DIR/model-cache (MB), the checkpoints downloaded from an s3:// MODEL_DIR; "
            "the least recently used go first."
        },
    )
    model_list_ttl_s: float = field(
        default=5.0,
        metadata={
            "help": "How long (seconds) a listing of an s3:// MODEL_DIR is reused: /predict serves a new version "
            "within this time plus its download. A local folder is listed on every request."
        },
    )
    image_cache_max_mb: float = field(
        default=4096.0,
        metadata={"help": "Size limit of DATA_DIR/image-cache (MB); the least recently used downloads go first."},
    )
    superpixel_cache_max_mb: float = field(
        default=1024.0,
        metadata={"help": "Size limit of DATA_DIR/superpixel-cache (MB); the least recently used maps go first."},
    )
    event_log_max_mb: float = field(
        default=64.0,
        metadata={
            "help": "DATA_DIR/events.jsonl is renamed events.jsonl.1 (replacing the previous one) once it reaches "
            "this size (MB): the two files keep the newest webhook events."
        },
    )
    # --- model ---
    model_arch: str = field(default="Unet", metadata={"help": "segmentation-models-pytorch architecture."})
    model_encoder: str = field(default="timm-tf_efficientnet_lite0", metadata={"help": "Encoder name."})
    encoder_weights: str = _choice(
        "imagenet",
        ("imagenet", "none"),
        "'imagenet' (offline weights shipped for EfficientNet-Lite0) or 'none'.",
    )
    head_dropout: float = field(
        default=0.25, metadata={"help": "Dropout probability before the 1x1 classifier (sampled by MC dropout)."}
    )
    device: str = field(default="auto", metadata={"help": "'auto' (CUDA when available), 'cpu' or 'cuda[:n]'."})
    precision: str = _choice(
        "auto",
        ("auto", "fp32", "bf16", "fp16"),
        "Training and inference precision: 'auto' (float16 AMP on CUDA, bfloat16 on a CPU with native "
        "bf16 (AMX / AVX-512 BF16), else float32), 'fp32', 'bf16' or 'fp16' (CUDA only).",
    )
    inference_max_side: int = field(
        default=512,
        metadata={"help": "Longest image side fed to the network; outputs are resized back to the image size."},
    )
    inference_batch_size: int = field(
        default=8,
        metadata={
            "help": "Images run through the network together in /predict and pool scoring (same-size images batch)."
        },
    )
    inference_runtime: str = _choice(
        "auto",
        ("auto", "torch", "onnxruntime"),
        "What runs the encoder + decoder when serving on a CPU (the MC-dropout head stays in torch; CUDA always "
        "uses torch): 'torch' (BatchNorm folded), 'onnxruntime' (ONNX Runtime; the graph is exported once per "
        "network structure into DATA_DIR/runtime-cache, each version's weights are written into it), or 'auto': "
        "the faster of the two on a probe batch, measured once and remembered in DATA_DIR/runtime-cache.",
    )
    # --- uncertainty ---
    mc_samples: int = field(default=20, metadata={"help": "Number T of MC-dropout samples per image."})
    mc_resolution: float = field(
        default=0.25,
        metadata={
            "help": "Scale (0-1] of the grid the T head samples run on; e.g. 0.25 samples a 4x4-pixel grid and "
            "resizes the score maps back (much faster on CPU, coarser uncertainty). Class masks stay full size."
        },
    )
    class_masks: str = _choice(
        "auto",
        ("auto", "on", "off"),
        "Class masks (the model's pre-annotation) in predictions: 'auto' (the query mode's default: "
        "shown in dense brush mode, hidden in the query modes so the photo and the queries stay visible; "
        "never from the untrained v0, whose masks are noise), 'on' (always, v0 included) or 'off'.",
    )
    uncertainty_overlay: str = _choice(
        "auto",
        ("auto", "on", "off"),
        "The graded uncertainty overlay in predictions: 'auto' (as CLASS_MASKS: dense brush mode only, "
        "from the first trained version on), 'on' or 'off'.",
    )
    overlay_levels: int = field(default=8, metadata={"help": "Grey levels of the uncertainty overlay mask."})
    overlay_max_alpha: int = field(
        default=180, metadata={"help": "Alpha (0-255) of the most uncertain overlay pixels; keeps the image visible."}
    )

    acquisition: str = field(
        default="",
        metadata={
            "help": "Acquisition defaults as comma-separated key=value pairs, e.g. "
            "'heuristic=bald,superpixel_method=slic,top_k_regions=5,class_balance=pixbal' (keys: see "
            "'Acquisition' above); /predict's params.acquisition overrides them per request."
        },
    )
    # --- training and the job queue ---
    redis_url: str = field(
        default="",
        metadata={"help": "Redis URL for the RQ job queue (then run `ls-al-backend worker`); empty = embedded runner."},
    )
    training_queue: str = field(
        default="ls-al-backend-training",
        metadata={"help": "RQ queue of training jobs (`ls-al-backend worker --queues training` takes only these)."},
    )
    scoring_queue: str = field(
        default="ls-al-backend-scoring",
        metadata={"help": "RQ queue of pool scoring and publish jobs (`worker --queues scoring` takes only these)."},
    )
    train_on_events: tuple[str, ...] = field(
        default=("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"),
        metadata={"help": "Webhook events that request training (START_TRAINING always does)."},
    )
    train_every_n_annotations: int = field(
        default=1, metadata={"help": "Request training on every N-th annotation event of a project."}
    )
    train_epochs: int = field(
        default=10, metadata={"help": "Epochs (passes over the labelled images) per training run."}
    )
    train_min_steps: int = field(
        default=200,
        metadata={
            "help": "At least this many optimizer steps per training run (a few labelled images make more passes)."
        },
    )
    train_batch_size: int = field(default=4, metadata={"help": "Training batch size."})
    train_crop_size: int = field(default=256, metadata={"help": "Square training crop (multiple of 32)."})
    train_learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    train_warm_start: bool = field(
        default=True,
        metadata={"help": "Start from the newest version (true) or re-initialise from ImageNet each round (false)."},
    )
    train_class_weighting: str = _choice(
        "inverse_sqrt_frequency",
        ("none", "inverse_frequency", "inverse_sqrt_frequency"),
        "Class weights in the loss, from the labelled pixels of the round: 'none', 'inverse_frequency' (1 / share, "
        "mean 1) or 'inverse_sqrt_frequency' (its square root: rare classes weigh less than with inverse_frequency; "
        "the default, the best measured on CamVid: README, Active-learning benchmark).",
    )
    train_seed: int = field(default=0, metadata={"help": "Seed for reproducible training."})
    train_max_unreadable_share: float = field(
        default=0.1,
        metadata={
            "help": "A training round whose labelled tasks' images cannot be read for more than this share of them "
            "fails (listing the task ids in /jobs) instead of training on a silent subset; below it the round "
            "trains on the rest and reports the ids."
        },
    )
    train_semi_supervised: str = _choice(
        "none",
        ("none", "mean_teacher"),
        "'none' or 'mean_teacher': also learn from unlabelled tasks' images with an EMA teacher's "
        "confidence-weighted pseudo labels and class-balanced ClassMix (S4AL); the teacher becomes the model.",
    )
    train_ema_momentum: float = field(
        default=0.99, metadata={"help": "Mean teacher: EMA momentum of the teacher, in [0, 1]."}
    )
    train_unlabelled_limit: int = field(
        default=200,
        metadata={"help": "Mean teacher: at most this many unlabelled tasks' images per training (a seeded sample)."},
    )
    pool_statistics_images: int = field(
        default=100,
        metadata={
            "help": "After training, the class-balance statistics (PixBal prior, ClassBal shares) of the new version "
            "are estimated on at most this many of the project's images (a seeded sample) and kept with it."
        },
    )
    score_chunk_size: int = field(
        default=0,
        metadata={
            "help": "Unlabelled tasks per scoring job (several workers share a large pool); a job's predictions "
            "go to Label Studio in one import, whose cost grows with the project. 0: sized to the pool, about 20 "
            "jobs of 100 to 500 tasks (100 up to 2,000 tasks, 500 from 10,000)."
        },
    )
    keep_prediction_versions: int = field(
        default=2,
        metadata={
            "help": "Predictions of at most this many model versions (the newest, named v<N>) are kept per task; "
            "publishing a round deletes older ones of this backend, so Label Studio's database does not grow every "
            "round."
        },
    )
    queue_view_title: str = field(
        default="Active learning queue", metadata={"help": "Data Manager view ordered by the acquisition score."}
    )
    training_lock_ttl_s: int = field(
        default=60,
        metadata={"help": "A training whose worker died frees its project after this long (seconds)."},
    )

    @property
    def acquisition_defaults(self) -> dict[str, str]:
        """``ACQUISITION`` as a dict (values stay strings; the acquisition engine validates them)."""
        pairs = {}
        for item in split_list(self.acquisition):
            key, separator, value = item.partition("=")
            if not separator or not key.strip():
                raise ConfigError(f"ACQUISITION: expected key=value pairs separated by commas, got {item!r}")
            pairs[key.strip()] = value.strip()
        return pairs

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def models_dir(self) -> Path | str:
        """The model store: a local folder, or an ``s3://bucket/prefix`` URL kept as a string."""
        if self.model_dir.startswith("s3://"):
            return self.model_dir
        return Path(self.model_dir) if self.model_dir else self.data_path / "models"

    @property
    def image_cache_dir(self) -> Path:
        return self.data_path / "image-cache"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_path / "model-cache"

    @property
    def superpixel_cache_dir(self) -> Path:
        return self.data_path / "superpixel-cache"

    @property
    def runtime_cache_dir(self) -> Path:
        """Encoder + decoder graphs exported for INFERENCE_RUNTIME (one file per network content)."""
        return self.data_path / "runtime-cache"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); ``overrides`` win over both."""
        environ = os.environ if environ is None else environ
        for retired, replacement in RETIRED_SETTINGS.items():
            if retired in environ:
                raise ConfigError(f"{retired} is no longer read: {replacement}")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = environ.get(spec.name.upper())
            if raw is None:
                continue
            try:
                values[spec.name] = parse_value(spec.type, raw)
            except ValueError as error:
                raise ConfigError(f"{spec.name.upper()}={raw!r}: {error}") from None
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`ConfigError` when a value is unusable (:func:`ls_al_backend.config_rules.check_settings`)."""
        check_settings(self)

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """(ENV_NAME, default, help) for every setting, for docs/configuration.md and ``--help``."""
        rows = []
        for spec in fields(cls):
            default = spec.default
            shown = ",".join(default) if isinstance(default, tuple) else str(default)
            rows.append((spec.name.upper(), shown, spec.metadata.get("help", "")))
        return rows
