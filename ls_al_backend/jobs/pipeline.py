"""The job bodies, shared by the embedded runner and the RQ workers.

One active-learning round for a project:

1. :meth:`Pipeline.train`: read every task from Label Studio, turn the newest annotation of each
   labelled task into a training target, train, and save the next model version atomically.
2. :meth:`Pipeline.score`: predict a chunk of unlabelled tasks with that version (exactly the code
   path of ``/predict``) and write back the task's acquisition score and the stored prediction.
3. :meth:`Pipeline.publish`: set the project's model version and the "Active learning queue" view,
   ordered by the score (most informative first), listing unlabelled tasks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ls_al_backend import metrics
from ls_al_backend.backend import Backend, TaskPrediction
from ls_al_backend.config import Settings
from ls_al_backend.images import ImageError
from ls_al_backend.labeling.annotations import MalformedAnnotation, latest_annotation
from ls_al_backend.model.batches import TrainingSample
from ls_al_backend.model.network import SegmentationNet, build_network
from ls_al_backend.model.store import version_name
from ls_al_backend.model.train_config import TrainConfig
from ls_al_backend.model.training import train
from ls_al_backend.modes import LabelConfig, annotation_to_target, parse_label_config
from ls_al_backend.studio import StudioClient, StudioError, has_prediction, stale_versions

#: Task columns the "Active learning queue" view hides, so that its first columns are the task id, the image and
#: the prediction score, the acquisition score (Label Studio 1.23.2's built-in columns, data_manager/functions.py).
QUEUE_HIDDEN_COLUMNS = [
    f"tasks:{column}"
    for column in (
        "inner_id", "completed_at", "cancelled_annotations", "annotators", "annotations_results", "annotations_ids",
        "predictions_model_versions", "predictions_results", "file_upload", "storage_filename",
        "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists",
    )
]  # fmt: skip

log = logging.getLogger(__name__)

Report = Callable[[dict[str, Any]], None]


def _no_report(update: dict[str, Any]) -> None:
    pass


def train_config_from(settings: Settings, **overrides: Any) -> TrainConfig:
    """The ``TRAIN_*`` and ``PRECISION`` settings as the training configuration; ``overrides`` win."""
    values = {
        "epochs": settings.train_epochs,
        "batch_size": settings.train_batch_size,
        "lr": settings.train_learning_rate,
        "crop_size": settings.train_crop_size,
        "seed": settings.train_seed,
        "class_weighting": settings.train_class_weighting,
        "semi_supervised": settings.train_semi_supervised,
        "ema_momentum": settings.train_ema_momentum,
        "min_steps": settings.train_min_steps,
        "precision": settings.precision,
    }
    return TrainConfig(**{**values, **overrides})


class UnreadableLabels(RuntimeError):
    """Too many labelled tasks' images cannot be read: training on the rest would silently drop their labels."""


@dataclass(frozen=True)
class LabelledTasks:
    """What :meth:`Pipeline.collect_samples` read from a project's tasks (ids are Label Studio task ids)."""

    samples: list[TrainingSample]
    unlabelled: list[int]
    labelled: int  # tasks with an annotation to train on
    unreadable_image: list[int]  # labelled tasks whose image could not be read
    malformed_annotation: list[int]  # labelled tasks whose annotation could not be read

    def skipped(self) -> dict[str, Any]:
        """Counts and ids of the labelled tasks left out, for ``/jobs`` and the version's metadata."""
        return {
            "labelled_tasks": self.labelled,
            "unreadable_image": len(self.unreadable_image),
            "unreadable_image_task_ids": self.unreadable_image,
            "malformed_annotation": len(self.malformed_annotation),
            "malformed_annotation_task_ids": self.malformed_annotation,
        }


@dataclass(frozen=True)
class TrainingOutcome:
    version: int
    unlabelled_task_ids: list[int]
    metrics: dict[str, Any]


