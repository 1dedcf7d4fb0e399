"""Class maps: label values to class names, and the text forms users type."""

import numpy as np
import pytest

from napari_clip_guided_sam.data.class_map import (
    ClassMap,
    LabelTable,
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


FULLY_LABELLED = ClassMap(
    {0: "pore", 1: "clay", 2: "quartz", 3: "pyrite"}, background=False, ignore_index=255
)


def test_label_zero_is_a_class_only_without_background():
    labels = np.array([[0, 1, 2, 3, 255]])
    np.testing.assert_array_equal(FULLY_LABELLED.mask(labels, "pore"), [[1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(FULLY_LABELLED.valid(labels), [[1, 1, 1, 1, 0]])
    assert FULLY_LABELLED.classes_present([0, 255]) == ["pore"]
    assert FULLY_LABELLED.unknown_values([0, 1, 4, 255]) == [4]
    with pytest.raises(ValueError, match="label 0 is a class here"):
        ClassMap({1: "clay"}, background=False).validate(np.array([0, 1]))
    with pytest.raises(ValueError, match="no background"):
        ClassMap({0: "pore"})  # with background, 0 cannot be a class
    with pytest.raises(ValueError, match="needs label 0 as background"):
        ClassMap(nonzero_class="x", background=False)


def test_ignore_value_is_no_class_and_not_background():
    with pytest.raises(ValueError, match="both the ignore value and the class"):
        ClassMap({1: "a", 255: "b"}, ignore_index=255)
    with pytest.raises(ValueError, match="cannot be 0 while 0 is background"):
        ClassMap({1: "a"}, ignore_index=0)
    sparse = ClassMap({1: "a", 2: "b"}, background=False, ignore_index=0)  # only painted pixels
    assert sparse.valid(np.array([0, 1, 2])).tolist() == [False, True, True]
    single = ClassMap.single_class("nucleus", ignore_index=255)
    np.testing.assert_array_equal(single.mask(np.array([0, 3, 255]), "nucleus"), [0, 1, 0])
    assert ClassMap.single_class("nucleus").valid(np.array([0, 1])) is None


def test_new_fields_round_trip_through_config_and_text():
    for class_map in (FULLY_LABELLED, ClassMap.single_class("n", ignore_index=9)):
        assert ClassMap.from_config(class_map.to_config()) == class_map
    assert FULLY_LABELLED.to_config() == {
        "classes": {"0": "pore", "1": "clay", "2": "quartz", "3": "pyrite"},
        "background": False,
        "ignore_index": 255,
    }
    assert CELL_MEMBRANE.to_config() == {"classes": {"1": "cell", "2": "membrane", "3": "cell"}}
    text = format_class_map(FULLY_LABELLED)
    assert text == "0=pore,1=clay,2=quartz,3=pyrite"
    assert parse_class_map(text, background=False, ignore_index=255) == FULLY_LABELLED
    assert FULLY_LABELLED != ClassMap(
        {0: "pore", 1: "clay", 2: "quartz", 3: "pyrite"}, background=False
    )


def test_label_table_gives_each_class_its_training_value():
    table = FULLY_LABELLED.label_table()
    assert table.values == {"pore": 0, "clay": 1, "quartz": 2, "pyrite": 3}
    assert table.unlabelled == 255  # 0 is a class: unlabelled pixels take the ignore value
    assert ClassMap({0: "a", 1: "b"}, background=False).label_table().unlabelled == 255
    assert CELL_MEMBRANE.label_table().values == {"cell": 1, "membrane": 2}
    assert CELL_MEMBRANE.label_table().unlabelled == 0
    subset = table.subset(["pyrite", "clay"])
    assert subset is not None and subset.values == {"pyrite": 3, "clay": 1}
    assert table.subset(["nucleus"]) is None
    assert LabelTable.from_config(table.to_config()) == table
    assert subset.features() == {"index": [255, 1, 3], "class": ["unlabelled", "clay", "pyrite"]}
    assert CELL_MEMBRANE.label_table().features() == {
        "index": [0, 1, 2],
        "class": ["background", "cell", "membrane"],
    }
