"""What an annotator submits in the end-to-end tests: the label config they annotate with and one brush stroke."""

from __future__ import annotations

from typing import Any

import numpy as np
from label_studio_sdk.converter.brush import mask2rle

from tests.e2e.harness import LABEL_CONFIGS, ConfigTags, TinyImage


def annotation_config() -> str:
    """The dense brush config when there is one (a person paints classes with the brush), else the first."""
    dense = [path for path in LABEL_CONFIGS if "dense" in path.stem]
    return (dense or LABEL_CONFIGS)[0].read_text()


def brush_stroke(tags: ConfigTags, image: TinyImage) -> dict[str, Any]:
    """A result shaped like the editor's for one brush stroke: a thick diagonal band of the first class."""
    class_tags = [name for name in tags.of_type("BrushLabels") if len(tags.controls[name][2]) > 1]
    assert class_tags, "the label config has no BrushLabels tag with classes"
    from_name = class_tags[0]
    _, to_name, labels = tags.controls[from_name]
    rows, cols = np.mgrid[: image.height, : image.width]
    mask = np.where(np.abs(rows * image.width - cols * image.height) < 6 * image.width, 255, 0).astype(np.uint8)
    return {
        "id": "stroke0001",
        "from_name": from_name,
        "to_name": to_name,
        "type": "brushlabels",
        "origin": "manual",
        "original_width": image.width,
        "original_height": image.height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask2rle(mask), "brushlabels": [sorted(labels)[0]]},
    }
