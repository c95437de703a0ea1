"""Label-config parsing: a project's class names and the tags that play each role (no query mode: which mode
serves a config is for :mod:`ls_al_backend.modes` to decide from these tags).

Nothing here knows tag names in advance. Roles are read from the config's structure:

- the ``Image`` tag (exactly one) is what every other tag points at;
- a ``BrushLabels`` tag with two or more labels carries the classes (the annotation layer in dense
  mode, the model's pre-annotation layer in the query modes);
- a ``BrushLabels`` tag with exactly one label is the uncertainty overlay (optional);
- a one-label tag of a kind some query mode draws (``PolygonLabels`` for superpixels, ``KeyPointLabels`` for
  pixels) draws query regions;
- a ``Choices`` tag with ``perRegion="true"`` holds the class answer for a query region (``choice="single"`` or
  ``"multiple"``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Collection
from dataclasses import dataclass


class UnsupportedLabelConfig(ValueError):
    """The label config cannot be served by this backend; the message says why and what would work."""


@dataclass(frozen=True)
class TagRef:
    """A control tag: its ``name`` (``from_name`` in results), the labels it offers and its ``kind``, the tag's
    type (``"PolygonLabels"``; a result of it has ``type`` ``kind.lower()``)."""

    name: str
    labels: tuple[str, ...]
    kind: str = ""


@dataclass(frozen=True)
class LabelTags:
    """The tags of a project's label config, by role (see the module docstring)."""

    image_tag: str
    """``name`` of the Image tag (``to_name`` of every result)."""
    image_key: str
    """Key of the image URL in ``task["data"]`` (``$image`` -> ``image``)."""
    class_names: tuple[str, ...]
    class_brush: TagRef | None
    """BrushLabels tag with the classes; always present in dense mode."""
    overlay: TagRef | None
    """Single-label BrushLabels tag for the graded uncertainty overlay."""
    query: TagRef | None
    """The one-label tag that draws query regions (``PolygonLabels``, ``KeyPointLabels``, ...); None: dense."""
    region_choices: str | None
    """Name of the per-region Choices tag holding the class answer of a query region."""
    multiple_choice: bool = False
    """The per-region Choices tag takes several classes (``choice="multiple"``)."""

    @property
    def query_type(self) -> str | None:
        """Result ``type`` of query regions (``polygonlabels``, ``keypointlabels``, ...) or None."""
        return self.query.kind.lower() if self.query is not None else None


SUPPORTED = (
    "Supported configs: one Image tag with a BrushLabels tag listing at least two classes (dense brush), "
    "optionally a one-label BrushLabels tag for the uncertainty overlay, and for query modes a one-label "
    'PolygonLabels (superpixels) or KeyPointLabels (pixels) tag plus a Choices tag with perRegion="true" '
    "listing the classes. See label_configs/ for examples."
)


def read_label_tags(xml: str, query_kinds: Collection[str]) -> LabelTags:
    """The tags of a Label Studio label config by role, query tags being one-label tags of ``query_kinds`` (for
    instance ``{"PolygonLabels", "KeyPointLabels"}``, the tags some query mode draws); raise
    :class:`UnsupportedLabelConfig` if their structure cannot be served. :func:`ls_al_backend.modes.parse_label_config`
    then picks the query mode."""
    if not isinstance(xml, str) or not xml.strip():
        raise UnsupportedLabelConfig("the label config is empty")
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        raise UnsupportedLabelConfig("the label config must not contain a DOCTYPE or entity declarations")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        raise UnsupportedLabelConfig(f"the label config is not valid XML: {error}") from None

    images = [el for el in root.iter() if el.tag == "Image"]
    if len(images) != 1:
        raise UnsupportedLabelConfig(f"expected exactly one Image tag, found {len(images)}. {SUPPORTED}")
    image = images[0]
    image_tag = image.get("name", "")
    image_value = image.get("value", "")
    if not image_tag or not image_value.startswith("$") or len(image_value) < 2:
        raise UnsupportedLabelConfig('the Image tag needs a name and a value like "$image"')

    def controls(tag: str) -> list[TagRef]:
        found = []
        for el in root.iter(tag):
            if el.get("toName") != image_tag:
                continue
            name = el.get("name", "")
            if not name:
                raise UnsupportedLabelConfig(f"a {tag} tag has no name")
            labels = tuple(child.get("value", "") for child in el if child.tag in ("Label", "Choice"))
            if any(not label for label in labels):
                raise UnsupportedLabelConfig(f"{tag} {name!r} has a label without a value")
            found.append(TagRef(name, labels, tag))
        return found

    brushes = controls("BrushLabels")
    class_brushes = [tag for tag in brushes if len(tag.labels) >= 2]
    overlays = [tag for tag in brushes if len(tag.labels) == 1]
    if len(class_brushes) > 1:
        names = ", ".join(tag.name for tag in class_brushes)
        raise UnsupportedLabelConfig(f"found several BrushLabels tags with classes ({names}); keep one. {SUPPORTED}")
    if len(overlays) > 1:
        names = ", ".join(tag.name for tag in overlays)
        raise UnsupportedLabelConfig(f"found several one-label BrushLabels overlay tags ({names}); keep one")
    class_brush = class_brushes[0] if class_brushes else None
    overlay = overlays[0] if overlays else None

    queries = [tag for kind in sorted(query_kinds) for tag in controls(kind)]
    if len(queries) > 1:
        raise UnsupportedLabelConfig(
            f"found several query tags ({', '.join(f'{tag.kind} {tag.name!r}' for tag in queries)}); keep one"
        )
    query = queries[0] if queries else None
    if query is not None and len(query.labels) != 1:
        raise UnsupportedLabelConfig(f"the query tag {query.name!r} must have exactly one label, e.g. 'query'")

    region_choice_elements = [
        el for el in root.iter("Choices") if el.get("toName") == image_tag and el.get("perRegion") == "true"
    ]
    if len(region_choice_elements) > 1:
        raise UnsupportedLabelConfig("found several per-region Choices tags; keep one")

    if query is None:
        if region_choice_elements:
            raise UnsupportedLabelConfig(
                f"a per-region Choices tag needs a query tag to attach to: one of {', '.join(sorted(query_kinds))}"
            )
        if class_brush is None:
            raise UnsupportedLabelConfig(f"no BrushLabels tag with at least two classes. {SUPPORTED}")
        return LabelTags(
            image_tag=image_tag,
            image_key=image_value[1:],
            class_names=class_brush.labels,
            class_brush=class_brush,
            overlay=overlay,
            query=None,
            region_choices=None,
        )

    if not region_choice_elements:
        raise UnsupportedLabelConfig(
            f'the query tag {query.name!r} needs a Choices tag with perRegion="true" listing the classes'
        )
    choices_el = region_choice_elements[0]
    choices = controls("Choices")
    region_choices = next(tag for tag in choices if tag.name == choices_el.get("name"))
    if len(region_choices.labels) < 2:
        raise UnsupportedLabelConfig(f"the per-region Choices tag {region_choices.name!r} needs at least two classes")
    if class_brush is not None and set(class_brush.labels) != set(region_choices.labels):
        raise UnsupportedLabelConfig(
            f"the classes of BrushLabels {class_brush.name!r} and Choices {region_choices.name!r} differ"
        )
    return LabelTags(
        image_tag=image_tag,
        image_key=image_value[1:],
        class_names=region_choices.labels,
        class_brush=class_brush,
        overlay=overlay,
        query=query,
        region_choices=region_choices.name,
        multiple_choice=choices_el.get("choice", "single") == "multiple",
    )
