"""The backend's operations, independent of HTTP: ``setup``, ``predict``, ``record_event``, ``versions``.

Shaped like a Label Studio ML backend (``predict(tasks, context)`` / ``fit(event, data)``); the Flask
app in :mod:`ls_al_backend.server` only validates requests and calls these methods.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ls_al_backend.acquisition.api import NO_SUPERPIXELS, AcquisitionConfig, score_image
from ls_al_backend.acquisition.heuristics import heuristic_maximum
from ls_al_backend.acquisition.mc import MCSummary
from ls_al_backend.acquisition.pool import PoolStatistics, pool_statistics
from ls_al_backend.acquisition.superpixels import SuperpixelCache
from ls_al_backend.config import Settings
from ls_al_backend.images import ImageError, ImageLoader
from ls_al_backend.labeling.render import class_mask_results, overlay_results
from ls_al_backend.model.inference import analysis_image, mc_dropout_batch
from ls_al_backend.model.network import NetworkSpec, SegmentationNet, select_device
from ls_al_backend.model.object_store import open_model_store
from ls_al_backend.model.precision import resolve_precision
from ls_al_backend.model.runtimes import ServingRuntime
from ls_al_backend.model.store import ModelCache, version_name
from ls_al_backend.modes import LabelConfig, Queries, parse_label_config
from ls_al_backend.projects import InvalidProject, ProjectStore, project_id_from
from ls_al_backend.storage import append_line
from ls_al_backend.studio import studio_client

log = logging.getLogger(__name__)


TRAINING_ACTION = "START_TRAINING"

#: A task whose image was read: ``(task, (image, analysed))``, the ``[H, W, 3]`` uint8 image and its copy on the
#: analysis grid (:func:`analysis_image`).
ReadTask = tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]


class TrainingRequests(Protocol):
    """What the backend asks of a job runner (:class:`ls_al_backend.jobs.contract.JobRunner` provides it)."""

    def request_training(self, project_id: str, label_config_xml: str, reason: str) -> dict[str, Any]: ...


class UnknownProject(LookupError):
    """A project this backend has no label config for."""


@dataclass(frozen=True)
class TaskPrediction:
    """One item of ``/predict``'s ``results``. ``failed``: the task could not be predicted (its image unreadable, or
    an error, logged); its ``result`` is empty. A prediction that succeeded may be empty too (no layer drawn)."""

    result: list[dict[str, Any]]
    score: float
    model_version: str
    failed: bool = False
    query_regions: int = 0  # query regions (superpixels or points) the result proposes, for the metrics

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "score": self.score, "model_version": self.model_version}


class Backend:
    """Everything a web process needs, created once and shared by all requests."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.projects = ProjectStore(settings.data_path / "projects")
        self.models = open_model_store(
            settings.models_dir,
            settings.model_cache_dir,
            round(settings.model_cache_max_mb * 1e6),
            settings.model_list_ttl_s,
        )
        self.studio = studio_client(settings)
        self.images = ImageLoader.from_settings(settings, self.studio)
        base_spec = NetworkSpec(
            arch=settings.model_arch,
            encoder=settings.model_encoder,
            num_classes=2,
            head_dropout=settings.head_dropout,
            encoder_weights=settings.encoder_weights,
        )
        self.device = select_device(settings.device)
        #: Read the next batch in a second thread while the network runs (:meth:`predict`): on CUDA, where the
        #: network leaves the CPU free. On a CPU the network's threads already keep the cores busy: measured on 2
        #: cores (benchmarks/scale/read-ahead-ab/), reading ahead gained nothing with one worker and cost up to
        #: 10% with two.
        self.read_ahead = self.device.type == "cuda"
        self.runtime = ServingRuntime(  # what runs the served networks' encoder + decoder (INFERENCE_RUNTIME)
            settings.inference_runtime, settings.runtime_cache_dir, resolve_precision(self.device, settings.precision)
        )
        self.cache = ModelCache(self.models, base_spec, self.device, prepare=self.runtime.prepare)
        self.superpixels = SuperpixelCache(
            directory=settings.superpixel_cache_dir, max_disk_bytes=round(settings.superpixel_cache_max_mb * 1e6)
        )
        AcquisitionConfig.from_mapping(settings.acquisition_defaults)  # fail at start on a bad ACQUISITION
        self._events_lock = threading.Lock()
        self._annotation_events: dict[str, int] = {}
        #: Takes training requests (``request_training``) and lists jobs; set where the server is wired
        #: (:func:`ls_al_backend.server.create_app`), so this module never imports the job runners.
        self.runner: TrainingRequests | None = None

    # --- setup ---

    def setup(self, project: object, label_config_xml: str) -> str:
        """Remember the project's label config (raises ``UnsupportedLabelConfig``); return its model version."""
        project_id = project_id_from(project)
        self.projects.save_label_config(project_id, label_config_xml)
        return version_name(self.models.latest(project_id))

    def resolve_config(self, project_id: str | None, label_config_xml: str | None) -> LabelConfig:
        """The config sent with the request (remembered for the project), else the remembered one."""
        if label_config_xml:
            if project_id is None:
                return parse_label_config(label_config_xml)
            return self.projects.save_label_config(project_id, label_config_xml)
        config = self.projects.label_config(project_id) if project_id is not None else None
        if config is None:
            raise UnknownProject(
                f"project {project_id!r} is unknown to this backend: send its label_config or call /setup first"
            )
        return config

    # --- predict ---

    def acquisition_config(self, config: LabelConfig, request: dict[str, Any] | None = None) -> AcquisitionConfig:
        """Mode defaults, then ``ACQUISITION``, then the request's ``params.acquisition`` (ValueError if bad)."""
        return AcquisitionConfig.from_mapping(
            {**config.handler.acquisition_defaults, **self.settings.acquisition_defaults, **(request or {})}
        )

    def predict(
        self,
        tasks: list[dict[str, Any]],
        config: LabelConfig,
        project_id: str | None,
        acquisition: AcquisitionConfig | None = None,
        seconds: dict[str, float] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[TaskPrediction]:
        """One prediction per task, same order. A task that fails gets an empty result; the others go on.

        Tasks go ``INFERENCE_BATCH_SIZE`` at a time: their images are read (decoded, and their superpixels computed
        into the superpixel cache), run through the network together (:func:`mc_dropout_batch`), then scored and
        rendered one by one. With :attr:`read_ahead` a second thread reads the next batch while the network runs
        this one. ``seconds``, if given, accumulates the wall time of each stage: ``read``, ``network``, ``render``
        (reading ahead overlaps the other two). ``progress``, if given, is called in the calling thread with the
        number of tasks done after each batch (an exception it raises stops the call).
        """
        seconds = {} if seconds is None else seconds
        acquisition = acquisition or self.acquisition_config(config)
        net, version = self.cache.get(project_id or "_adhoc", config.class_names)
        statistics = self.cache.metadata(project_id or "_adhoc").get("pool_statistics")
        pool = PoolStatistics.from_dict(statistics).as_scoring_arguments() if statistics else {}
        batch_size = self.settings.inference_batch_size
        batches = [tasks[start : start + batch_size] for start in range(0, len(tasks), batch_size)]

        def timed(stage: str, function: Callable[..., Any], *arguments: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*arguments)
            finally:
                seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started

        def read(batch: list[dict[str, Any]]) -> list[ReadTask]:
            return timed("read", self._read_batch, batch, config, acquisition)

        predictions: list[TaskPrediction] = []
        with ThreadPoolExecutor(1, "ls-al-read") as reader:  # its thread starts only if something is submitted
            ahead = None
            for index, batch in enumerate(batches):
                readable = read(batch) if ahead is None else ahead.result()
                ahead = (
                    reader.submit(read, batches[index + 1]) if self.read_ahead and index + 1 < len(batches) else None
                )
                summaries = timed("network", self._summaries, net, readable)
                predictions += timed(
                    "render", self._render_batch, batch, readable, summaries, config, acquisition, version, pool
                )
                log.info("%d of %d task(s) predicted", len(predictions), len(tasks))
                if progress is not None:
                    progress(len(predictions))
        return predictions

    def _read_batch(
        self, batch: list[dict[str, Any]], config: LabelConfig, acquisition: AcquisitionConfig
    ) -> list[ReadTask]:
        """The (task, (image, analysed)) pairs of the tasks whose image could be read (the others are logged), their
        superpixels computed into the cache where the acquisition uses superpixels."""
        readable = []
        for task in batch:
            image = self._task_image(task, config)
            if image is None:
                continue
            readable.append((task, image))
            if acquisition.superpixel_method == NO_SUPERPIXELS:
                continue
            try:
                self.superpixels.get(
                    image[1], acquisition.superpixel_method, acquisition.superpixel_size, acquisition.superpixel_count
                )
            except Exception:  # rendering computes them again and fails only this task
                log.exception("task %s: computing its superpixels failed", task.get("id"))
        return readable

    def _render_batch(
        self,
        batch: list[dict[str, Any]],
        readable: list[ReadTask],
        summaries: list[MCSummary | None],
        config: LabelConfig,
        acquisition: AcquisitionConfig,
        version: int,
        pool: dict[str, Any],
    ) -> list[TaskPrediction]:
        """One prediction per task of ``batch``: rendered where its image was read and summarised, else failed."""
        rendered = {}
        for (task, (image, analysed)), summary in zip(readable, summaries, strict=True):
            if summary is None:
                continue
            try:
                rendered[id(task)] = self._render(task, config, acquisition, image, analysed, summary, version, pool)
            except Exception:
                log.exception("task %s: prediction failed", task.get("id"))
        failed = TaskPrediction([], 0.0, version_name(version), failed=True)
        return [rendered.get(id(task), failed) for task in batch]

    def _task_image(self, task: dict[str, Any], config: LabelConfig) -> tuple[np.ndarray, np.ndarray] | None:
        """The task's image and its analysis-grid copy (``ANALYSIS_MAX_SIDE``); None, logged, if unreadable."""
        data = task.get("data")
        try:
            if not isinstance(data, dict) or config.image_key not in data:
                raise ImageError(f"task data has no {config.image_key!r} field (the Image tag's value)", "no_url")
            image = self.images.load(data[config.image_key], task_id=task.get("id"))
        except ImageError as error:
            log.error("task %s: cannot read its image: %s", task.get("id"), error)
            return None
        except Exception:
            log.exception("task %s: reading its image failed", task.get("id"))
            return None
        return image, analysis_image(image, self.settings.analysis_max_side)  # bounds the memory of what follows

    def _summaries(self, net: SegmentationNet, readable: list[ReadTask]) -> list[MCSummary | None]:
        """MC summaries of (task, (image, analysed)) pairs, on the analysed images; if the batch fails, image by
        image, so one bad image sinks only its task (None)."""
        images = [analysed for _, (_, analysed) in readable]
        try:
            return self.mc_summaries(net, images)
        except Exception:
            log.exception("a batch of %d image(s) failed; retrying them one at a time", len(images))
        summaries: list[MCSummary | None] = []
        for image, (task, _) in zip(images, readable, strict=True):
            try:
                summaries.append(self.mc_summary(net, image))
            except Exception:
                log.exception("task %s: prediction failed", task.get("id"))
                summaries.append(None)
        return summaries

    def mc_summaries(self, net: SegmentationNet, images: list[np.ndarray]) -> list[MCSummary]:
        """MC-dropout summaries of ``[H, W, 3]`` uint8 images with the ``MC_*``, ``INFERENCE_*`` and ``PRECISION``
        settings, batched by :func:`mc_dropout_batch`."""
        return mc_dropout_batch(
            net,
            images,
            self.settings.mc_samples,
            max_side=self.settings.inference_max_side,
            mc_scale=self.settings.mc_resolution,
            precision=resolve_precision(next(net.parameters()).device, self.settings.precision),
            batch_size=self.settings.inference_batch_size,
        )

    def mc_summary(self, net: SegmentationNet, image: np.ndarray) -> MCSummary:
        """The MC-dropout summary of one ``[H, W, 3]`` uint8 image (:meth:`mc_summaries` of one)."""
        return self.mc_summaries(net, [image])[0]

    def pool_statistics(
        self, net: SegmentationNet, images: Iterable[np.ndarray], config: LabelConfig
    ) -> PoolStatistics:
        """Class-balance statistics of a pool of images under ``net`` and the mode's acquisition defaults."""
        scored = ((self.mc_summary(net, image), image) for image in images)
        return pool_statistics(scored, self.acquisition_config(config), cache=self.superpixels)

    def _render(
        self,
        task: dict[str, Any],
        config: LabelConfig,
        acquisition: AcquisitionConfig,
        image: np.ndarray,
        analysed: np.ndarray,
        summary: MCSummary,
        version: int,
        pool: dict[str, Any],
    ) -> TaskPrediction:
        """One task's prediction from its MC summary on the analysis grid: scores, queries, and the class masks and
        overlay where ``CLASS_MASKS`` / ``UNCERTAINTY_OVERLAY`` show them (:func:`layer_shown`)."""
        image_size = image.shape[:2]
        scores = score_image(summary, analysed, acquisition, cache=self.superpixels, **pool)
        confidence, class_map = summary.deterministic.max(dim=0)  # the analysed grid, dropout off
        maximum = heuristic_maximum(acquisition.heuristic, len(config.class_names))
        scale = 1.0 / maximum  # task, region and pixel scores in [0, 1]
        overlay = overlay_scale(scores.score_map, maximum)
        result = []
        if layer_shown(self.settings.class_masks, config.handler.shows_layers, version):
            result += class_mask_results(config, class_map.cpu().numpy(), confidence.cpu().numpy(), image_size)
        if layer_shown(self.settings.uncertainty_overlay, config.handler.shows_layers, version):
            result += overlay_results(
                config, overlay, self.settings.overlay_levels, self.settings.overlay_max_alpha, image_size
            )
        regions = []
        if scores.selected_regions is not None:
            regions = [(int(r), scale * float(scores.region_scores[r])) for r in scores.selected_regions.tolist()]
        pixels = [
            (int(row), int(col), scale * float(score))
            for (row, col), score in zip(scores.top_pixels.tolist(), scores.top_pixel_scores.tolist(), strict=True)
        ]
        queries = Queries(
            regions=sorted(regions, key=lambda item: -item[-1]),
            pixels=sorted(pixels, key=lambda item: -item[-1]),
            superpixels=None if scores.superpixels is None else scores.superpixels.numpy(),
            grid_size=analysed.shape[:2],
        )
        query = config.handler.query_results(config, queries, image_size)  # a region and its answer share an id
        result += query
        proposed = len({item["id"] for item in query})
        return TaskPrediction(result, scale * scores.image_score, version_name(version), query_regions=proposed)

    # --- events ---

    def record_event(self, event: dict[str, Any]) -> None:
        """Append a webhook event to ``<DATA_DIR>/events.jsonl``, rotated at ``EVENT_LOG_MAX_MB`` (the newest kept)."""
        line = json.dumps({"received_at": time.time(), "event": event}, separators=(",", ":"))
        path = self.settings.data_path / "events.jsonl"
        append_line(path, line, round(self.settings.event_log_max_mb * 1e6), self._events_lock)

    def handle_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Record a webhook event and, for training triggers, request training (never trains here)."""
        self.record_event(event)
        action = event["action"]
        if action != TRAINING_ACTION and action not in self.settings.train_on_events:
            return {"status": "ignored", "action": action}
        project = event.get("project")
        if not isinstance(project, dict) or "id" not in project:
            raise InvalidProject(f"a {action} event needs the 'project' object with its 'id'")
        project_id = project_id_from(project["id"])
        label_config_xml = project.get("label_config")
        if label_config_xml:
            self.projects.save_label_config(project_id, label_config_xml)
        elif self.projects.label_config(project_id) is None:
            raise UnknownProject(f"project {project_id} is unknown: its event carries no label_config")
        else:
            label_config_xml = self.projects.label_config_xml(project_id)
        if action != TRAINING_ACTION:
            count = self._annotation_events.get(project_id, 0) + 1
            self._annotation_events[project_id] = count
            if count % self.settings.train_every_n_annotations:
                return {"status": "counted", "action": action, "annotation_events": count}
        if self.runner is None:
            raise RuntimeError("no job runner is attached to this backend (see server.create_app)")
        job = self.runner.request_training(project_id, label_config_xml, reason=action)
        return {"status": "queued", "action": action, **job}

    # --- versions ---

    def versions(self, project_id: str | None) -> list[str]:
        """Model versions of one project, or of every project known here, ``v0`` first."""
        projects = [project_id] if project_id is not None else self.models.projects()
        numbers = sorted({number for project in projects for number in self.models.versions(project)})
        return [version_name(0)] + [version_name(number) for number in numbers]


def overlay_scale(score_map, maximum: float):
    """``[H, W]`` heuristic map -> numpy ``[H, W]`` in [0, 1] for the overlay: divided by the heuristic's maximum,
    so the overlay is comparable across images (a confident image stays pale)."""
    return (score_map / maximum).clamp(0.0, 1.0).cpu().numpy()


def layer_shown(setting: str, mode_default: bool, version: int) -> bool:
    """Whether a prediction layer (class masks, overlay) is drawn: ``on`` / ``off``, or with ``auto`` the query mode's
    default from the first trained version on (``version`` 0 is the untrained network)."""
    if setting == "auto":
        return mode_default and version > 0
    return setting == "on"
