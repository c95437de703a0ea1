"""The simulated annotator: what a person answering the queries of a run's mode produces from the ground truth,
and what it costs them in clicks and in editor actions. Each mode's answer and cost live with its handler
(:mod:`ls_al_backend.modes`, ``simulate``, ``unit_clicks`` and ``select_actions``); this module applies them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ls_al_backend.labeling.annotations import LabelTarget
from ls_al_backend.modes import ImageLabels, handler_for
from ls_al_backend.simulation.data import Example

#: Editor actions that submit one task (``ctrl+enter``; the editor then opens the next task).
SUBMIT_ACTIONS = 1


class Answer(NamedTuple):
    """What the simulated annotator produces for one image and what it costs."""

    target: LabelTarget
    clicks: int
    """The mode's clicks: classes ticked, points clicked, outline vertices of a whole image."""
    queries: int
    """Queries answered, each ``select_actions`` editor actions more (regions, points, outlined regions)."""


def build_target(
    example: Example,
    revealed: ImageLabels,
    superpixels: np.ndarray | None,
    mode: str,
    num_classes: int,
    erosion: int,
    outlined_gt: np.ndarray | None = None,
) -> Answer:
    """The annotator's :class:`Answer` for one image from what was revealed in query mode ``mode``. With
    ``outlined_gt`` (the mask at the size the annotator outlines a whole image, see
    ``SimulationConfig.outline_resolution``) the clicks and queries are counted on it, the target still comes from
    ``example.gt``."""
    handler = handler_for(mode)
    target, clicks = handler.simulate(example.gt, revealed, superpixels, num_classes, erosion)
    if outlined_gt is None:
        return Answer(target, clicks, handler.queries_answered(example.gt, revealed, num_classes))
    _, clicks = handler.simulate(outlined_gt, revealed, None, num_classes, erosion)
    return Answer(target, clicks, handler.queries_answered(outlined_gt, revealed, num_classes))


def editor_actions(mode: str, clicks: float, queries: int, images: int) -> float:
    """Key presses and mouse clicks a person spends in Label Studio's editor, the cost measured in the browser
    test: the mode's ``clicks`` (classes ticked, outline vertices of whole images), ``select_actions`` per answered
    query (``alt+.`` selecting a query region; a whole image's outlined region: its class hotkey and the closing
    click) and one submit per labelled image. Higher = more work; cumulative when the inputs are."""
    return float(clicks + handler_for(mode).select_actions * queries + SUBMIT_ACTIONS * images)
