"""Reading Label Studio annotations (pure numpy): the training target type, which annotation of a task counts,
which of its results carry labels, the answers to query regions, and the geometry of brush, polygon and keypoint
results. What a query mode makes of them is its handler's (:mod:`ls_al_backend.modes`); anything that does not
fit the label config raises :class:`MalformedAnnotation`, and callers log it and skip the task.

Coordinates: Label Studio gives positions in percent of ``original_width`` / ``original_height``. Pixel
``(row, col)`` covers ``[col, col + 1) x [row, row + 1)`` of the continuous image plane; a pixel belongs to a
polygon when its centre lies inside, and a keypoint at ``(x%, y%)`` labels pixel
``(floor(y / 100 * H), floor(x / 100 * W))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from skimage.draw import polygon as draw_polygon

from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.labeling.rle import rle_to_mask

IGNORE = -1
"""Label of pixels without a label (and region id of pixels outside every region)."""


class MalformedAnnotation(ValueError):
    """An annotation cannot be turned into training labels; the message says which result and why."""


@dataclass(frozen=True)
class LabelTarget:
    """Training target of one image.

    ``labels``: int64 ``[H, W]``, class index or :data:`IGNORE`.
    ``region_ids``: int64 ``[H, W]``, row of ``candidates`` or -1 (multi-class mode only, else None).
    ``candidates``: bool ``[R, C]``, the classes ticked for each region (multi-class mode only, else None).
    """

    labels: np.ndarray
    region_ids: np.ndarray | None = None
    candidates: np.ndarray | None = None

    @property
    def labelled_pixels(self) -> int:
        """Pixels carrying any supervision: a class label or membership of an answered region."""
        supervised = self.labels != IGNORE
        if self.region_ids is not None:
            supervised = supervised | (self.region_ids >= 0)
        return int(supervised.sum())


# --------------------------------------------------------------------------------------------------------------
# Choosing the annotation of a task


def _timestamp(value: Any) -> float:
    """Seconds since the epoch of an ISO 8601 string (naive means UTC); -inf when missing or unreadable."""
    if not isinstance(value, str) or not value:
        return -math.inf
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return -math.inf
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def latest_annotation(task: dict) -> dict | None:
    """The annotation to train on: the newest one that was not cancelled (skipped), or None.

    Newest means the latest ``updated_at``, then ``created_at``, then the highest ``id``.
    """
    annotations = [
        annotation
        for annotation in task.get("annotations") or []
        if isinstance(annotation, dict) and not annotation.get("was_cancelled", False)
    ]
    if not annotations:
        return None

    def key(annotation: dict) -> tuple[float, float, int]:
        identifier = annotation.get("id")
        return (
            _timestamp(annotation.get("updated_at")),
            _timestamp(annotation.get("created_at")),
            identifier if isinstance(identifier, int) else -1,
        )

    return max(annotations, key=key)


# --------------------------------------------------------------------------------------------------------------
# Result parsing helpers


def describe(result: dict) -> str:
    return f"result {result.get('id')!r} ({result.get('type')!r} on {result.get('from_name')!r})"


def value_of(result: dict) -> dict:
    value = result.get("value")
    if not isinstance(value, dict):
        raise MalformedAnnotation(f"{describe(result)} has no 'value' object")
    return value


def _check_size(result: dict, height: int, width: int) -> None:
    """Results with a geometry carry the image size they were drawn on; it must be the image's size."""
    if "original_width" not in result and "original_height" not in result:
        return
    size = (result.get("original_height"), result.get("original_width"))
    if size != (height, width):
        raise MalformedAnnotation(
            f"{describe(result)} was drawn on a {size[1]}x{size[0]} image (original_width x original_height), "
            f"but the image is {width}x{height}"
        )


def class_index(config: LabelTags, name: Any, result: dict) -> int:
    if not isinstance(name, str) or name not in config.class_names:
        raise MalformedAnnotation(f"{describe(result)} names unknown class {name!r}; known: {config.class_names}")
    return config.class_names.index(name)


def single_label(result: dict, key: str) -> str:
    labels = value_of(result).get(key)
    if not isinstance(labels, list) or len(labels) != 1:
        raise MalformedAnnotation(f"{describe(result)} must carry exactly one label in value.{key}, got {labels!r}")
    return labels[0]


def _percent(value: Any, what: str, result: dict) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedAnnotation(f"{describe(result)} has a non-numeric {what}: {value!r}")
    if not 0.0 <= value <= 100.0:
        raise MalformedAnnotation(f"{describe(result)} has {what} = {value} outside 0..100 percent")
    return float(value)


def brush_mask(result: dict, height: int, width: int) -> np.ndarray:
    """``[H, W]`` bool: the painted pixels (alpha > 0) of a ``brushlabels`` result."""
    value = value_of(result)
    if value.get("format", "rle") != "rle":
        raise MalformedAnnotation(f"{describe(result)} has brush format {value.get('format')!r}; expected 'rle'")
    rle = value.get("rle")
    if not isinstance(rle, list) or not all(isinstance(byte, int) and 0 <= byte <= 255 for byte in rle):
        raise MalformedAnnotation(f"{describe(result)} has no RLE byte list in value.rle")
    try:
        alpha = rle_to_mask(rle, height, width)
    except ValueError as error:
        raise MalformedAnnotation(f"{describe(result)} has malformed RLE: {error}") from None
    return alpha > 0


