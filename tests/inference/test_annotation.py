"""Committed objects: ids and classes, overlaps, re-commit, remove, exact undo."""

import numpy as np
import pytest

from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.inference.annotation import ObjectAnnotations


def square(top, left, size=4, shape=(12, 16)):
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_commit_twice_gives_two_ids_with_their_classes_and_undo_one():
    labels = np.zeros((12, 16), dtype=np.uint32)
    annotations = ObjectAnnotations(labels)
    first = annotations.commit("nucleus", {(): square(0, 0)})
    second = annotations.commit("cell", {(): square(6, 8)})
    assert (first.object_ids, second.object_ids) == ([1], [2])
    assert annotations.classes == {1: "nucleus", 2: "cell"}
    assert (labels == 1).sum() == 16 and (labels == 2).sum() == 16
    assert annotations.features() == {
        "index": [0, 1, 2],
        "class": ["background", "nucleus", "cell"],
    }
    assert annotations.class_map() == ClassMap({1: "nucleus", 2: "cell"})

    undone = annotations.undo()
    assert undone.object_ids == [2] and undone.classes_after == {2: None}
    assert annotations.classes == {1: "nucleus"}
    np.testing.assert_array_equal(labels, square(0, 0).astype(np.uint32))
    assert annotations.next_id() == 2


def test_undo_restores_exactly_the_pixels_before_each_commit():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(12, 16)).astype(np.uint16)
    annotations = ObjectAnnotations(labels, {1: "a", 2: "b"})
    snapshots = [labels.copy()]
    for rule, top in (("keep", 0), ("overwrite", 3), ("keep", 6)):
        annotations.commit("c", {(): square(top, top)}, overlap=rule)
        snapshots.append(labels.copy())
    annotations.remove(1)
    for expected in reversed(snapshots):
        annotations.undo()
        np.testing.assert_array_equal(labels, expected)
    assert annotations.undo() is None and not annotations.can_undo
    assert annotations.classes == {1: "a", 2: "b"}


def test_a_new_object_keeps_earlier_ones_unless_told_to_overwrite():
    labels = np.zeros((12, 16), dtype=np.uint32)
    annotations = ObjectAnnotations(labels)
    annotations.commit("nucleus", {(): square(0, 0)})
    annotations.commit("nucleus", {(): square(2, 2)})  # overlaps the first: fills around it
    assert (labels == 1).sum() == 16 and (labels == 2).sum() == 12
    annotations.commit("nucleus", {(): square(2, 2)}, overlap="overwrite")
    assert (labels == 3).sum() == 16 and (labels == 1).sum() == 12 and (labels == 2).sum() == 0
    with pytest.raises(ValueError, match="wholly under committed objects"):
        annotations.commit("nucleus", {(): square(3, 3, size=2)})


def test_committing_an_object_again_replaces_its_pixels_on_those_slices():
    labels = np.zeros((3, 12, 16), dtype=np.uint32)
    annotations = ObjectAnnotations(labels)
    change = annotations.commit("cell", {(0,): square(0, 0), (1,): square(0, 0)})
    assert change.edit.slices() == [(0,), (1,)]
    annotations.commit("nucleus", {(1,): square(5, 5)}, object_id=change.object_ids[0])
    np.testing.assert_array_equal(labels[0] == 1, square(0, 0))  # other slices keep theirs
    np.testing.assert_array_equal(labels[1] == 1, square(5, 5))
    assert annotations.classes == {1: "nucleus"}
    annotations.undo()
    np.testing.assert_array_equal(labels[1] == 1, square(0, 0))
    assert annotations.classes == {1: "cell"}


def test_writes_go_through_the_writer_in_fancy_index_form():
    labels = np.zeros((2, 12, 16), dtype=np.uint32)
    calls = []

    def write(indices, values):  # what napari's Labels.data_setitem receives
        calls.append((len(indices), values.copy()))
        labels[indices] = values

    annotations = ObjectAnnotations(labels, write=write)
    annotations.commit("cell", {(1,): square(0, 0)})
    annotations.undo()
    assert [(n, v.tolist()) for n, v in calls] == [(3, [1] * 16), (3, [0] * 16)]
    assert not labels.any()


def test_bad_commits_are_clear_errors_and_change_nothing():
    labels = np.zeros((2, 12, 16), dtype=np.uint8)
    annotations = ObjectAnnotations(labels)
    with pytest.raises(ValueError, match="empty"):
        annotations.commit("cell", {(0,): np.zeros((12, 16), bool)})
    with pytest.raises(ValueError, match="does not fit"):
        annotations.commit("cell", {(0,): np.ones((5, 5), bool)})
    with pytest.raises(ValueError, match="does not address"):
        annotations.commit("cell", {(2,): square(0, 0)})
    with pytest.raises(ValueError, match="class name"):
        annotations.commit("  ", {(0,): square(0, 0)})
    with pytest.raises(ValueError, match="overlap must be"):
        annotations.commit("cell", {(0,): square(0, 0)}, overlap="merge")
    with pytest.raises(ValueError, match="No committed objects"):
        annotations.class_map()
    assert not labels.any() and not annotations.can_undo
    labels[0, 0, 0] = 255
    with pytest.raises(ValueError, match="larger integer type"):
        annotations.commit("cell", {(1,): square(0, 0)})
    with pytest.raises(ValueError, match="integer array"):
        ObjectAnnotations(np.zeros((4, 4), dtype=np.float32))


def test_undo_history_is_bounded():
    labels = np.zeros((12, 16), dtype=np.uint32)
    annotations = ObjectAnnotations(labels, max_undo=2)
    for top in range(0, 12, 4):
        annotations.commit("cell", {(): square(top, 0)})
    assert annotations.undo().object_ids == [3]
    assert annotations.undo().object_ids == [2]
    assert annotations.undo() is None
    assert annotations.classes == {1: "cell"}


def test_all_instances_of_a_class_are_committed_as_one_undoable_change():
    labels = np.zeros((2, 12, 16), dtype=np.uint32)
    annotations = ObjectAnnotations(labels)
    annotations.commit("cell", {(0,): square(0, 0)})
    instances = np.zeros((12, 16), dtype=np.int32)
    instances[0:4, 0:4] = 5  # wholly under the committed cell: left out
    instances[6:10, 0:4] = 7
    instances[6:10, 8:12] = 9
    later = np.zeros_like(instances)
    later[6:10, 8:12] = 9  # the same instance on the next slice: the same object
    change = annotations.commit_instances("nucleus", {(0,): instances, (1,): later})
    assert change.object_ids == [3, 4]
    assert annotations.classes == {1: "cell", 3: "nucleus", 4: "nucleus"}
    assert (labels[0] == 3).sum() == 16 and (labels[0] == 4).sum() == 16
    np.testing.assert_array_equal(labels[1] == 4, later == 9)
    annotations.undo()
    assert annotations.classes == {1: "cell"} and set(np.unique(labels)) == {0, 1}
    with pytest.raises(ValueError, match="no instance"):
        annotations.commit_instances("nucleus", {(0,): np.zeros((12, 16), int)})
