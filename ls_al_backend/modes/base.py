"""What a query mode is: :class:`QueryModeHandler`, the one place that says what its mode means everywhere.

A handler answers, for its mode: which label config it serves (its query tag and choice), what acquisition
asks for by default, how the queries of one prediction render as Label Studio results, how an annotation
becomes a training target, whether training needs the partial-label (candidate set) losses, and, for the
benchmark, what a simulated annotator answers from the ground truth and what each query costs in clicks.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ls_al_backend.labeling.annotations import LabelTarget
from ls_al_backend.labeling.config import LabelTags
from ls_al_backend.labeling.results import Result


class Unit(enum.StrEnum):
    """What one query of a mode is, in the simulation: a whole image, a superpixel region or a pixel."""

    IMAGE = "image"
    REGION = "region"
    PIXEL = "pixel"


@dataclass(frozen=True)
class Queries:
    """What acquisition proposes on one image, on its analysis grid of ``grid_size`` (h, w).

    ``regions``: ``(superpixel id, score)``, ``pixels``: ``(row, col, score)``, each by decreasing score, scores
    in [0, 1] (higher = more informative); ``superpixels``: the ``[h, w]`` region ids, or None.
    """

    regions: list[tuple[int, float]]
    pixels: list[tuple[int, int, float]]
    superpixels: np.ndarray | None
    grid_size: tuple[int, int]


@dataclass
class ImageLabels:
    """What the simulated annotator revealed for one pool image, in reveal order."""

    dense: bool = False
    regions: list[int] = field(default_factory=list)
    pixels: list[tuple[int, int]] = field(default_factory=list)


class QueryModeHandler(ABC):
    """One query mode. Subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str]
    """The mode's name: a :class:`~ls_al_backend.modes.registry.QueryMode` value for the built-in modes."""
    query_tag: ClassVar[str | None] = None
    """Tag type of the label config's query tag (``"PolygonLabels"``); None for a mode without queries."""
    multiple_choice: ClassVar[bool] = False
    """The per-region Choices tag takes several classes (``choice="multiple"``)."""
    acquisition_defaults: ClassVar[Mapping[str, Any]] = {}
    """What the mode asks of the acquisition engine unless ``ACQUISITION`` or the request say otherwise."""
    shows_layers: ClassVar[bool] = False
    """The class masks and the uncertainty overlay are drawn by default (``CLASS_MASKS`` and
    ``UNCERTAINTY_OVERLAY`` = ``auto``, from the first trained version on): what an annotator corrects or scans.
    Off in a query mode, where the queries are the annotator's job and masks would hide the photo."""
    partial_labels: ClassVar[bool] = False
    """Targets carry candidate sets per region: training adds the partial-label losses (MulActSeg)."""
    unit: ClassVar[Unit]
    """What one query is in the simulation."""
    select_actions: ClassVar[int] = 1
    """Editor actions per answered query besides its clicks (:meth:`queries_answered`): ``alt+.`` (Cycle Regions)
    that selects a query region before its classes are ticked, as measured in Label Studio by
    ``tests/e2e/test_browser.py``. The simulation's editor actions
    (:func:`~ls_al_backend.simulation.annotator.editor_actions`) add them to the clicks."""

    def query_results(self, config: LabelTags, queries: Queries, image_size: tuple[int, int]) -> list[Result]:
        """The prediction's query regions for an image of ``image_size`` (H, W), each with its empty answer."""
        return []

    @abstractmethod
    def target(self, results: list[dict], config: LabelTags, height: int, width: int) -> LabelTarget:
        """The training target of an ``height x width`` image from the label-carrying results of one annotation
        (:func:`~ls_al_backend.labeling.annotations.label_results`); raises ``MalformedAnnotation``."""

    @abstractmethod
    def unit_clicks(self, gt: np.ndarray, superpixels: np.ndarray | None, num_classes: int, erosion: int) -> np.ndarray:
        """Clicks the simulated annotator spends on each query unit of an image whose ground truth is ``gt``
        ``[H, W]`` (void = IGNORE): ``[1]`` for an image unit, ``[R]`` for the regions of ``superpixels``, ``[H * W]``
        for pixels."""

    def queries_answered(self, gt: np.ndarray, revealed: ImageLabels, num_classes: int) -> int:
        """Queries the simulated annotator answers on one image, each costing ``select_actions`` editor actions
        besides its clicks: the revealed regions or pixels (a whole image: the regions it outlines)."""
        return len(revealed.regions) + len(revealed.pixels)

    @abstractmethod
    def simulate(
        self, gt: np.ndarray, revealed: ImageLabels, superpixels: np.ndarray | None, num_classes: int, erosion: int
    ) -> tuple[LabelTarget, int]:
        """What the simulated annotator produces for the units ``revealed`` of an image with ground truth ``gt``,
        and the clicks it spent. ``erosion``: pixels of a region's boundary whose classes an annotator overlooks
        (multi-class answers)."""