def polygon_mask(result: dict, height: int, width: int) -> np.ndarray:
    """``[H, W]`` bool: pixels whose centre lies inside a ``polygonlabels`` result."""
    points = value_of(result).get("points")
    if not isinstance(points, list) or len(points) < 3:
        raise MalformedAnnotation(f"{describe(result)} needs at least 3 points in value.points")
    xs, ys = [], []
    for point in points:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise MalformedAnnotation(f"{describe(result)} has a point that is not [x, y]: {point!r}")
        xs.append(_percent(point[0], "a point's x", result))
        ys.append(_percent(point[1], "a point's y", result))
    # Percent -> continuous image coordinates -> pixel-centre coordinates (centre of pixel i is at i + 0.5).
    rows = np.asarray(ys) / 100.0 * height - 0.5
    cols = np.asarray(xs) / 100.0 * width - 0.5
    mask = np.zeros((height, width), dtype=bool)
    rr, cc = draw_polygon(rows, cols, shape=(height, width))
    mask[rr, cc] = True
    return mask


def keypoint_pixel(result: dict, height: int, width: int) -> tuple[int, int]:
    """``(row, col)`` of the pixel under a ``keypointlabels`` result."""
    value = value_of(result)
    x = _percent(value.get("x"), "x", result)
    y = _percent(value.get("y"), "y", result)
    return min(height - 1, math.floor(y / 100.0 * height)), min(width - 1, math.floor(x / 100.0 * width))


# --------------------------------------------------------------------------------------------------------------
# The results that carry labels, and the answers to query regions


def label_results(result: list[dict], config: LabelTags, height: int, width: int) -> list[dict]:
    """The results of one annotation that carry labels, checked against the label config and the image size.

    Dropped: the uncertainty overlay, relations, and where the config has a query tag the class-brush layer (the
    model's pre-annotation, shown for context). Kept: the class brush's results (no query tag), else the query
    tag's and the per-region choices'. Raises :class:`MalformedAnnotation` for results of other tags, results
    pointing at another image, or drawn on an image of another size.
    """
    if not isinstance(result, list):
        raise MalformedAnnotation(f"an annotation result must be a list, got {type(result).__name__}")
    queried = config.query is not None
    dropped = {config.overlay.name} if config.overlay is not None else set()
    if queried and config.class_brush is not None:
        dropped.add(config.class_brush.name)
    used = {config.query.name, config.region_choices} if queried else {config.class_brush.name}

    kept: list[dict] = []
    for item in result:
        if not isinstance(item, dict):
            raise MalformedAnnotation(f"a result must be an object, got {type(item).__name__}")
        from_name = item.get("from_name")
        if from_name in dropped or item.get("type") == "relation":  # relations link regions; no labels in them
            continue
        if from_name not in used:
            raise MalformedAnnotation(f"{describe(item)} comes from a tag the label config does not use for labels")
        if item.get("to_name", config.image_tag) != config.image_tag:
            raise MalformedAnnotation(f"{describe(item)} points at {item.get('to_name')!r}, not {config.image_tag!r}")
        _check_size(item, height, width)
        kept.append(item)
    return kept


def query_answers(results: list[dict], config: LabelTags) -> list[tuple[dict, list[int]]]:
    """Query regions of :func:`label_results` paired with their chosen class indices (sorted), in result order;
    unanswered regions are left out. More than one class per region only where the config's choices are
    ``multiple``."""
    query_type = config.query_type
    regions: dict[str, dict] = {}
    answers: dict[str, list[int]] = {}
    for result in results:
        region_id = result.get("id")
        if not isinstance(region_id, str) or not region_id:
            raise MalformedAnnotation(f"{describe(result)} has no region id")
        if result.get("from_name") == config.query.name:
            if result.get("type") != query_type:
                raise MalformedAnnotation(f"{describe(result)}: the query tag expects {query_type!r} results")
            if region_id in regions:
                raise MalformedAnnotation(f"two query regions share the id {region_id!r}")
            regions[region_id] = result
        else:  # the per-region choices tag
            if result.get("type") != "choices":
                raise MalformedAnnotation(f"{describe(result)}: the per-region tag expects 'choices' results")
            chosen = value_of(result).get("choices")
            if not isinstance(chosen, list):
                raise MalformedAnnotation(f"{describe(result)} has no list in value.choices")
            if region_id in answers:
                raise MalformedAnnotation(f"two choices results answer the region {region_id!r}")
            indices = sorted({class_index(config, name, result) for name in chosen})
            if len(indices) > 1 and not config.multiple_choice:
                raise MalformedAnnotation(f"{describe(result)} ticks {len(indices)} classes; this mode takes one")
            answers[region_id] = indices
    # Choices whose region is gone (deleted by the annotator) and regions without an answer are ignored.
    return [(region, answers[rid]) for rid, region in regions.items() if answers.get(rid)]
