"""The README's screenshots after one real training round: ``docs/screenshots/<mode>-trained.png`` and
``data_manager.png``.

    LS_VENV=.ls-venv .venv/bin/python -m tests.e2e.screenshots [--out docs/screenshots] [--images 8 --answered 4]

Per query mode, against a real Label Studio 1.23.2 and ``ls-al-backend serve`` with its default settings (CPU,
embedded queue): a project of CamVid training images at their own 480x360, the untrained ``v0``'s predictions, the
first ``--answered`` tasks annotated as a person would from CamVid's ground truth (every query answered with its
dominant class, its classes or its pixel's class; in dense mode the whole mask), which trains ``v1`` through the
webhook and the queue; then the top task of the "Active learning queue" opens in the editor with ``v1``'s
prediction, and the first project's queue in the Data Manager. Not a test: it takes several minutes per mode.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ls_al_backend.labeling.annotations import IGNORE, keypoint_pixel, polygon_mask
from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.labeling.results import brush_result, region_choices_result
from ls_al_backend.modes import parse_label_config
from ls_al_backend.modes.superpixel_dominant import dominant_class
from ls_al_backend.modes.superpixel_multiclass import multiclass_candidates
from tests.e2e.browser import Browser
from tests.e2e.harness import (
    LEGACY_TOKEN,
    REPO_ROOT,
    LabelStudio,
    RunningBackend,
    Studio,
    TinyImage,
    camvid_dir,
    start_backend,
    wait_until,
)

MODES = ("dense_brush", "superpixel_dominant", "superpixel_multiclass", "sparse_points")
#: The product's defaults, but for the CPU, the embedded queue and one round after the answered tasks.
SETTINGS = {
    "CLASS_MASKS": "auto",
    "UNCERTAINTY_OVERLAY": "auto",
    "INFERENCE_MAX_SIDE": "512",
    "MC_SAMPLES": "20",
    "TRAIN_EPOCHS": "10",
    "TRAIN_MIN_STEPS": "200",
    "TRAIN_BATCH_SIZE": "4",
    "TRAIN_CROP_SIZE": "256",
}
ROUND_TIMEOUT_S = 1800
CAMVID_IGNORE = 11


def camvid_images(folder: Path, count: int) -> list[tuple[TinyImage, np.ndarray]]:
    """``count`` CamVid training images spread over the split, as PNG files, with their ``[H, W]`` ground truth."""
    root = camvid_dir() / "train"
    paths = sorted((root / "images").glob("*.jpg"))
    picked = [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]
    found = []
    for path in picked:
        image = Image.open(path).convert("RGB")
        target = folder / f"{path.stem}.png"
        image.save(target)
        gt = np.asarray(Image.open(root / "masks" / f"{path.stem}.png"), dtype=np.int64).copy()
        gt[(gt == CAMVID_IGNORE) | (gt >= 255)] = IGNORE
        found.append((TinyImage(target, image.width, image.height), gt))
    return found


def answers(prediction: list[dict[str, Any]], config: LabelTags, mode: str, gt: np.ndarray) -> list[dict[str, Any]]:
    """What a careful annotator submits for a task whose ground truth is ``gt``: each query region of the
    prediction with its answer (void regions left out), or in dense mode one brush region per class present."""
    height, width = gt.shape
    names = config.class_names
    if mode == "dense_brush":
        return [
            brush_result(config.class_brush.name, config.image_tag, names[c], (gt == c).astype(np.uint8) * 255, 1.0)
            for c in np.unique(gt[gt != IGNORE])
        ]
    submitted = []
    for query in prediction:
        if query["from_name"] != config.query.name:
            continue
        if mode == "sparse_points":
            classes = [int(gt[keypoint_pixel(query, height, width)])]
        elif mode == "superpixel_multiclass":
            classes = np.flatnonzero(multiclass_candidates(gt, polygon_mask(query, height, width), len(names)))
        else:
            classes = [dominant_class(gt[polygon_mask(query, height, width)], len(names))]
        classes = [int(c) for c in classes if c is not None and c != IGNORE]
        if classes:
            region = {key: value for key, value in query.items() if key != "score"} | {"origin": "manual"}
            submitted += [region, region_choices_result(config.region_choices, config.image_tag, query["id"],
                                                        [names[c] for c in classes])]  # fmt: skip
    return submitted


def latest_prediction(task: dict[str, Any], version: str) -> list[dict[str, Any]]:
    found = [prediction for prediction in task["predictions"] if prediction["model_version"] == version]
    return found[-1]["result"] if found else []


def train_one_round(
    studio: Studio, backend: RunningBackend, mode: str, images: list[tuple[TinyImage, np.ndarray]], answered: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A project of ``images`` in ``mode``, ``answered`` tasks annotated from the ground truth; returns the project
    and the finished training job (its ``result`` has ``model_version`` and ``view_id``)."""
    xml = (REPO_ROOT / "label_configs" / f"{mode}.xml").read_text()
    config = parse_label_config(xml)
    project = studio.create_project(f"CamVid, {mode.replace('_', ' ')}", xml)
    studio.import_images(project["id"], [image for image, _ in images])
    studio.add_ml_backend(project["id"], backend.url, title="ls-al-backend")
    studio.retrieve_predictions(project["id"])
    if config.query is not None and not wait_until(  # dense mode's v0 draws nothing: no masks before training
        lambda: all(latest_prediction(t, "v0") for t in studio.tasks(project["id"])), 600, 2
    ):
        raise RuntimeError(f"{mode}: v0 predictions missing:\n{backend.log_tail()}")
    by_name = {image.path.name: gt for image, gt in images}
    for task in studio.tasks(project["id"])[:answered]:
        gt = next(gt for name, gt in by_name.items() if task["data"]["image"].endswith("-" + name))
        result = answers(latest_prediction(task, "v0"), config, mode, gt)
        studio.post(f"/api/tasks/{task['id']}/annotations/", json={"result": result, "lead_time": 30.0})

    def finished_job() -> dict[str, Any] | None:
        jobs = [j for j in backend.get("/jobs")["jobs"] if j["kind"] == "train" and j["project"] == str(project["id"])]
        done = [job for job in jobs if job["status"] == "finished"]
        if any(job["status"] == "failed" for job in jobs):
            raise RuntimeError(f"{mode}: training failed: {jobs}")
        return done[-1] if done and len(done) == len(jobs) else None

    if not wait_until(finished_job, ROUND_TIMEOUT_S, interval_s=5):
        raise RuntimeError(f"{mode}: no finished round in {ROUND_TIMEOUT_S} s:\n{backend.log_tail()}")
    return project, finished_job()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument("--images", type=int, default=8, help="tasks per project")
    parser.add_argument("--answered", type=int, default=4, help="tasks annotated before the round")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ls-al-screenshots-"))
    images = camvid_images(work, args.images)
    with LabelStudio.running(work / "label-studio") as label_studio:
        studio = Studio(label_studio.url, f"Token {LEGACY_TOKEN}")
        settings = SETTINGS | {"TRAIN_EVERY_N_ANNOTATIONS": str(args.answered)}
        backend = start_backend(label_studio, "legacy_token", LEGACY_TOKEN, work / "backend", settings)
        try:
            with Browser(work / "chromium.log", lifetime_s=3600) as browser:
                browser.login(label_studio.url)
                for index, mode in enumerate(args.modes):
                    started = time.monotonic()
                    project, job = train_one_round(studio, backend, mode, images, args.answered)
                    version, view = job["result"]["model_version"], job["result"]["view_id"]
                    queue = studio.get("/api/tasks/", params={"project": project["id"], "view": view})["tasks"]
                    browser.open_task(label_studio.url, project["id"], queue[0]["id"])
                    shot = browser.screenshot(args.out / f"{mode}-trained.png", settle_s=3)
                    print(f"{mode}: {version}, task {queue[0]['id']} -> {shot} ({time.monotonic() - started:.0f} s)")
                    if index == 0:
                        browser.driver.get(f"{label_studio.url}/projects/{project['id']}/data?tab={view}")
                        shot = browser.screenshot(args.out / "data_manager.png", settle_s=5)
                        print(f"Data Manager, view {view} -> {shot}")
        finally:
            backend.stop()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
