"""Write-back at full project size: what a round's writes cost Label Studio, without the network.

The scale benchmark (``ls-al-backend bench --only scale``) scores every task, so at 10,000 tasks three rounds
take hours on 2 cores. This probe measures only the part that grows with the project: one real prediction (the
backend's own ``predict`` of one CamVid image by an untrained ``v1``, superpixel dominant-class mode, as in the
scale benchmark) is stored for every task of a project of ``--tasks`` tasks, in imports of ``SCORE_CHUNK_SIZE``
predictions (the worker's ``Pipeline._write_predictions`` call), for ``--rounds`` rounds of new versions, each
followed by the publish step's deletion of the versions beyond ``KEEP_PREDICTION_VERSIONS``
(:func:`~ls_al_backend.studio.stale_versions`). It records the seconds of every import, the deletions and
Label Studio's SQLite size after the task import and after every round. Run it against a fresh Label Studio:

    bash scripts/label_studio.sh start DATA 18092
    LABEL_STUDIO_URL=http://127.0.0.1:18092 LABEL_STUDIO_API_KEY=<token> python benchmarks/scale/write_probe.py \
      --image ../shared/datasets/camvid/train/images/0001TP_006690.jpg --tasks 10000 --rounds 3 \
      --database DATA/label_studio.sqlite3 --out benchmarks/scale/write-10k/results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from ls_al_backend.backend import Backend
from ls_al_backend.bench.run import machine_info
from ls_al_backend.bench.scale import IMPORT_BATCH, database_bytes, label_studio_peak_rss_mib
from ls_al_backend.config import Settings
from ls_al_backend.jobs.contract import scoring_chunk_size, scoring_chunks
from ls_al_backend.model.network import build_network
from ls_al_backend.modes import parse_label_config
from ls_al_backend.studio import StudioClient, stale_versions

LABEL_CONFIG = Path(__file__).resolve().parents[2] / "label_configs" / "superpixel_dominant.xml"


def one_prediction(settings: Settings, image: Path) -> dict:
    """The JSON body the worker writes for ``image``, predicted by a freshly initialised ``v1``."""
    config = parse_label_config(LABEL_CONFIG.read_text())
    with tempfile.TemporaryDirectory(prefix="ls-al-probe-") as work:
        backend = Backend(
            dataclasses.replace(
                settings, data_dir=Path(work), model_dir="", local_image_roots=(str(image.resolve().parent),)
            )
        )
        spec = dataclasses.replace(backend.cache.base_spec, num_classes=len(config.class_names))
        backend.models.save("1", build_network(spec, seed=1), config.class_names, {"benchmark": "write probe"})
        (prediction,) = backend.predict([{"id": 1, "data": {config.image_key: str(image.resolve())}}], config, "1")
    if prediction.failed:
        raise SystemExit(f"predicting {image} failed; see the log")
    return prediction.to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, required=True, help="one image whose prediction every task gets")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", type=Path, help="Label Studio's SQLite file, whose growth is reported")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    settings = Settings.from_env()
    if not settings.label_studio_url or not settings.label_studio_api_key:
        raise SystemExit("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to the Label Studio to load")
    body = one_prediction(settings, args.image)
    studio = StudioClient(settings.label_studio_url, settings.label_studio_api_key, timeout_s=600)
    size_before = database_bytes(args.database)
    project_id = str(
        studio.call(
            "POST",
            "/api/projects/",
            json={"title": f"ls-al-backend write probe ({args.tasks} tasks)", "label_config": LABEL_CONFIG.read_text()},
        )["id"]
    )
    started = time.monotonic()
    for start in range(0, args.tasks, IMPORT_BATCH):
        batch = [
            {"image": f"/data/task_{index:06d}.jpg"} for index in range(start, min(args.tasks, start + IMPORT_BATCH))
        ]
        studio.call("POST", f"/api/projects/{project_id}/import", json=batch)
    import_s = time.monotonic() - started
    task_ids = [int(task["id"]) for task in studio.iter_tasks(project_id, page_size=IMPORT_BATCH)]
    size_imported = database_bytes(args.database)
    draw = random.Random(0)
    chunks = scoring_chunks(task_ids, settings.score_chunk_size)
    rounds = []
    for round_index in range(1, args.rounds + 1):
        version = f"v{round_index}"
        calls = []
        for chunk in chunks:
            bodies = [{**body, "task": task_id, "score": draw.random(), "model_version": version} for task_id in chunk]
            called = time.monotonic()
            created = studio.import_predictions(project_id, bodies)
            calls.append(time.monotonic() - called)
            if created != len(bodies):
                raise SystemExit(f"{version}: Label Studio created {created} of {len(bodies)} predictions")
        size_written = database_bytes(args.database)
        deleting = time.monotonic()
        studio.set_project_model_version(project_id, version)
        stale = stale_versions(studio.model_versions(project_id), version, settings.keep_prediction_versions)
        deleted = {name: studio.delete_model_version(project_id, name) for name in stale}
        rounds.append(
            {
                "round": round_index,
                "model_version": version,
                "imports": len(calls),
                "write_s": round(sum(calls), 1),
                "write_s_per_1000_tasks": round(sum(calls) * 1000 / len(task_ids), 1),
                "import_s_first_mean_last": [round(calls[0], 2), round(statistics.mean(calls), 2), round(calls[-1], 2)],
                "publish_s": round(time.monotonic() - deleting, 1),
                "deleted_versions": deleted,
                "ls_db_bytes_after_writes": size_written,
                "ls_db_bytes": database_bytes(args.database),
            }
        )
        print(json.dumps(rounds[-1]), flush=True)
    result = {
        "what": __doc__.split("\n\n")[0],
        "tasks": len(task_ids),
        "chunk_size": scoring_chunk_size(len(task_ids), settings.score_chunk_size),
        "keep_prediction_versions": settings.keep_prediction_versions,
        "prediction_json_bytes": len(json.dumps(body["result"])),
        "task_import_s": round(import_s, 1),
        "ls_db_bytes_before": size_before,
        "ls_db_bytes_after_import": size_imported,
        "rounds": rounds,
        "ls_db_growth_mb": None
        if size_imported is None
        else round((rounds[-1]["ls_db_bytes"] - size_imported) / 1e6, 1),
        "label_studio_peak_rss_mib": label_studio_peak_rss_mib(),
        "machine": machine_info(settings),
        "started_at": started_at,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
