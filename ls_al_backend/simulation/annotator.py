"""The simulated annotator: what a person answering the queries of a run's mode produces from the ground truth,
and what it costs them in clicks and in editor actions. Each mode's answer and cost live with its handler
(:mod:`ls_al_backend.modes`, ``simulate``, ``unit_clicks`` and ``select_actions``); this module applies them.
"""

from __future__ import annotations

import numpy as np

from ls_al_backend.labeling.annotations import LabelTarget
from ls_al_backend.modes import ImageLabels, handler_for
from ls_al_backend.simulation.data import Example

#: Editor actions that submit one task (``ctrl+enter``; the editor then opens the next task).
SUBMIT_ACTIONS = 1


def build_target(
    example: Example, revealed: ImageLabels, superpixels: np.ndarray | None, mode: str, num_classes: int, erosion: int
) -> tuple[LabelTarget, int]:
    """The :class:`LabelTarget` of one image from what was revealed in query mode ``mode``, and the annotator's
    clicks for it."""
    return handler_for(mode).simulate(example.gt, revealed, superpixels, num_classes, erosion)


def editor_actions(mode: str, clicks: float, queries: int, images: int) -> float:
    """Key presses and mouse clicks a person spends in Label Studio's editor, the cost measured in the browser
    test: the mode's ``clicks`` (classes ticked, outline vertices of whole images), one selecting action per query
    (``select_actions``) and one submit per labelled image. Higher = more work; cumulative when the inputs are."""
    return float(clicks + handler_for(mode).select_actions * queries + SUBMIT_ACTIONS * images)
