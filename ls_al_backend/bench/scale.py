"""A large project against a real Label Studio: rounds of pool scoring and write-back, and what they store.

The benchmark creates a project of ``tasks`` tasks in the Label Studio that ``LABEL_STUDIO_URL`` names (the images
repeated under distinct file names, symbolic links in a temporary folder, so no cache is shared between tasks),
then runs one round per entry of ``worker_counts``: a new model version (a freshly initialised network: what is
measured is scoring and storage, not training) and every task scored by that many ``ls-al-backend worker``
processes over Redis + RQ, then the round's publish job (the project's version, the queue view, old versions'
predictions deleted), exactly as after a training round. It records each round's images per second, the
workers' wall time per stage summed over jobs (``read``, ``network``, ``render``, ``write``: where the time goes)
and, when the Label Studio database file is given (SQLite), its size after the import and after every round.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from ls_al_backend.bench.service_speed import _wait_for, running_workers
from ls_al_backend.config import Settings
from ls_al_backend.jobs.contract import scoring_chunk_size
from ls_al_backend.jobs.rq_jobs import enqueue_scoring, publish_job
from ls_al_backend.studio import StudioClient

#: Tasks imported per request.
IMPORT_BATCH = 1000
#: Tasks whose stored predictions are read back to measure their size.
SAMPLE_TASKS = 50
#: The project size the summary's per-round figures are stated for.
TARGET_TASKS = 10_000


def link_images(sources: Sequence[Path], count: int, folder: Path) -> list[Path]:
    """``count`` distinct file names in ``folder``, symbolic links to ``sources`` in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    linked = []
    for index in range(count):
        source = Path(sources[index % len(sources)]).resolve()
        path = folder / f"task_{index:06d}{source.suffix}"
        path.symlink_to(source)
        linked.append(path)
    return linked


def database_bytes(database: Path | None) -> int | None:
    """Size of a SQLite database with its write-ahead log; None when no database is given or it is missing."""
    if database is None or not database.is_file():
        return None
    wal = database.with_name(database.name + "-wal")
    return database.stat().st_size + (wal.stat().st_size if wal.is_file() else 0)


def label_studio_peak_rss_mib() -> float | None:
    """The largest peak RSS (``VmHWM``) of the processes on this machine started as ``label-studio``; None if none
    is readable (another machine, another user)."""
    peaks = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            if not any(Path(word.decode(errors="replace")).name == "label-studio" for word in command[:2]):
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return round(max(peaks), 1) if peaks else None


def stored_predictions(studio: StudioClient, project_id: str, sample: int) -> dict[str, Any]:
    """Of the first ``sample`` tasks: the mean and largest JSON bytes of a stored prediction's result, and the most
    model versions any of them holds."""
    sizes, versions = [], 0
    for index, task in enumerate(studio.iter_tasks(project_id, page_size=sample)):
        if index >= sample:
            break
        predictions = task.get("predictions") or []
        versions = max(versions, len({prediction.get("model_version") for prediction in predictions}))
        sizes += [len(json.dumps(prediction.get("result"), separators=(",", ":"))) for prediction in predictions]
    return {
        "sampled_tasks": sample,
        "mean_bytes": round(sum(sizes) / len(sizes)) if sizes else None,
        "max_bytes": max(sizes, default=None),
        "most_versions_per_task": versions,
    }