class Pipeline:
    """Training, scoring and publishing for one Label Studio instance."""

    def __init__(self, settings: Settings, backend: Backend | None = None, studio: StudioClient | None = None):
        self.settings = settings
        self.backend = backend or Backend(settings)
        self._studio = studio or self.backend.studio

    @property
    def studio(self) -> StudioClient:
        if self._studio is None:
            raise StudioError("LABEL_STUDIO_URL is not set: the worker cannot read tasks or write scores back")
        return self._studio

    def collect_samples(
        self, tasks: list[dict[str, Any]], config: LabelConfig, report: Report = _no_report
    ) -> LabelledTasks:
        """Training samples from labelled tasks, the ids of unlabelled tasks, and the labelled tasks left out
        (image unreadable, annotation malformed), each logged."""
        samples, unlabelled, unreadable, malformed = [], [], [], []
        labelled = 0
        for task in tasks:
            annotation = latest_annotation(task)
            if annotation is None:
                unlabelled.append(int(task["id"]))
                continue
            labelled += 1
            try:
                image = self.backend.images.load(task.get("data", {}).get(config.image_key), task_id=task.get("id"))
            except ImageError as error:
                log.warning("task %s: left out of training, its image cannot be read: %s", task.get("id"), error)
                unreadable.append(int(task["id"]))
                continue
            try:
                target = annotation_to_target(annotation.get("result") or [], config, *image.shape[:2])
            except MalformedAnnotation as error:
                log.warning("task %s: left out of training, malformed annotation: %s", task.get("id"), error)
                malformed.append(int(task["id"]))
                continue
            if target.labelled_pixels > 0:
                samples.append(TrainingSample(task_id=int(task["id"]), image=image, target=target))
            report({"stage": "reading labels", "labelled_tasks": len(samples)})
        return LabelledTasks(samples, unlabelled, labelled, unreadable, malformed)

    def unlabelled_images(
        self, tasks: list[dict[str, Any]], task_ids: list[int], config: LabelConfig, report: Report = _no_report
    ) -> list[np.ndarray]:
        """Images of at most ``TRAIN_UNLABELLED_LIMIT`` of the ``task_ids`` (a sample seeded by ``TRAIN_SEED``), for
        semi-supervised training. An image that cannot be read is logged and skipped."""
        return self.sample_images(
            tasks, task_ids, config, self.settings.train_unlabelled_limit, "reading unlabelled images", report
        )

    def sample_images(
        self,
        tasks: list[dict[str, Any]],
        task_ids: list[int],
        config: LabelConfig,
        limit: int,
        stage: str,
        report: Report = _no_report,
    ) -> list[np.ndarray]:
        """Images of at most ``limit`` of the ``task_ids`` (a sample seeded by ``TRAIN_SEED``); an image that cannot
        be read is logged and skipped. Progress goes to ``report`` under ``stage``."""
        if len(task_ids) > limit:
            rng = np.random.default_rng(self.settings.train_seed)
            task_ids = sorted(rng.choice(task_ids, limit, replace=False).tolist())
        by_id = {int(task["id"]): task for task in tasks}
        images = []
        for task_id in task_ids:
            try:
                images.append(
                    self.backend.images.load(by_id[task_id].get("data", {}).get(config.image_key), task_id=task_id)
                )
            except (ImageError, OSError) as error:
                log.warning("task %s: image skipped (%s): %s", task_id, stage, error)
                continue
            report({"stage": stage, "images": len(images)})
        return images

    def initial_network(self, project_id: str, config: LabelConfig) -> SegmentationNet:
        """Warm start from the newest version trained for these classes, else ImageNet weights."""
        checkpoint = self.backend.models.newest_readable(project_id) if self.settings.train_warm_start else None
        if checkpoint is not None and checkpoint.class_names == config.class_names:
            net = SegmentationNet(checkpoint.spec)
            net.load_state_dict(checkpoint.state_dict)
            return net
        spec = dataclasses.replace(self.backend.cache.base_spec, num_classes=len(config.class_names))
        return build_network(spec, seed=self.settings.train_seed)

    def train(self, project_id: str, label_config_xml: str, report: Report = _no_report) -> TrainingOutcome:
        """Train on every labelled task of the project and save the next version."""
        started = time.perf_counter()
        report({"stage": "reading labels"})
        tasks = list(self.studio.iter_tasks(project_id))
        outcome = self.train_on_tasks(project_id, parse_label_config(label_config_xml), tasks, report)
        metrics.observe_training_round(time.perf_counter() - started)
        return outcome

    def train_on_tasks(
        self, project_id: str, config: LabelConfig, tasks: list[dict[str, Any]], report: Report = _no_report
    ) -> TrainingOutcome:
        """Train on the labelled ones of ``tasks`` (Label Studio task dicts) and save the next version."""
        started = time.time()
        labelled = self.collect_samples(tasks, config, report)
        samples, unlabelled = labelled.samples, labelled.unlabelled
        report({"skipped_tasks": labelled.skipped()})
        limit = self.settings.train_max_unreadable_share
        if labelled.unreadable_image and len(labelled.unreadable_image) > limit * labelled.labelled:
            raise UnreadableLabels(
                f"project {project_id}: the images of {len(labelled.unreadable_image)} of {labelled.labelled} "
                f"labelled tasks cannot be read (task ids {labelled.unreadable_image}), more than "
                f"TRAIN_MAX_UNREADABLE_SHARE={limit:g}; no version was trained. Fix those images (see the log for "
                "each reason) or raise the share"
            )
        if not samples:
            raise ValueError(f"project {project_id} has no usable annotations yet ({len(tasks)} tasks read)")
        net = self.initial_network(project_id, config)
        train_config = train_config_from(self.settings)
        images = None
        if train_config.semi_supervised == "mean_teacher":
            images = self.unlabelled_images(tasks, unlabelled, config, report)
            if not images:
                log.warning("project %s: no readable unlabelled image; training without the mean teacher", project_id)
                train_config = dataclasses.replace(train_config, semi_supervised="none")

        def on_epoch(update: dict[str, Any]) -> None:
            report({**update, "stage": "training"})

        result = train(
            net,
            samples,
            train_config,
            self.backend.device,
            progress=on_epoch,
            partial_labels=config.handler.partial_labels,
            unlabelled=images,
        )
        pool_images = self.sample_images(
            tasks,
            [int(task["id"]) for task in tasks],
            config,
            self.settings.pool_statistics_images,
            "pool statistics",
            report,
        )
        pool = self.backend.pool_statistics(result.net, pool_images, config) if pool_images else None
        metrics = {**result.metrics, "skipped_tasks": labelled.skipped()}
        metadata = {
            **metrics,
            "pool_statistics": None if pool is None else pool.to_dict(),
            "labelled_tasks": [sample.task_id for sample in samples],
            "config": dataclasses.asdict(train_config),
            "trained_at": time.time(),
            "seconds": time.time() - started,
        }
        report({"stage": "saving"})  # the last chance for the job to stop (e.g. its lock was lost)
        version = self.backend.models.save(project_id, result.net, config.class_names, metadata)
        log.info("project %s: saved %s from %d labelled tasks", project_id, version_name(version), len(samples))
        report({"stage": "trained", "version": version_name(version), "unlabelled_tasks": len(unlabelled)})
        return TrainingOutcome(version, unlabelled, metrics)

    def score(
        self, project_id: str, label_config_xml: str, task_ids: list[int], report: Report = _no_report
    ) -> dict[str, Any]:
        """Predict the given tasks (one chunk) with the newest version in one :meth:`Backend.predict` call
        (batches of ``INFERENCE_BATCH_SIZE``; on CUDA the next batch is read while the network runs), and store the
        predictions in Label Studio in one import at the end, the acquisition score as each prediction's ``score``
        (higher = more informative; the queue orders by it). One import per chunk, because Label Studio 1.23.2
        refreshes the counters of every task of the project on each import: its cost per call grows with the
        project, so fewer calls are what makes a large pool cheap to write.

        A task is done when it holds this version's prediction: a rerun skips done tasks, so an interrupted
        scoring resumes. Returns ``{"scored", "failed": [task ids], "already_scored", "seconds"}``, ``seconds`` the
        wall time of each stage: ``read``, ``network``, ``render`` (:meth:`Backend.predict`; on CUDA reading
        overlaps the network) and ``write`` (the predictions to Label Studio); reading the task list is in none.
        """
        config = parse_label_config(label_config_xml)
        version = version_name(self.backend.cache.get(project_id, config.class_names)[1])
        tasks = {int(task["id"]): task for task in self.studio.iter_tasks(project_id, task_ids=task_ids)}
        already, failed, pending = 0, [], []
        for task_id in task_ids:
            if task_id not in tasks:
                log.error("task %s: scoring failed: it is no longer in project %s", task_id, project_id)
                failed.append(task_id)
            elif has_prediction(tasks[task_id], version):
                already += 1
            else:
                pending.append(tasks[task_id])
        seconds: dict[str, float] = {}
        predicted: list[tuple[dict[str, Any], TaskPrediction]] = []
        predictions = self.backend.predict(
            pending,
            config,
            project_id,
            seconds=seconds,
            progress=lambda done: report({"stage": "scoring", "predicted": done, "of": len(task_ids)}),
        )
        for task, prediction in zip(pending, predictions, strict=True):
            if prediction.failed:
                log.error("task %s: scoring failed: no prediction (see the log for the reason)", task["id"])
                failed.append(int(task["id"]))
            else:
                predicted.append((task, prediction))
        writing = time.perf_counter()
        scored = self._write_predictions(project_id, predicted, failed)
        seconds["write"] = time.perf_counter() - writing
        metrics.observe_scoring(len(predicted), sum(seconds.values()))
        report({"stage": "scoring", "scored": scored, "of": len(task_ids)})
        stages = {stage: round(value, 3) for stage, value in seconds.items()}
        return {"scored": scored, "failed": sorted(failed), "already_scored": already, "seconds": stages}

    def _write_predictions(
        self, project_id: str, predicted: list[tuple[dict[str, Any], TaskPrediction]], failed: list[int]
    ) -> int:
        """Store the predictions in one bulk import; return how many were stored, adding the others' ids to
        ``failed``. If the bulk import fails, each task is written on its own (updating a prediction of this
        version that the failed import may have left), so one bad prediction never sinks the others. Old versions
        are deleted by :meth:`publish`."""
        if not predicted:
            return 0
        bodies = [{"task": int(task["id"]), **prediction.to_json()} for task, prediction in predicted]
        try:
            self.studio.import_predictions(project_id, bodies)
            return len(bodies)
        except StudioError as error:
            log.warning("bulk import of %d predictions failed (%s); writing them one by one", len(bodies), error)
        stored = 0
        for task, prediction in predicted:
            try:
                self.studio.upsert_prediction(task["id"], prediction.result, prediction.score, prediction.model_version)
                stored += 1
            except StudioError as error:
                log.error("task %s: scoring failed: %s", task["id"], error)
                failed.append(int(task["id"]))
        return stored

    def publish(self, project_id: str, version: int) -> dict[str, Any]:
        """Point the project at the new version and (re)create the view ordered by the acquisition score.

        Label Studio's "Prediction score" (``predictions_score``) averages the scores of the predictions of the
        project's ``model_version`` only, so the view, ordered by it and listing the unlabelled tasks that have
        one, never mixes the scores of two versions: tasks whose scoring failed (and tasks imported since the
        round) join it at the next round. Then the predictions of versions beyond ``KEEP_PREDICTION_VERSIONS`` go
        (:meth:`delete_old_versions`).
        """
        version_set = self.studio.set_project_model_version(project_id, version_name(version))
        unlabelled = {"filter": "filter:tasks:total_annotations", "operator": "empty", "type": "Number", "value": True}
        scored = {"filter": "filter:tasks:predictions_score", "operator": "empty", "type": "Number", "value": False}
        view_id = self.studio.ensure_view(
            project_id,
            self.settings.queue_view_title,
            {
                "ordering": ["-tasks:predictions_score"],
                "filters": {"conjunction": "and", "items": [unlabelled, scored]},
                "hiddenColumns": {"explore": QUEUE_HIDDEN_COLUMNS, "labeling": QUEUE_HIDDEN_COLUMNS},
            },
        )
        deleted = self.delete_old_versions(project_id, version)
        return {
            "model_version": version_name(version),
            "project_model_version_set": version_set,
            "view_id": view_id,
            "deleted_versions": deleted,
        }

    def delete_old_versions(self, project_id: str, version: int) -> dict[str, int]:
        """Delete the project's predictions of this backend's versions beyond the ``KEEP_PREDICTION_VERSIONS``
        newest (``version`` always kept), one request per version; returns ``{version: predictions deleted}``.
        A refused deletion is logged and left for the next round: it never fails the round."""
        deleted = {}
        try:
            stored = self.studio.model_versions(project_id)
            for name in stale_versions(stored, version_name(version), self.settings.keep_prediction_versions):
                deleted[name] = self.studio.delete_model_version(project_id, name)
        except StudioError as error:
            log.warning(
                "project %s: deleting old prediction versions failed (%s); the next round retries", project_id, error
            )
        return deleted
