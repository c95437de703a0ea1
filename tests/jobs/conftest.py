"""A small Label Studio project (served by the fake studio) built from real CamVid images and masks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ls_al_backend.config import Settings
from ls_al_backend.labeling.results import brush_result
from ls_al_backend.modes import parse_label_config
from tests.conftest import REPO_ROOT, camvid_root
from tests.fake_studio import LEGACY_TOKEN, FakeStudio

DENSE_XML = (REPO_ROOT / "label_configs" / "dense_brush.xml").read_text()
SIZE = (64, 48)  # width, height of the tiny task images
PROJECT = "5"


def brush_annotation(mask: np.ndarray, annotation_id: int) -> dict:
    """A person's dense annotation of a CamVid mask, as Label Studio stores it (void pixels left unpainted)."""
    config = parse_label_config(DENSE_XML)
    result = [
        brush_result("label", "image", config.class_names[int(c)], (mask == c).astype(np.uint8) * 255, 1.0)
        for c in np.unique(mask)
        if c < len(config.class_names)
    ]
    for region in result:
        region.pop("score")
        region["origin"] = "manual"
    return {
        "id": annotation_id,
        "result": result,
        "was_cancelled": False,
        "created_at": "2026-11-21T10:00:00Z",
        "updated_at": "2026-11-21T10:00:00Z",
    }


def make_project(labelled: int, unlabelled: int) -> tuple[dict[str, bytes], list[dict]]:
    """Files and tasks of a project whose first ``labelled`` tasks carry an annotation."""
    stems = sorted(path.stem for path in (camvid_root() / "train" / "images").glob("*.jpg"))[: labelled + unlabelled]
    files, tasks = {}, []
    for index, stem in enumerate(stems, start=1):
        image = Image.open(camvid_root() / "train" / "images" / f"{stem}.jpg").convert("RGB").resize(SIZE)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path = f"/data/upload/{PROJECT}/{stem}.png"
        files[path] = buffer.getvalue()
        annotations = []
        if index <= labelled:
            mask = Image.open(camvid_root() / "train" / "masks" / f"{stem}.png").resize(SIZE, Image.NEAREST)
            annotations.append(brush_annotation(np.asarray(mask), 100 + index))
        tasks.append({"id": index, "project": int(PROJECT), "data": {"image": path}, "annotations": annotations})
    return files, tasks


@pytest.fixture
def studio():
    files, tasks = make_project(labelled=3, unlabelled=4)
    with FakeStudio(files, tasks) as server:
        yield server


def job_settings(data_dir: Path, studio_url: str, **overrides) -> Settings:
    """Settings for fast rounds: one epoch on 64x64 crops, two MC samples."""
    values = {
        "data_dir": data_dir,
        "label_studio_url": studio_url,
        "label_studio_api_key": LEGACY_TOKEN,
        "train_epochs": 1,
        "train_min_steps": 0,
        "train_crop_size": 64,
        "train_batch_size": 2,
        "mc_samples": 2,
        "score_chunk_size": 3,
        "studio_backoff_s": 0.01,
        **overrides,
    }
    return Settings.from_env({}, **values)
