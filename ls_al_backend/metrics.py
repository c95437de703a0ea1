"""Prometheus metrics of every process: the web process's ``/metrics`` and ``ls-al-backend worker --metrics-port``.

The families are module-level objects of prometheus-client's default registry; code records through the small
functions below, never through the objects, so that a name or a label changes in one place. docs/metrics.md lists
every family.

Several processes, one exposition: when ``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus-client is imported,
each process writes its values to files in that folder and :func:`exposition` adds them up (prometheus-client's
multiprocess mode). ``ls-al-backend serve`` uses it when the variable is set (gunicorn workers); ``ls-al-backend
worker`` always does, in a folder of its own (``metrics_folders.py``), because RQ runs every job in a forked process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

disable_created_metrics()  # no ``*_created`` series: they double the text and no dashboard here reads them

#: Request latency buckets (seconds): a /predict with MC dropout on a CPU takes seconds, /health milliseconds.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Training round buckets (seconds): from a smoke test's few seconds to a GPU round of hours.
TRAINING_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)

REQUESTS = Counter(
    "ls_al_http_requests",
    "HTTP requests answered, by route (the URL rule), method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "ls_al_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and method.",
    ["route", "method"],
    buckets=REQUEST_BUCKETS,
)
PREDICTIONS = Counter("ls_al_predictions_served", "Tasks that /predict answered with a prediction.")
QUERY_REGIONS = Counter("ls_al_query_regions_served", "Query regions (superpixels or points) /predict proposed.")
JOBS = Counter(
    "ls_al_jobs",
    "Jobs by kind (train, score, publish) and state (enqueued, started, finished, failed), counted by the process "
    "that saw the change (the web process enqueues training; a worker starts and ends jobs).",
    ["kind", "state"],
)
TRAINING_SECONDS = Histogram(
    "ls_al_training_round_duration_seconds",
    "Time of one successful training (reading labels, training, saving).",
    buckets=TRAINING_BUCKETS,
)
SCORED_IMAGES = Counter(
    "ls_al_scored_images", "Pool images scored (images per second: rate of this / rate of seconds)."
)
SCORING_SECONDS = Counter("ls_al_scoring_seconds", "Time spent scoring pool images.")
MODEL_VERSION = Gauge(
    "ls_al_model_version_served",
    "The model version /predict serves, per project (0: the untrained model).",
    ["project"],
    multiprocess_mode="livemax",
)
IMAGE_FAILURES = Counter(
    "ls_al_image_fetch_failures", "Images that could not be read or downloaded, by cause.", ["cause"]
)


def count_image_failure(cause: str) -> None:
    """One image could not be read; ``cause`` is a key of ``images.IMAGE_ERROR_CAUSES`` (``network``, ...)."""
    IMAGE_FAILURES.labels(cause=cause).inc()


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """One answered request; ``route`` is the URL rule (``/predict``), never the raw path (unbounded labels)."""
    REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    REQUEST_SECONDS.labels(route=route, method=method).observe(seconds)


def count_predictions(tasks: int, regions: int) -> None:
    """A /predict answered ``tasks`` tasks with predictions proposing ``regions`` query regions in all."""
    PREDICTIONS.inc(tasks)
    QUERY_REGIONS.inc(regions)


def count_job(kind: str, state: str) -> None:
    """A job of ``kind`` (train, score, publish) reached ``state`` (enqueued, started, finished, failed)."""
    JOBS.labels(kind=kind, state=state).inc()


def observe_training_round(seconds: float) -> None:
    TRAINING_SECONDS.observe(seconds)


def observe_scoring(images: int, seconds: float) -> None:
    """A scoring run read and scored ``images`` pool images in ``seconds``."""
    SCORED_IMAGES.inc(images)
    SCORING_SECONDS.inc(seconds)


def set_model_version(project: str, version: int) -> None:
    MODEL_VERSION.labels(project=project).set(version)


def multiprocess_mode() -> bool:
    """Whether this process writes its values to ``PROMETHEUS_MULTIPROC_DIR`` (fixed when prometheus-client was
    imported)."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def scrape_registry(extra_collectors: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry with this process's families (in multiprocess mode: every process's that writes to the folder)
    and ``extra_collectors`` (collected at each scrape, e.g. queue lengths from Redis)."""
    registry = CollectorRegistry()
    registry.register(_MultiProcessFiles() if multiprocess_mode() else _Union(REGISTRY))
    for collector in extra_collectors:
        registry.register(collector)
    return registry


def exposition(extra_collectors: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The Prometheus text of :func:`scrape_registry`; returns (body, content type)."""
    return generate_latest(scrape_registry(extra_collectors)), CONTENT_TYPE_LATEST


class _Union(Collector):
    """Another registry's families, collected anew at every scrape (so one scrape's registry can add its own)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()


#: Held while the multiprocess files are read or folded, so that a scrape never counts a value twice (once in an
#: ended process's file, once in the archive it is being folded into).
_files_lock = threading.Lock()


class _MultiProcessFiles(Collector):
    """prometheus-client's sum over the multiprocess folder's files, read under :data:`_files_lock`."""

    def collect(self):
        with _files_lock:
            return list(MultiProcessCollector(None, path=os.environ[MULTIPROCESS_DIR_VARIABLE]).collect())


def forget_process(pid: int) -> None:
    """A process writing to the multiprocess folder has ended (gunicorn's ``child_exit``): drop its live gauges
    (the model version it served); its counters and histograms stay counted."""
    mark_process_dead(pid, os.environ[MULTIPROCESS_DIR_VARIABLE])


def fold_ended_process(pid: int) -> None:
    """Add the counters and histograms an ended process (a worker's job process) wrote to the multiprocess folder
    into ``<type>_archive.db`` and delete its files; its live gauges are dropped (prometheus-client's
    ``mark_process_dead``). Keeps the folder at a few files however many jobs the worker has run."""
    directory = os.environ[MULTIPROCESS_DIR_VARIABLE]
    # MmapedDict is prometheus-client's file format, not its public API (pyproject bounds the version below 1)
    with _files_lock:
        mark_process_dead(pid, directory)
        for kind in ("counter", "histogram"):
            ended = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(ended):
                continue
            archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(ended):  # _: position
                    archived, _ = archive.read_value(key)
                    archive.write_value(key, archived + value, timestamp)
            finally:
                archive.close()
            os.remove(ended)
