"""Dense brush: the annotator paints (or corrects) every class on the whole image; no queries are drawn.

Annotation -> target: every ``brushlabels`` region on the class tag paints its class (later regions win).
Simulated annotator (whole image, Cai et al., CVPR 2021): it outlines every ground-truth region as a polygon;
regions of at least :data:`POLYGON_MIN_REGION` pixels get their class, smaller ones and void stay unlabelled.
Cost: the outlines' vertices after Douglas-Peucker at :data:`POLYGON_TOLERANCE` pixels (:func:`trace_polygons`);
in the editor each outlined region also takes its class hotkey and the click that closes it (``select_actions``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage import measure

from ls_al_backend.labeling.annotations import (
    IGNORE,
    LabelTarget,
    MalformedAnnotation,
    brush_mask,
    class_index,
    describe,
    single_label,
)
from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.modes.base import ImageLabels, QueryModeHandler, Unit
from ls_al_backend.modes.registry import QueryMode, register

#: Regions smaller than this many pixels are not traced (they stay unlabelled), and a traced outline keeps a vertex
#: wherever it leaves the boundary by this many pixels.
POLYGON_MIN_REGION = 20
POLYGON_TOLERANCE = 1.5


class Outlines(NamedTuple):
    """What outlining every ground-truth region of an image produces (:func:`trace_polygons`)."""

    labels: np.ndarray
    """``[H, W]``: the traced regions' classes, IGNORE elsewhere (void and regions too small to trace)."""
    vertices: int
    """Polygon vertices over every outline, holes included: the clicks."""
    regions: int
    """Regions outlined: each is one polygon drawn in the editor (its class picked, its outline closed)."""


def trace_polygons(gt: np.ndarray, num_classes: int) -> Outlines:
    """What an annotator who outlines every ground-truth region of an image as a polygon produces, and its cost.

    Every connected region (8-connected) of one class with at least :data:`POLYGON_MIN_REGION` pixels is traced;
    its outline (and those of its holes) simplified with Douglas-Peucker at :data:`POLYGON_TOLERANCE` pixels costs
    one click per vertex.
    """
    labels = np.full(gt.shape, IGNORE, dtype=np.int64)
    vertices = regions = 0
    for class_id in range(num_classes):
        components, count = ndimage.label(gt == class_id, structure=np.ones((3, 3), dtype=bool))
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())
        for component in np.flatnonzero(sizes >= POLYGON_MIN_REGION):
            if component == 0:
                continue
            mask = components == component
            labels[mask] = class_id
            regions += 1
            rows, cols = np.nonzero(mask)
            window = np.pad(mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], 1).astype(np.float32)
            for contour in measure.find_contours(window, 0.5):
                polygon = measure.approximate_polygon(contour, POLYGON_TOLERANCE)
                vertices += max(3, len(polygon) - 1)  # closed: the last point repeats the first
    return Outlines(labels, vertices, regions)


class DenseBrush(QueryModeHandler):
    name = QueryMode.DENSE_BRUSH
    query_tag = None
    #: Images in random order: in the CamVid benchmark whole images in random order beat the model's order (entropy,
    #: with or without ClassBal) by 7.6-7.8 mIoU at equal clicks with about 20 images (README, "Smaller
    #: superpixels") and tied with it (-1.1) with about 5. The masks and the uncertainty overlay still come from
    #: the model.
    acquisition_defaults = {"superpixel_method": "none", "top_k_regions": 0, "task_order": "random"}
    shows_layers = True  # the annotator corrects the masks, guided by the overlay
    unit = Unit.IMAGE
    select_actions = 2  # per outlined region: its class hotkey before the outline, the click on the first vertex

    def target(self, results: list[dict], config: LabelTags, height: int, width: int) -> LabelTarget:
        labels = np.full((height, width), IGNORE, dtype=np.int64)
        for result in results:
            if result.get("type") != "brushlabels":
                raise MalformedAnnotation(f"{describe(result)}: the class tag expects 'brushlabels' results")
            index = class_index(config, single_label(result, "brushlabels"), result)
            labels[brush_mask(result, height, width)] = index
        return LabelTarget(labels=labels)

    def unit_clicks(self, gt: np.ndarray, superpixels: np.ndarray | None, num_classes: int, erosion: int) -> np.ndarray:
        return np.array([trace_polygons(gt, num_classes).vertices], dtype=np.float64)

    def simulate(
        self, gt: np.ndarray, revealed: ImageLabels, superpixels: np.ndarray | None, num_classes: int, erosion: int
    ) -> tuple[LabelTarget, int]:
        if not revealed.dense:
            return LabelTarget(np.full(gt.shape, IGNORE, dtype=np.int64)), 0
        outlines = trace_polygons(gt, num_classes)
        return LabelTarget(outlines.labels), outlines.vertices

    def queries_answered(self, gt: np.ndarray, revealed: ImageLabels, num_classes: int) -> int:
        return trace_polygons(gt, num_classes).regions if revealed.dense else 0


register(DenseBrush())
