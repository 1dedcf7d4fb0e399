"""The training widget's recipe rows (augmentation, schedule, warm-up, balanced sampling) and
class rows (label 0 as a class, ignore value) give the same run as the CLI's options: the
same `TrainingConfig` and `ClassMap`, a fully labelled 4-class map trained from the widget,
and the saved recipe on Resume."""

import numpy as np
import pytest

from napari_clip_guided_sam import cli
from napari_clip_guided_sam._widgets import _common
from napari_clip_guided_sam._widgets._panels import MAX_DOCK_WIDTH
from napari_clip_guided_sam._widgets.training_widget import TrainingWidget
from napari_clip_guided_sam.cli._common import class_map_from_args
from napari_clip_guided_sam.cli.train import _chosen_settings
from napari_clip_guided_sam.model.checkpoint import read_checkpoint
from napari_clip_guided_sam.training.recipe import AUGMENTATIONS, default_recipe
from napari_clip_guided_sam.training.run import plan_run

TIMEOUT_MS = 120_000
FOUR_CLASSES = "0=pore,1=clay,2=quartz,3=pyrite"


@pytest.fixture
def notes(monkeypatch):
    shown = {"error": [], "info": []}
    monkeypatch.setattr(_common, "show_error", shown["error"].append)
    monkeypatch.setattr(_common, "show_info", shown["info"].append)
    return shown


