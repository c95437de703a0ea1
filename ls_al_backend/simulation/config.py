"""What one simulated run is: :class:`SimulationConfig`, the named presets and reproducible seeds."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ls_al_backend.acquisition.api import AcquisitionConfig
from ls_al_backend.model.network import NetworkSpec
from ls_al_backend.model.precision import PRECISIONS
from ls_al_backend.model.semi_supervised import SEMI_SUPERVISED_MODES
from ls_al_backend.model.train_config import TrainConfig
from ls_al_backend.modes import QueryModeHandler, Unit, handler_for, registered

CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)

#: Mode names of results written before the simulation used the query modes' own names (``config.json`` files).
LEGACY_MODE_NAMES = {"image": "dense_brush", "pixels": "sparse_points"}

#: Named settings for ``simulate --preset`` (explicit options win). ``superpixel_size`` goes into the acquisition
#: mapping unless it sets one. Measured run times are in ``benchmarks/active_learning.md``.
PRESETS: dict[str, dict[str, Any]] = {
    # CamVid on 2 CPU cores: half resolution (240x180, ~170 superpixels per image), 5 rounds of 600 clicks (3000
    # in all: about 5% of the clicks that answering every superpixel of the pool costs). Every round fine-tunes the
    # last round's network by the server's rule: 8 epochs over the labelled images, at least 300 steps of 8
    # crops of 128x128 that hold labels. The reference trains 40 epochs over the whole pool (and 20, to show
    # how much doubling adds).
    "cpu": {
        "resolution": 240,
        "crop_size": 128,
        "rounds": 5,
        "budget": 600.0,
        "initial_budget": 600.0,
        "epochs": 8,
        "min_steps": 300,
        "reference_epochs": 40,
        "batch_size": 8,
        "mc_samples": 20,
        "superpixel_size": 16,
    },
    # CamVid at full resolution (480x360, ~170 superpixels of 32x32 pixels per image) on a GPU, trained by the same
    # server's rule as "cpu" (warm start, 8 epochs over the labelled images, at least 300 steps of 8 crops of
    # 256x256). 6 rounds of 450 clicks: 2700 in all, 4.7% of the clicks that answering every superpixel of the
    # pool costs, so every round lies within the goal's 5%. The reference trains 80 epochs (and 40). On one H200
    # six superpixel runs side by side, with two more runs beside them, took 260-370 s each; the reference, beside
    # three whole-image runs and then two other references, 295 s
    # (benchmarks/active_learning/gpu_inverse_sqrt_frequency/).
    "gpu": {
        "resolution": 480,
        "crop_size": 256,
        "rounds": 6,
        "budget": 450.0,
        "initial_budget": 450.0,
        "epochs": 8,
        "min_steps": 300,
        "reference_epochs": 80,
        "batch_size": 8,
        "mc_samples": 20,
        "superpixel_size": 32,
    },
    # Close to PixelPick's CamVid setting: full resolution (480x360), the model retrained from ImageNet weights for
    # 50 epochs every round. About 3.5 hours of one H200 for 8 strategies x 3 seeds, estimated from its first rounds
    # (benchmarks/active_learning/gpu_retrain_inverse_sqrt_frequency/).
    "gpu_retrain": {
        "resolution": 480,
        "rounds": 6,
        "budget": 1000.0,
        "initial_budget": 1000.0,
        "epochs": 50,
        "min_steps": 1000,
        "reference_epochs": 100,
        "batch_size": 8,
        "mc_samples": 20,
        "warm_start": False,
        "superpixel_size": 32,
    },
}

#: What a budget counts: annotator clicks (each mode's cost model) or labelled pixels (a unit's pixel count).
BUDGET_UNITS = ("clicks", "pixels")

#: Fields that may differ between a run and the run it resumes.
RESUMABLE_FIELDS = (
    "rounds",
    "device",
    "precision",
    "out_dir",
    "keep_all_checkpoints",
    "final_epochs",
    "final_min_steps",
)


@dataclass(frozen=True)
class SimulationConfig:
    """One simulated active-learning run (one strategy, one seed).

    Budgets are in clicks (see the module docstring for each mode's cost) or, with ``budget_unit="pixels"``, in
    labelled pixels (an image's, a superpixel's or 1 for a pixel query); result rows count clicks either way.
    ``rounds`` counts every round, the random initial round 0 included. ``resolution`` is the longest side images
    and masks are resized to (never up); training crops are ``crop_size`` square (None: ``resolution``), placed
    to hold a labelled pixel.
    ``acquisition`` is passed to :meth:`AcquisitionConfig.from_mapping`; the simulation overrides ``label_mode``
    (from ``query_mode``), ``top_k_regions``/``top_n_pixels``/``budget`` (selection happens over the whole pool)
    and ``seed`` (derived from ``seed`` and the round). ``max_units_per_image`` caps the units one image may give
    per round (``select_units`` groups). ``pool_limit`` / ``eval_limit`` keep that many images, evenly spaced in
    file-name order. Every round's labelled units are kept under ``state/``; its model only for the last round
    unless ``keep_all_checkpoints`` (about 23 MB each for the default network). Each round trains by the server's
    rule (:func:`~ls_al_backend.model.training.train`): ``epochs`` passes over every labelled image, at least
    ``min_steps`` optimizer steps, nothing held out. The fully supervised reference trains ``reference_epochs``
    epochs (None: ``rounds * epochs``) over the whole pool, and half as many to show how far from converged it is.
    ``semi_supervised="mean_teacher"`` passes every pool image to training as unlabelled (the reference stays
    supervised). ``final_epochs`` (None: skipped) trains, after the last round, a fresh ImageNet network on the
    final labels for that many epochs (at least ``final_min_steps`` steps) and scores it: what the labels give a
    model trained to convergence, apart from the rounds' training rule (``results.json``'s ``final``).
    ``outline_resolution`` (whole-image modes only; None: ``resolution``) is the longest side at which the annotator
    outlines an image: its clicks (and outlined regions) are counted on the mask at that size, while training still
    gets the outlines at ``resolution``. An annotator outlines the image Label Studio shows, usually larger than the
    simulation trains on, and an outline's vertices grow with its size.
    """

    pool_dir: str
    eval_dir: str
    out_dir: str
    query_mode: str = "superpixel_dominant"
    acquisition: Mapping[str, Any] = field(default_factory=lambda: {"heuristic": "predictive_entropy"})
    budget: float = 100.0
    initial_budget: float = 100.0
    budget_unit: str = "clicks"
    rounds: int = 5
    seed: int = 0
    class_names: tuple[str, ...] = CAMVID_CLASSES
    ignore_index: int = 11
    resolution: int = 240
    crop_size: int | None = None
    pool_limit: int | None = None
    eval_limit: int | None = None
    max_units_per_image: int | None = None
    boundary_erosion: int = 2
    outline_resolution: int | None = None
    epochs: int = 10
    min_steps: int = 0
    reference_epochs: int | None = None
    stage2_epochs: int = 5
    batch_size: int = 4
    lr: float = 1e-3
    class_weighting: str = "none"
    semi_supervised: str = "none"
    mc_samples: int = 20
    mc_resolution: float = 0.25
    warm_start: bool = True
    arch: str = "Unet"
    encoder: str = "timm-tf_efficientnet_lite0"
    encoder_weights: str = "imagenet"
    head_dropout: float = 0.2
    device: str = "auto"
    precision: str = "auto"
    name: str | None = None
    keep_all_checkpoints: bool = False
    final_epochs: int | None = None
    final_min_steps: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "query_mode", LEGACY_MODE_NAMES.get(self.query_mode, self.query_mode))
        if self.query_mode not in {handler.name for handler in registered()}:
            modes = ", ".join(handler.name for handler in registered())
            raise ValueError(f"query_mode {self.query_mode!r} is not one of: {modes}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.budget <= 0 or self.initial_budget <= 0:
            raise ValueError("budget and initial_budget must be > 0")
        if self.budget_unit not in BUDGET_UNITS:
            raise ValueError(f"budget_unit must be one of {', '.join(BUDGET_UNITS)}, got {self.budget_unit!r}")
        if self.resolution < 32:
            raise ValueError(f"resolution must be >= 32, got {self.resolution}")
        if self.boundary_erosion < 0 or self.mc_samples < 1:
            raise ValueError("boundary_erosion must be >= 0 and mc_samples >= 1")
        if self.reference_epochs is not None and self.reference_epochs < 1:
            raise ValueError(f"reference_epochs must be >= 1, got {self.reference_epochs}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.min_steps < 0 or self.final_min_steps < 0:
            raise ValueError(
                f"min_steps and final_min_steps must be >= 0, got {self.min_steps}, {self.final_min_steps}"
            )
        if self.final_epochs is not None and self.final_epochs < 1:
            raise ValueError(f"final_epochs must be >= 1, got {self.final_epochs}")
        if self.max_units_per_image is not None and self.max_units_per_image < 1:
            raise ValueError("max_units_per_image must be >= 1")
        if self.outline_resolution is not None and self.outline_resolution < 32:
            raise ValueError(f"outline_resolution must be >= 32, got {self.outline_resolution}")
        if self.outline_resolution is not None and self.handler.unit is not Unit.IMAGE:
            raise ValueError(
                f"outline_resolution prices whole-image outlines; query_mode {self.query_mode!r} outlines none"
            )
        if self.semi_supervised not in SEMI_SUPERVISED_MODES:
            raise ValueError(f"semi_supervised must be one of {', '.join(SEMI_SUPERVISED_MODES)}")
        base = self.acquisition_config(0)  # validates the mapping
        if self.handler.unit is Unit.REGION and base.superpixel_method == "none":
            raise ValueError(f"query_mode {self.query_mode!r} needs superpixels (superpixel_method is 'none')")
        if base.diversity != "none":
            raise ValueError("diversity='kcenter' is per image in the engine; the simulation's pool selection has none")
        if self.handler.unit is not Unit.IMAGE and base.task_order != "score":
            raise ValueError(
                f"task_order={base.task_order!r} orders whole images; query_mode {self.query_mode!r} ranks its "
                "queries over the pool in the simulation (heuristic 'random' is its random baseline)"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def handler(self) -> QueryModeHandler:
        """The query mode's handler: its simulated annotator, cost per query and training needs."""
        return handler_for(self.query_mode)

    @property
    def strategy(self) -> str:
        """Name of the strategy (one line per strategy in the plots): ``name`` or mode + heuristic + balance
        (+ sampling, + ``mean_teacher``)."""
        if self.name:
            return self.name
        acquisition = self.acquisition_config(0)
        parts = [self.query_mode, acquisition.heuristic]
        if acquisition.class_balance != "none":
            parts.append(acquisition.class_balance)
        if acquisition.sampling != "top":
            parts.append(acquisition.sampling)
        if self.semi_supervised != "none":
            parts.append(self.semi_supervised)
        return ":".join(parts)

    def acquisition_config(self, round_index: int) -> AcquisitionConfig:
        mapping = dict(self.acquisition)
        if self.handler.unit is not Unit.REGION:
            mapping.setdefault("superpixel_method", "none")
        return AcquisitionConfig.from_mapping(
            mapping,
            label_mode=self.handler.acquisition_defaults.get("label_mode", "dominant"),
            top_k_regions=0,
            top_n_pixels=0,
            budget=None,
            seed=derive_seed(self.seed, "acquisition", round_index) % (2**31),
        )

    def network_spec(self) -> NetworkSpec:
        return NetworkSpec(self.arch, self.encoder, self.num_classes, self.head_dropout, self.encoder_weights)

    def train_config(self, round_index: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            min_steps=self.min_steps,
            precision=self.precision,
            stage2_epochs=self.stage2_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            crop_size=self.crop_size or self.resolution,
            class_weighting=self.class_weighting,
            semi_supervised=self.semi_supervised,
            seed=derive_seed(self.seed, "train", round_index) % (2**31),
        )

    def reference_train_config(self, share: float = 1.0) -> TrainConfig:
        """The reference's training: ``reference_epochs`` (or ``rounds * epochs``) times ``share``, at least 1."""
        epochs = max(1, round(share * (self.reference_epochs or self.rounds * self.epochs)))
        return dataclasses.replace(
            self.train_config(0), epochs=epochs, min_steps=0, stage2_epochs=0, semi_supervised="none"
        )

    def final_train_config(self) -> TrainConfig:
        """The final labels' training (``final_epochs``, at least ``final_min_steps`` steps; ValueError without
        ``final_epochs``): the rounds' settings otherwise, its own seed."""
        if self.final_epochs is None:
            raise ValueError("final_epochs is not set")
        return dataclasses.replace(
            self.train_config(0),
            epochs=self.final_epochs,
            min_steps=self.final_min_steps,
            seed=derive_seed(self.seed, "final") % (2**31),
        )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["acquisition"] = dict(self.acquisition)
        values["class_names"] = list(self.class_names)
        return values


def config_from_preset(preset: str | None, **options: Any) -> SimulationConfig:
    """A :class:`SimulationConfig` from a :data:`PRESETS` entry (or none) overridden by ``options`` that are not
    None; ``options`` must hold ``pool_dir``, ``eval_dir`` and ``out_dir``."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is not one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset]) if preset else {}
    superpixel_size = values.pop("superpixel_size", None)
    values |= {key: value for key, value in options.items() if value is not None}
    acquisition = dict(values.get("acquisition") or {})
    if superpixel_size is not None:
        acquisition.setdefault("superpixel_size", superpixel_size)
    values["acquisition"] = acquisition or {"heuristic": "predictive_entropy"}
    return SimulationConfig(**values)


def derive_seed(*parts: Any) -> int:
    """A reproducible 63-bit seed from any printable parts."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big") >> 1
