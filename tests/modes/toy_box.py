"""A toy query mode in one file, as a user would add one: the bounding box of a superpixel as a rectangle query,
answered with one class. The tests register it and run it through predict, annotation, target and a simulated
round (``tests/modes/test_registry.py``)."""

from __future__ import annotations

import numpy as np

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget, query_answers, value_of
from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.labeling.render import grid_scale, with_empty_answers
from ls_al_backend.labeling.results import Result, new_region_id
from ls_al_backend.modes import ImageLabels, Queries, QueryModeHandler, Unit
from ls_al_backend.modes.superpixel_dominant import dominant_class

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="query"/></RectangleLabels>
  <Choices name="box_class" toName="image" perRegion="true" choice="single">
    <Choice value="Sky"/><Choice value="Road"/><Choice value="Car"/>
  </Choices>
</View>"""


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of a boolean mask, bottom and right exclusive."""
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


class SuperpixelBox(QueryModeHandler):
    name = "superpixel_box"
    query_tag = "RectangleLabels"
    acquisition_defaults = {"label_mode": "dominant", "superpixel_method": "slic", "top_k_regions": 3}
    unit = Unit.REGION

    def query_results(self, config: LabelTags, queries: Queries, image_size: tuple[int, int]) -> list[Result]:
        if queries.superpixels is None:
            return []
        (height, width), (scale_y, scale_x) = image_size, grid_scale(image_size, queries.grid_size)
        boxes = []
        for region, score in queries.regions:
            top, left, bottom, right = bounding_box(queries.superpixels == region)
            x, y = 100 * left * scale_x / width, 100 * top * scale_y / height
            box = {"x": x, "y": y, "width": 100 * (right - left) * scale_x / width}
            box |= {"height": 100 * (bottom - top) * scale_y / height, "rotation": 0, "rectanglelabels": ["query"]}
            boxes.append(
                {
                    "id": new_region_id(),
                    "from_name": config.query.name,
                    "to_name": config.image_tag,
                    "type": "rectanglelabels",
                    "original_width": width,
                    "original_height": height,
                    "value": box,
                    "score": score,
                }
            )
        return with_empty_answers(config, boxes)

    def target(self, results: list[dict], config: LabelTags, height: int, width: int) -> LabelTarget:
        labels = np.full((height, width), IGNORE, dtype=np.int64)
        for region, (index,) in query_answers(results, config):
            box = value_of(region)
            left, top = round(box["x"] * width / 100), round(box["y"] * height / 100)
            right, bottom = left + round(box["width"] * width / 100), top + round(box["height"] * height / 100)
            labels[top:bottom, left:right] = index
        return LabelTarget(labels=labels)

    def unit_clicks(self, gt: np.ndarray, superpixels: np.ndarray | None, num_classes: int, erosion: int) -> np.ndarray:
        return np.ones(int(superpixels.max()) + 1)

    def simulate(
        self, gt: np.ndarray, revealed: ImageLabels, superpixels: np.ndarray | None, num_classes: int, erosion: int
    ) -> tuple[LabelTarget, int]:
        labels = np.full(gt.shape, IGNORE, dtype=np.int64)
        for region in revealed.regions:
            top, left, bottom, right = bounding_box(superpixels == region)
            majority = dominant_class(gt[top:bottom, left:right].ravel(), num_classes)
            if majority is not None:
                labels[top:bottom, left:right] = majority
        return LabelTarget(labels), len(revealed.regions)