def measure_scale(
    settings: Settings,
    label_config: str,
    label_config_name: str,
    images: Sequence[Path],
    tasks: int,
    worker_counts: Sequence[int],
    redis_url: str,
    database: Path | None = None,
) -> dict[str, Any]:
    """One project of ``tasks`` tasks, one scoring round per entry of ``worker_counts``; see the module docstring.

    Returns ``{"skipped": reason}`` when Label Studio or Redis is not configured or does not answer.
    """
    if not settings.label_studio_url or not settings.label_studio_api_key:
        return {"skipped": "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must name the Label Studio to load"}
    try:
        Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except (RedisError, ValueError) as error:
        return {"skipped": f"Redis at {redis_url} did not answer: {error}"}
    from ls_al_backend.model.network import NetworkSpec, build_network
    from ls_al_backend.model.store import ModelStore
    from ls_al_backend.modes import parse_label_config

    studio = StudioClient(settings.label_studio_url, settings.label_studio_api_key, timeout_s=300)
    class_names = parse_label_config(label_config).class_names
    with tempfile.TemporaryDirectory(prefix="ls-al-scale-") as work:
        linked = link_images(images, tasks, Path(work) / "images")
        size_before = database_bytes(database)
        project = studio.call(
            "POST",
            "/api/projects/",
            json={"title": f"ls-al-backend scale ({tasks} tasks)", "label_config": label_config},
        )
        project_id = str(project["id"])
        started = time.monotonic()
        for start in range(0, tasks, IMPORT_BATCH):
            batch = [{"image": str(path)} for path in linked[start : start + IMPORT_BATCH]]
            studio.call("POST", f"/api/projects/{project_id}/import", json=batch)
        import_s = time.monotonic() - started
        task_ids = [int(task["id"]) for task in studio.iter_tasks(project_id, page_size=IMPORT_BATCH)]
        if len(task_ids) != tasks:
            raise RuntimeError(f"imported {tasks} tasks, Label Studio lists {len(task_ids)}")
        size_imported = database_bytes(database)
        run_settings = dataclasses.replace(
            settings,
            data_dir=Path(work) / "data",
            model_dir="",
            redis_url=redis_url,
            training_queue=f"ls-al-scale-{uuid.uuid4().hex[:8]}-training",
            scoring_queue=f"ls-al-scale-{uuid.uuid4().hex[:8]}-scoring",
            local_image_roots=(str(Path(work) / "images"), *sorted({str(Path(p).resolve().parent) for p in images})),
        )
        spec = NetworkSpec(
            settings.model_arch,
            settings.model_encoder,
            len(class_names),
            settings.head_dropout,
            settings.encoder_weights,
        )
        store = ModelStore(run_settings.models_dir)
        log_path = Path(work) / "workers.log"
        rounds = []
        for round_index, count in enumerate(worker_counts, start=1):
            net = build_network(spec, seed=round_index)
            version = store.save(project_id, net, class_names, {"benchmark": "scale"})
            del net
            threads = max(1, (os.cpu_count() or 1) // count)
            environment = {"OMP_NUM_THREADS": str(threads)}
            with running_workers(run_settings, count, log_path, environment) as queue:
                started = time.monotonic()
                jobs = enqueue_scoring(queue, project_id, label_config, task_ids, settings.score_chunk_size)
                results = _wait_for(jobs, log_path)
                scored_at = time.monotonic()
                (published,) = _wait_for([queue.enqueue(publish_job, project_id, version)], log_path)
                published_at = time.monotonic()
                seconds = published_at - started
                for job in jobs:
                    job.delete()
                queue.delete()
            scored = sum(result["scored"] for result in results)
            failed = sum(len(result["failed"]) for result in results)
            stages: dict[str, float] = {}
            for result in results:
                for stage, value in result.get("seconds", {}).items():
                    stages[stage] = stages.get(stage, 0.0) + value
            stages = {stage: round(value, 3) for stage, value in stages.items()}  # a 5-task write is ~0.02 s
            rounds.append(
                {
                    "round": round_index,
                    "model_version": f"v{version}",
                    "workers": count,
                    "threads_per_worker": threads,
                    "images": scored,
                    "failed": failed,
                    "seconds": round(seconds, 1),
                    "images_per_s": round(scored / seconds, 3),
                    "stage_seconds": stages,
                    "publish_s": round(published_at - scored_at, 1),
                    "deleted_versions": published["deleted_versions"],
                    "ls_db_bytes": database_bytes(database),
                }
            )
            print(f"scale round: {json.dumps(rounds[-1])}", file=sys.stderr, flush=True)  # a long run's progress
        predictions = stored_predictions(studio, project_id, min(SAMPLE_TASKS, tasks))
    return {
        "what": "per round: a new model version, every task scored (Pipeline.score: predict, bulk-import the "
        "predictions, each with its acquisition score) by `ls-al-backend worker` processes over Redis + RQ, then the "
        "publish job (the project's version, the queue view, versions beyond KEEP_PREDICTION_VERSIONS deleted), "
        "against a real Label Studio",
        "label_config": label_config_name,
        "label_studio_url": settings.label_studio_url,
        "tasks": tasks,
        "distinct_images": len(images),
        "chunk_size": scoring_chunk_size(len(task_ids), settings.score_chunk_size),
        "keep_prediction_versions": settings.keep_prediction_versions,
        "import_s": round(import_s, 1),
        "ls_db_bytes_before": size_before,
        "ls_db_bytes_after_import": size_imported,
        "rounds": rounds,
        "stored_predictions": predictions,
        "label_studio_peak_rss_mib": label_studio_peak_rss_mib(),
    }


def scale_summary(result: dict[str, Any], cores: int | None) -> dict[str, Any]:
    """``benchmarks/scale/summary.json``: the issue's figures from one :func:`measure_scale` result. Figures for a
    :data:`TARGET_TASKS`-task project are scaled linearly from the measured project when it was smaller
    (``measured_tasks`` says how many tasks were measured)."""
    rounds = result["rounds"]

    def speed(workers: int) -> float | None:
        found = [row["images_per_s"] for row in rounds if row["workers"] == workers]
        return round(sum(found) / len(found), 3) if found else None

    best = max(row["images_per_s"] for row in rounds)
    sizes = [row["ls_db_bytes"] for row in rounds[:3]]
    growth = None  # over exactly 3 rounds, or not stated
    if result["ls_db_bytes_after_import"] is not None and len(sizes) == 3 and None not in sizes:
        growth = (sizes[-1] - result["ls_db_bytes_after_import"]) / 2**20 * TARGET_TASKS / result["tasks"]
    return {
        "tasks": TARGET_TASKS,
        "measured_tasks": result["tasks"],
        "cores": cores,
        "images_per_s_1_worker": speed(1),
        "images_per_s_2_workers": speed(2),
        "round_minutes_10k": round(TARGET_TASKS / best / 60, 1),
        "ls_db_growth_mb_3_rounds": None if growth is None else round(growth, 1),
        "rounds_measured": len(rounds),
        "bytes_per_prediction": {result["label_config"]: result["stored_predictions"]["mean_bytes"]},
    }
