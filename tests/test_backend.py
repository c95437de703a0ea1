"""The backend's operations without HTTP: every query mode has acquisition defaults, training needs a runner,
large images are analysed on a bounded grid, what a prediction draws leaves the photo visible (no masks from
the untrained v0, none in the query modes), and reading the next batch while the network runs changes no
prediction."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from ls_al_backend.acquisition.api import AcquisitionConfig
from ls_al_backend.backend import Backend, analysis_image
from ls_al_backend.config import ConfigError, Settings
from ls_al_backend.model.network import build_network
from ls_al_backend.modes import QueryMode, parse_label_config, registered
from tests.conftest import LABEL_CONFIGS, REPO_ROOT

DENSE = (REPO_ROOT / "label_configs" / "dense_brush.xml").read_text()


def test_every_query_mode_and_shipped_config_has_valid_acquisition_defaults(settings: Settings) -> None:
    assert {handler.name for handler in registered()} >= set(QueryMode)
    backend = Backend(settings)
    for handler in registered():
        assert AcquisitionConfig.from_mapping(handler.acquisition_defaults), handler.name
    for path in LABEL_CONFIGS:
        assert backend.acquisition_config(parse_label_config(path.read_text())), path.name


@pytest.mark.parametrize(
    ("mode", "heuristic", "class_balance", "pixel_selection", "task_order"),
    [
        (QueryMode.DENSE_BRUSH, "predictive_entropy", "none", "top", "random"),
        (QueryMode.SUPERPIXEL_DOMINANT, "predictive_entropy", "classbal", "top", "score"),
        (QueryMode.SUPERPIXEL_MULTICLASS, "predictive_entropy", "pixbal", "top", "score"),
        (QueryMode.SPARSE_POINTS, "balanced_entropy", "none", "pixelpick", "score"),
    ],
)
def test_each_query_mode_defaults_to_its_benchmarked_strategy(
    settings: Settings, mode: QueryMode, heuristic: str, class_balance: str, pixel_selection: str, task_order: str
) -> None:
    """The strategies of the CamVid benchmark (README, Active-learning benchmark) unless ACQUISITION says otherwise:
    whole images come in random order (it beat the model's order), with the entropy overlay."""
    config = parse_label_config((REPO_ROOT / "label_configs" / f"{mode.value}.xml").read_text())
    chosen = Backend(settings).acquisition_config(config)
    assert (chosen.heuristic, chosen.class_balance, chosen.pixel_selection, chosen.task_order) == (
        heuristic,
        class_balance,
        pixel_selection,
        task_order,
    )
    overridden = Backend(dataclasses.replace(settings, acquisition="class_balance=none")).acquisition_config(config)
    assert overridden.class_balance == "none", "ACQUISITION still wins over the mode's default"


def test_a_training_event_without_a_runner_is_a_clear_error(settings: Settings) -> None:
    backend = Backend(settings)
    with pytest.raises(RuntimeError, match="no job runner"):
        backend.handle_event({"action": "START_TRAINING", "project": {"id": 3, "label_config": DENSE}})
    assert (settings.data_path / "events.jsonl").exists(), "the event is recorded all the same"


def test_the_analysis_grid_scales_large_images_down_and_leaves_small_ones_alone() -> None:
    small = np.zeros((90, 120, 3), np.uint8)
    assert analysis_image(small, 2048) is small
    large = np.full((3000, 4000, 3), 200, np.uint8)
    analysed = analysis_image(large, 2048)
    assert analysed.shape == (1536, 2048, 3) and analysed.dtype == np.uint8 and int(analysed.mean()) == 200


def predicted_tags(backend: Backend, config_name: str, image: Path, project: str) -> tuple[set[str], str]:
    """The tags (``from_name``) of one prediction for ``image`` in project ``project``, and its model version."""
    config = parse_label_config((REPO_ROOT / "label_configs" / f"{config_name}.xml").read_text())
    (prediction,) = backend.predict([{"id": 1, "data": {"image": str(image)}}], config, project)
    return {result["from_name"] for result in prediction.result}, prediction.model_version


def publish_a_version(backend: Backend, project: str, config_name: str) -> None:
    config = parse_label_config((REPO_ROOT / "label_configs" / f"{config_name}.xml").read_text())
    spec = dataclasses.replace(backend.cache.base_spec, num_classes=len(config.class_names))
    backend.models.save(project, build_network(spec, seed=0), config.class_names, {})


QUERY_TAGS = {"query", "region_class"}
LAYERS = {"label", "prediction", "uncertainty"}  # class masks (dense, query modes) and overlay in label_configs/


def test_the_untrained_v0_draws_neither_class_masks_nor_the_overlay(settings: Settings, small_image_path) -> None:
    backend = Backend(settings)
    for config_name in ("dense_brush", "superpixel_dominant", "superpixel_multiclass", "sparse_points"):
        tags, version = predicted_tags(backend, config_name, small_image_path, project="1")
        assert version == "v0" and not tags & LAYERS, (config_name, tags)
        assert tags == (set() if config_name == "dense_brush" else QUERY_TAGS), (config_name, tags)


def test_a_trained_version_draws_masks_and_overlay_in_dense_mode_and_only_queries_in_the_query_modes(
    settings: Settings, small_image_path
) -> None:
    backend = Backend(settings)
    for project, config_name in enumerate(("dense_brush", "superpixel_dominant", "sparse_points"), start=1):
        publish_a_version(backend, str(project), config_name)
        tags, version = predicted_tags(backend, config_name, small_image_path, str(project))
        assert version == "v1", config_name
        assert tags == ({"label", "uncertainty"} if config_name == "dense_brush" else QUERY_TAGS), (config_name, tags)


def test_the_class_masks_and_the_overlay_follow_their_settings(settings: Settings, small_image_path) -> None:
    shown = Backend(dataclasses.replace(settings, class_masks="on", uncertainty_overlay="off"))
    tags, _ = predicted_tags(shown, "superpixel_dominant", small_image_path, project="1")
    assert tags == QUERY_TAGS | {"prediction"}, "on: drawn in a query mode, for the untrained v0 too"
    hidden = Backend(dataclasses.replace(settings, class_masks="off", uncertainty_overlay="on"))
    publish_a_version(hidden, "2", "dense_brush")
    assert predicted_tags(hidden, "dense_brush", small_image_path, project="2")[0] == {"uncertainty"}
    with pytest.raises(ConfigError, match="CLASS_MASKS must be one of auto, on, off"):
        Settings.from_env({"CLASS_MASKS": "faint"})


def without_region_ids(predictions: list) -> list:
    """Predictions with each result's random region id (and the id its choices refer to) left out."""
    return [
        (prediction.score, prediction.failed, [{**r, "id": None} for r in prediction.result])
        for prediction in predictions
    ]


def test_reading_ahead_changes_no_prediction_and_no_task_order(
    settings: Settings, small_image_path: Path, tmp_path: Path
) -> None:
    backend = Backend(dataclasses.replace(settings, inference_batch_size=2))
    config = parse_label_config((REPO_ROOT / "label_configs" / "superpixel_dominant.xml").read_text())
    publish_a_version(backend, "1", "superpixel_dominant")
    images = [small_image_path, small_image_path, tmp_path / "missing.png", small_image_path, small_image_path]
    tasks = [{"id": number, "data": {"image": str(image)}} for number, image in enumerate(images, start=1)]
    backend.predict(tasks[:1], config, "1")  # loads the version (loading draws random numbers)
    answers, seconds = {}, {}
    for read_ahead in (False, True):
        backend.read_ahead = read_ahead
        torch.manual_seed(0)
        answers[read_ahead] = backend.predict(tasks, config, "1", seconds=seconds.setdefault(read_ahead, {}))
    assert without_region_ids(answers[True]) == without_region_ids(answers[False]), "the dropout draws keep their order"
    assert [prediction.failed for prediction in answers[True]] == [False, False, True, False, False]
    assert len({prediction.score for prediction in answers[True] if not prediction.failed}) > 1, "MC samples differ"
    assert all(set(stages) == {"read", "network", "render"} for stages in seconds.values())


def test_with_read_ahead_the_next_batch_is_read_while_the_network_runs(
    settings: Settings, small_image_path: Path
) -> None:
    backend = Backend(dataclasses.replace(settings, inference_batch_size=1))
    assert backend.read_ahead is (backend.device.type == "cuda"), "on a CPU the network keeps the cores busy"
    backend.read_ahead = True
    config = parse_label_config((REPO_ROOT / "label_configs" / "superpixel_dominant.xml").read_text())
    second_read_started = threading.Event()
    summaries, read_batch = backend._summaries, backend._read_batch
    network_calls = []

    def network(net, readable):
        network_calls.append(readable[0][0]["id"])
        if network_calls == [1]:
            assert second_read_started.wait(60), "task 2 was not read while task 1 was in the network"
        return summaries(net, readable)

    def read(batch, *arguments):
        if batch[0]["id"] == 2:
            second_read_started.set()
        return read_batch(batch, *arguments)

    backend._summaries, backend._read_batch = network, read
    tasks = [{"id": number, "data": {"image": str(small_image_path)}} for number in (1, 2, 3)]
    predictions = backend.predict(tasks, config, "1")
    assert network_calls == [1, 2, 3] and not any(prediction.failed for prediction in predictions)
    assert backend.superpixels.misses == 1, "one image: its superpixels computed by the first read, then cached"
