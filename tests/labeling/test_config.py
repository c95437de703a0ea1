"""Label-config parsing: the mode, classes and tag names come from the config's structure."""

from __future__ import annotations

from pathlib import Path

import pytest

from ls_al_backend.labeling.config import UnsupportedLabelConfig
from ls_al_backend.modes import QueryMode, parse_label_config
from tests.conftest import LABEL_CONFIGS

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip

EXPECTED_MODES = {
    "dense_brush.xml": QueryMode.DENSE_BRUSH,
    "superpixel_dominant.xml": QueryMode.SUPERPIXEL_DOMINANT,
    "superpixel_multiclass.xml": QueryMode.SUPERPIXEL_MULTICLASS,
    "sparse_points.xml": QueryMode.SPARSE_POINTS,
}


def test_there_is_one_shipped_config_per_query_mode() -> None:
    assert sorted(path.name for path in LABEL_CONFIGS) == sorted(EXPECTED_MODES)


@pytest.mark.parametrize("path", LABEL_CONFIGS, ids=lambda path: path.name)
def test_shipped_configs_parse_to_their_mode(path: Path) -> None:
    config = parse_label_config(path.read_text())
    assert config.mode is EXPECTED_MODES[path.name]
    assert config.class_names == CAMVID_CLASSES
    assert config.image_tag == "image" and config.image_key == "image"
    assert config.overlay is not None and config.overlay.labels == ("uncertainty",)
    assert config.class_brush is not None
    if config.mode is QueryMode.DENSE_BRUSH:
        assert config.query is None and config.region_choices is None and config.query_type is None
    else:
        assert config.query is not None and config.query.labels == ("query",)
        assert config.region_choices == "region_class"


def test_tag_names_are_read_not_assumed() -> None:
    xml = """<View><Image name="photo" value="$img_url"/>
      <BrushLabels name="paint" toName="photo"><Label value="cat"/><Label value="dog"/></BrushLabels>
      <BrushLabels name="heat" toName="photo"><Label value="unsure"/></BrushLabels></View>"""
    config = parse_label_config(xml)
    assert (config.image_tag, config.image_key) == ("photo", "img_url")
    assert config.class_brush.name == "paint" and config.overlay.name == "heat"
    assert config.class_names == ("cat", "dog")


def test_overlay_is_optional() -> None:
    config = parse_label_config(
        '<View><Image name="i" value="$i"/><BrushLabels name="b" toName="i"><Label value="a"/><Label value="b"/>'
        "</BrushLabels></View>"
    )
    assert config.mode is QueryMode.DENSE_BRUSH and config.overlay is None


def test_keypoints_with_polygon_choices_single_is_point_mode() -> None:
    xml = """<View><Image name="i" value="$i"/>
      <KeyPointLabels name="k" toName="i"><Label value="q"/></KeyPointLabels>
      <Choices name="c" toName="i" perRegion="true"><Choice value="a"/><Choice value="b"/></Choices></View>"""
    config = parse_label_config(xml)
    assert config.mode is QueryMode.SPARSE_POINTS and config.class_brush is None
    assert config.query_type == "keypointlabels"


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        ("", "empty"),
        ("<View><Image", "not valid XML"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><View/>', "DOCTYPE"),
        ("<View/>", "exactly one Image"),
        ('<View><Image name="i" value="$i"/><Image name="j" value="$j"/></View>', "exactly one Image"),
        ('<View><Image name="i" value="i"/></View>', "value like"),
        (
            '<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"><Label value="a"/>'
            "</RectangleLabels></View>",
            "no BrushLabels tag with at least two classes",
        ),
        (
            '<View><Image name="i" value="$i"/><PolygonLabels name="p" toName="i"><Label value="q"/>'
            "</PolygonLabels></View>",
            "perRegion",
        ),
        (
            '<View><Image name="i" value="$i"/><KeyPointLabels name="k" toName="i"><Label value="q"/></KeyPointLabels>'
            '<Choices name="c" toName="i" perRegion="true" choice="multiple"><Choice value="a"/><Choice value="b"/>'
            "</Choices></View>",
            'one class per region.*choice="single"',
        ),
        (
            '<View><Image name="i" value="$i"/><PolygonLabels name="p" toName="i"><Label value="q"/></PolygonLabels>'
            '<BrushLabels name="b" toName="i"><Label value="a"/><Label value="c"/></BrushLabels>'
            '<Choices name="c" toName="i" perRegion="true"><Choice value="a"/><Choice value="b"/></Choices></View>',
            "differ",
        ),
        (
            '<View><Image name="i" value="$i"/><PolygonLabels name="p" toName="i"><Label value="q"/>'
            '<Label value="r"/></PolygonLabels></View>',
            "exactly one label",
        ),
    ],
)
def test_unservable_configs_are_refused_with_a_reason(xml: str, reason: str) -> None:
    with pytest.raises(UnsupportedLabelConfig, match=reason):
        parse_label_config(xml)
