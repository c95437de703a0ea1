"""Query modes, one handler module each, found by name (:func:`handler_for`) or by a label config's tags
(:func:`parse_label_config`). The rest of the code asks the handler and never branches on the mode.

Adding a mode: a module with a :class:`QueryModeHandler` subclass that calls :func:`register` on itself, imported
below (README, "Adding a query mode").
"""

# The built-in modes register themselves on import, in this order.
from ls_al_backend.modes import dense_brush, sparse_points, superpixel_dominant, superpixel_multiclass  # noqa: E402, I001
from ls_al_backend.modes.base import ImageLabels, Queries, QueryModeHandler, Unit
from ls_al_backend.modes.registry import (
    LabelConfig,
    QueryMode,
    annotation_to_target,
    handler_for,
    mode_of,
    parse_label_config,
    register,
    registered,
    unregister,
)

__all__ = [
    "ImageLabels",
    "LabelConfig",
    "Queries",
    "QueryMode",
    "QueryModeHandler",
    "Unit",
    "annotation_to_target",
    "dense_brush",
    "handler_for",
    "mode_of",
    "parse_label_config",
    "register",
    "registered",
    "sparse_points",
    "superpixel_dominant",
    "superpixel_multiclass",
    "unregister",
]
