"""Class maps: label values to class names, and the text forms users type."""

import numpy as np
import pytest

from napari_clip_guided_sam.data.class_map import (
    ClassMap,
    format_class_map,
    parse_class_map,
    parse_class_names,
)

CELL_MEMBRANE = ClassMap.from_dict({1: "cell", 2: "membrane", 3: "cell"})


def test_class_map_names_values_and_masks():
    assert CELL_MEMBRANE.class_names == ("cell", "membrane")
    assert CELL_MEMBRANE.values_of("cell") == (1, 3)
    labels = np.array([[0, 1, 2, 3]])
    np.testing.assert_array_equal(CELL_MEMBRANE.mask(labels, "cell"), [[0, 1, 0, 1]])
    single = ClassMap.single_class("nucleus")
    np.testing.assert_array_equal(single.mask(np.array([0, 5, 9]), "nucleus"), [0, 1, 1])


def test_class_map_from_json_keys_and_config_round_trip():
    assert ClassMap.from_dict({"1": "cell", "3": "cell", "2": "membrane"}) == CELL_MEMBRANE
    assert ClassMap.from_config(CELL_MEMBRANE.to_config()) == CELL_MEMBRANE
    single = ClassMap.single_class("nucleus")
    assert ClassMap.from_config(single.to_config()) == single


@pytest.mark.parametrize(
    ("mapping", "message"),
    [({1: ""}, "non-empty"), ({0: "bg"}, "background"), ({}, "empty"), ({"a": "x"}, "integer")],
)
def test_class_map_rejects_bad_entries(mapping, message):
    with pytest.raises(ValueError, match=message):
        ClassMap.from_dict(mapping)
    with pytest.raises(ValueError, match="non-empty"):
        ClassMap.single_class("  ")


def test_class_map_validate_lists_unknown_values():
    with pytest.raises(ValueError, match=r"not in the class map: 4, 7"):
        CELL_MEMBRANE.validate(np.array([0, 1, 4, 7, 7]))
    ClassMap.single_class("x").validate(np.array([0, 99]))


def test_class_map_text_refuses_duplicate_names_and_values():
    assert parse_class_map("1=nucleus, 2 = cell body") == ClassMap({1: "nucleus", 2: "cell body"})
    with pytest.raises(ValueError, match="'nucleus' is given to label values 1 and 3"):
        parse_class_map("1=nucleus, 3=nucleus")
    with pytest.raises(ValueError, match="given twice"):
        parse_class_map("1=a, 1=b")
    with pytest.raises(ValueError, match="VALUE=NAME"):
        parse_class_map("nucleus")
    with pytest.raises(ValueError, match="positive"):
        parse_class_map("0=background")


def test_several_values_of_one_class_are_one_entry_and_round_trip():
    assert parse_class_map("1+3=cell; 2=membrane") == CELL_MEMBRANE
    assert format_class_map(CELL_MEMBRANE) == "1+3=cell,2=membrane"
    assert parse_class_map(format_class_map(CELL_MEMBRANE)) == CELL_MEMBRANE
    with pytest.raises(ValueError, match=r"write one entry \(1\+3=cell\)"):
        parse_class_map("1=cell, 3=cell")


def test_class_names_follow_the_same_separators():
    assert parse_class_names("nucleus,  cell   body; nucleus\nmitochondrion") == [
        "nucleus",
        "cell body",
        "mitochondrion",
    ]
