"""The simulated annotator: what a person answering the queries of a run's mode produces from the ground truth,
and what it costs them in clicks. Each mode's answer and cost live with its handler (:mod:`ls_al_backend.modes`,
``simulate`` and ``unit_clicks``); this module applies them to one pool image.
"""

from __future__ import annotations

import numpy as np

from ls_al_backend.labeling.annotations import LabelTarget
from ls_al_backend.modes import ImageLabels, handler_for
from ls_al_backend.simulation.data import Example


def build_target(
    example: Example, revealed: ImageLabels, superpixels: np.ndarray | None, mode: str, num_classes: int, erosion: int
) -> tuple[LabelTarget, int]:
    """The :class:`LabelTarget` of one image from what was revealed in query mode ``mode``, and the annotator's
    clicks for it."""
    return handler_for(mode).simulate(example.gt, revealed, superpixels, num_classes, erosion)
