"""What Label Studio stores per prediction: the bytes of one prediction's JSON from a trained model, per query mode
and per layer setting (the defaults, ``CLASS_MASKS=auto``, and every layer drawn), beside the untrained ``v0``.

A model is trained first (CamVid masks as dense labels, the ``TRAIN_*`` settings, ``epochs`` epochs) and published
as ``v1`` in a temporary data folder; then every label config predicts the same images through
:meth:`~ls_al_backend.backend.Backend.predict`, the path ``/predict`` and pool scoring take.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ls_al_backend.backend import Backend
from ls_al_backend.bench.model_speed import dense_samples
from ls_al_backend.config import Settings
from ls_al_backend.jobs.pipeline import Pipeline, train_config_from
from ls_al_backend.model.training import train
from ls_al_backend.modes import parse_label_config

PROJECT = "bench"
#: Layer settings compared: the defaults, and every layer (the heaviest prediction).
LAYER_SETTINGS = ("auto", "on")


def stored_bytes(prediction: dict[str, Any]) -> int:
    """Bytes of a prediction's JSON as Label Studio's JSON field writes it (``json.dumps`` defaults)."""
    return len(json.dumps(prediction).encode())


def measure_prediction_bytes(
    settings: Settings,
    label_configs: dict[str, str],
    dense_config: str,
    split: Path,
    train_images: int,
    epochs: int,
    images: Sequence[Path],
    image_side: int | None = None,
) -> dict[str, Any]:
    """Train on ``train_images`` images of ``split`` for ``epochs`` epochs, publish ``v1``, then predict
    ``images`` with every config of ``label_configs`` under each of :data:`LAYER_SETTINGS`, and with ``v0``."""
    dense = parse_label_config(label_configs[dense_config])
    samples = dense_samples(split, train_images, image_side)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-al-bench-") as data_dir:
        base = dataclasses.replace(settings, data_dir=Path(data_dir), model_dir="")
        pipeline = Pipeline(base)
        untrained = {"on": Backend(dataclasses.replace(base, class_masks="on", uncertainty_overlay="on"))}
        rows += _predict_rows(untrained, label_configs, images, "v0")
        config = train_config_from(base, epochs=epochs, val_fraction=0.0, min_steps=0)
        result = train(pipeline.initial_network(PROJECT, dense), samples, config, pipeline.backend.device)
        pipeline.backend.models.save(PROJECT, result.net, dense.class_names, {"trained_on": len(samples)})
        backends = {
            layers: Backend(dataclasses.replace(base, class_masks=layers, uncertainty_overlay=layers))
            for layers in LAYER_SETTINGS
        }
        rows += _predict_rows(backends, label_configs, images, "v1")
    return {
        "what": "Backend.predict on every label config, JSON bytes of each prediction, trained v1 and untrained v0",
        "train_images": len(samples),
        "epochs": result.metrics["epochs_run"],
        "final_train_loss": round(result.metrics["train_loss"][-1], 4),
        "images": len(images),
        "rows": rows,
    }


def _predict_rows(
    backends: dict[str, Backend], label_configs: dict[str, str], images: Sequence[Path], expected_version: str
) -> list[dict[str, Any]]:
    rows = []
    for layers, backend in backends.items():
        for name, xml in label_configs.items():
            config = parse_label_config(xml)
            tasks = [{"id": index, "data": {config.image_key: str(path)}} for index, path in enumerate(images)]
            predictions = [p for p in backend.predict(tasks, config, PROJECT) if not p.failed]
            if not predictions or predictions[0].model_version != expected_version:
                raise RuntimeError(f"{name}: expected {len(tasks)} predictions of {expected_version}")
            sizes = [stored_bytes(prediction.to_json()) for prediction in predictions]
            kinds = Counter(result["type"] for prediction in predictions for result in prediction.result)
            rows.append(
                {
                    "config": name,
                    "mode": config.mode,
                    "version": expected_version,
                    "layers": layers,
                    "predictions": len(sizes),
                    "mean_bytes": round(statistics.mean(sizes)),
                    "max_bytes": max(sizes),
                    "results_per_prediction": {kind: round(n / len(sizes), 1) for kind, n in sorted(kinds.items())},
                }
            )
    return rows
