"""The query modes by name, and what picks one: a label config's tags (:func:`parse_label_config`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ls_al_backend.labeling.annotations import LabelTarget, label_results
from ls_al_backend.labeling.config import LabelTags, UnsupportedLabelConfig, read_label_tags
from ls_al_backend.modes.base import QueryModeHandler


class QueryMode(enum.StrEnum):
    """The built-in query modes: how annotators answer, which decides what ``/predict`` renders and how training
    reads labels. Each has its handler module in :mod:`ls_al_backend.modes`."""

    DENSE_BRUSH = "dense_brush"
    SUPERPIXEL_DOMINANT = "superpixel_dominant"
    SUPERPIXEL_MULTICLASS = "superpixel_multiclass"
    SPARSE_POINTS = "sparse_points"


_HANDLERS: dict[str, QueryModeHandler] = {}


def register(handler: QueryModeHandler) -> QueryModeHandler:
    """Add a mode. Its name, and its label-config signature (query tag, single or multiple choice), must be new."""
    if handler.name in _HANDLERS:
        raise ValueError(f"query mode '{handler.name}' is registered already")
    signature = (handler.query_tag, handler.multiple_choice)
    for other in _HANDLERS.values():
        if (other.query_tag, other.multiple_choice) == signature:
            raise ValueError(f"query mode '{handler.name}' serves the same label configs as '{other.name}'")
    _HANDLERS[handler.name] = handler
    return handler


def unregister(name: str) -> None:
    """Remove a mode (for tests that add one)."""
    _HANDLERS.pop(name, None)


def registered() -> tuple[QueryModeHandler, ...]:
    """Every mode, in registration order."""
    return tuple(_HANDLERS.values())


def handler_for(mode: str) -> QueryModeHandler:
    """The handler of the mode named ``mode``; ValueError naming the known modes if there is none."""
    try:
        return _HANDLERS[mode]
    except KeyError:
        raise ValueError(f"query mode {mode!r} is not one of: {', '.join(_HANDLERS)}") from None


def _signature(handler: QueryModeHandler) -> str:
    if handler.query_tag is None:
        return f"{handler.name}: no query tag"
    choice = "multiple" if handler.multiple_choice else "single"
    return f'{handler.name}: {handler.query_tag} with choice="{choice}"'


def mode_of(tags: LabelTags) -> QueryModeHandler:
    """The handler whose query tag and choice match the config's; :class:`UnsupportedLabelConfig` if none does."""
    kind = tags.query.kind if tags.query is not None else None
    multiple = tags.multiple_choice if tags.query is not None else False
    for handler in _HANDLERS.values():
        if handler.query_tag == kind and handler.multiple_choice == multiple:
            return handler
    choice = "multiple" if multiple else "single"
    for handler in _HANDLERS.values():
        if handler.query_tag == kind:  # the tag is right, the choice is not
            takes = "several classes" if handler.multiple_choice else "one class"
            other = "multiple" if handler.multiple_choice else "single"
            raise UnsupportedLabelConfig(
                f'{kind} queries take {takes} per region (mode {handler.name}): use choice="{other}"'
            )
    supported = "; ".join(_signature(handler) for handler in _HANDLERS.values())
    raise UnsupportedLabelConfig(f'no query mode serves {kind} queries with choice="{choice}". Modes: {supported}')


@dataclass(frozen=True)
class LabelConfig(LabelTags):
    """A project's label config: its tags by role and the query mode that serves it."""

    mode: str = field(kw_only=True)
    """Name of the query mode (a :class:`QueryMode` value for the built-in modes)."""

    @property
    def handler(self) -> QueryModeHandler:
        return handler_for(self.mode)


def parse_label_config(xml: str) -> LabelConfig:
    """Parse a Label Studio label config and pick its query mode; :class:`UnsupportedLabelConfig` if it cannot
    be served (the message says why and what would work)."""
    tags = read_label_tags(xml, {handler.query_tag for handler in _HANDLERS.values() if handler.query_tag})
    return LabelConfig(**{name: getattr(tags, name) for name in tags.__dataclass_fields__}, mode=mode_of(tags).name)


def annotation_to_target(result: list[dict], config: LabelConfig, height: int, width: int) -> LabelTarget:
    """Turn one annotation's ``result`` list into the training target of an ``height x width`` image, by the
    config's mode. Raises ``MalformedAnnotation`` for results that do not fit the label config: unknown tags or
    classes, wrong result types, malformed RLE or points, or a size other than the image's."""
    return config.handler.target(label_results(result, config, height, width), config, height, width)