@pytest.fixture
def widget(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.settings.preset_combo.setCurrentText("tiny")
    widget.settings.device_combo.setCurrentText("cpu")
    widget.settings.precision_combo.setCurrentText("fp32")
    widget.settings.val_spin.setValue(0.0)
    widget.settings.output_edit.setText(str(tmp_path / "run"))
    yield widget
    if widget.job is not None:
        assert widget.stop_and_wait(TIMEOUT_MS / 1000)


def _add_fully_labelled(viewer, count=2):
    """A stack whose every pixel has one of four classes (0-3), each its own grey level,
    and a band of unannotated pixels (255)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((count, 48, 48), np.uint8)
    for index in range(count):
        labels[index, :, 24:] = 1
        labels[index, 24:, :24] = 2
        labels[index, 30 + index : 40 + index, 30:40] = 3
        labels[index, :4] = 255
    grey = np.choose(np.minimum(labels, 4), [30, 90, 150, 220, 0])
    image = np.clip(grey + rng.normal(0, 6, grey.shape), 0, 255).astype(np.uint8)
    viewer.add_image(image, name="rock")
    viewer.add_labels(labels, name="rock labels")


def _set_recipe(widget, augment, schedule, warmup, balance):
    recipe = widget.settings.recipe
    for name, check in recipe.augment_checks.items():
        check.setChecked(name in augment)
    recipe.schedule_combo.setCurrentText(schedule)
    recipe.warmup_spin.setValue(warmup)
    recipe.balance_check.setChecked(balance)


def _set_classes(widget, class_map="", no_background=False, ignore=None, name=""):
    sources = widget.sources
    sources.one_class_check.setChecked(not class_map)
    sources.class_name_edit.setText(name)
    sources.class_map_edit.setText(class_map)
    sources.no_background_check.setChecked(no_background)
    sources.ignore_spin.setValue(-1 if ignore is None else ignore)


def _cli_args(output, *options):
    """`clip-guided-sam train` parsed (one class "nucleus" unless the options name classes)."""
    classes = [] if {"--class", "--class-map"} & set(options) else ["--class", "nucleus"]
    return cli.build_parser().parse_args(
        ["train", "--images", "i", "--labels", "l", "--output", str(output), *classes, *options]
    )


def _captured_request(widget, monkeypatch, action):
    monkeypatch.setattr(widget, "_start", lambda request: request)
    request = action()
    assert request is not None, "the widget refused the run"
    return request


@pytest.mark.parametrize(
    "preset, rows, options",
    [
        ("tiny", None, []),
        ("paper", None, []),
        ("tiny_448", None, []),
        (
            "tiny",
            (("flips", "intensity", "blur"), "constant", 0.1, True),
            ["--augment", "flips,intensity,blur", "--schedule", "constant", "--warmup", "0.1",
             "--balance"],
        ),
        ("paper", ((), "cosine", 0.25, False), ["--no-augment", "--schedule", "cosine",
                                                "--warmup", "0.25"]),
    ],
    ids=["tiny-defaults", "paper-defaults", "tiny_448-defaults", "tiny-chosen", "paper-chosen"],
)  # fmt: skip
def test_the_recipe_rows_give_the_clis_training_config(
    widget, tmp_path, monkeypatch, preset, rows, options
):
    widget.viewer.add_image(np.zeros((32, 32), np.uint8), name="cells")
    labels = np.zeros((32, 32), np.uint8)
    labels[8:16, 8:16] = 1
    widget.viewer.add_labels(labels, name="cells labels")
    _set_classes(widget, name="nucleus")
    widget.settings.preset_combo.setCurrentText(preset)
    if rows is not None:
        _set_recipe(widget, *rows)
    request = _captured_request(widget, monkeypatch, widget.start_training)

    args = _cli_args(tmp_path / "run", "--preset", preset, "--val-fraction", "0", "--device",
                     "cpu", "--precision", "fp32", *options)  # fmt: skip
    from_cli = plan_run(args.output, preset=args.preset, settings=_chosen_settings(args))
    assert request.plan.config == from_cli.config
    assert request.plan.preset == from_cli.preset == preset


def test_the_new_rows_keep_the_open_advanced_section_narrow(widget):
    widget.advanced.set_expanded(True)
    rows = [widget.sources.no_background_check, widget.settings.recipe.balance_check]
    assert all(row.isVisibleTo(widget) for row in rows)
    assert widget.content.minimumSizeHint().width() <= MAX_DOCK_WIDTH


def test_the_recipe_rows_follow_the_preset_until_changed(widget):
    settings = widget.settings
    recipe = settings.recipe
    tiny, paper = default_recipe("tiny"), default_recipe("paper")
    assert tiny["schedule"] != paper["schedule"]  # otherwise this test shows nothing
    assert recipe.schedule_combo.currentText() == tiny["schedule"]
    assert recipe.warmup_spin.isEnabled() == (tiny["schedule"] == "cosine")
    settings.preset_combo.setCurrentText("paper")
    assert recipe.schedule_combo.currentText() == paper["schedule"]
    assert settings.epochs_spin.value() == paper["epochs"]

    recipe.augment_checks["blur"].setChecked(True)  # the user's choice stays
    settings.preset_combo.setCurrentText("tiny")
    values = recipe.values()
    assert values["augment_blur"] and values["schedule"] == tiny["schedule"]
    assert list(recipe.augment_checks) == list(AUGMENTATIONS)


@pytest.mark.parametrize(
    "rows, options",
    [
        ({"class_map": FOUR_CLASSES, "no_background": True, "ignore": 255},
         ["--class-map", FOUR_CLASSES, "--background", "none", "--ignore-index", "255"]),
        ({"class_map": "1=nucleus, 2+3=cell"}, ["--class-map", "1=nucleus,2+3=cell"]),
        ({"name": "nucleus", "ignore": 255}, ["--class", "nucleus", "--ignore-index", "255"]),
        ({"name": "nucleus"}, ["--class", "nucleus"]),
    ],
    ids=["fully-labelled", "class-map", "one-class-ignore", "one-class"],
)  # fmt: skip
def test_the_class_rows_give_the_clis_class_map(widget, tmp_path, rows, options):
    _set_classes(widget, **rows)
    assert widget.sources.class_map() == class_map_from_args(_cli_args(tmp_path, *options))


def test_label_0_as_a_class_is_refused_without_the_row_as_on_the_command_line(widget, notes):
    _add_fully_labelled(widget.viewer)
    _set_classes(widget, class_map=FOUR_CLASSES)
    assert widget.sources.no_background_check.isEnabled()
    widget.run_panel.train_button.click()  # the error reaches the panel; nothing starts
    assert not widget.running and widget.run is None
    assert len(notes["error"]) == 1 and "0 is background" in notes["error"][0]
    assert "say there is no background" in widget.messages.message
    widget.sources.one_class_check.setChecked(True)  # one class: 0 is always background
    assert not widget.sources.no_background_check.isEnabled()


def test_a_fully_labelled_four_class_map_trains_every_class_from_the_widget(widget, qtbot, notes):
    _add_fully_labelled(widget.viewer)
    _set_classes(widget, class_map=FOUR_CLASSES, no_background=True, ignore=255)
    widget.settings.max_steps_spin.setValue(2)
    widget.settings.val_spin.setValue(0.5)
    assert widget.start_training()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert notes["error"] == []
    checkpoint = read_checkpoint(widget.checkpoint())
    assert checkpoint.class_names == ["pore", "clay", "quartz", "pyrite"]
    assert checkpoint.metadata["label_table"] == {
        "values": {"pore": 0, "clay": 1, "quartz": 2, "pyrite": 3},
        "unlabelled": 255,
    }
    assert set(checkpoint.card.validation["per_class"]) == {"pore", "clay", "quartz", "pyrite"}


def test_resume_trains_with_the_saved_recipe_as_the_cli_does(
    widget, qtbot, notes, tmp_path, monkeypatch
):
    _add_fully_labelled(widget.viewer)
    _set_classes(widget, name="grain", ignore=255)
    _set_recipe(widget, ("intensity",), "constant", 0.1, True)
    widget.settings.max_steps_spin.setValue(1)
    assert widget.start_training()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert notes["error"] == []
    saved = read_run_config(widget)

    _set_recipe(widget, ("flips", "scale"), "cosine", 0.3, False)  # not what the run used
    widget.settings.max_steps_spin.setValue(2)
    request = _captured_request(widget, monkeypatch, widget.resume_training)
    args = _cli_args(tmp_path / "run", "--resume", "--max-steps", "2", "--device", "cpu",
                     "--precision", "fp32")  # fmt: skip
    from_cli = plan_run(args.output, settings=_chosen_settings(args), resume=True)
    assert request.plan.config == from_cli.config
    recipe = widget.settings.recipe.values()
    for key in ("augment", "augment_intensity", "augment_scale", "schedule", "warmup", "balance"):
        assert recipe[key] == getattr(saved, key) == getattr(from_cli.config, key), key


def read_run_config(widget):
    """The `TrainingConfig` the last run in the widget's output folder saved."""
    return plan_run(widget.settings.output(), resume=True).config
