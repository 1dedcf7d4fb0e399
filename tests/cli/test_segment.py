"""`clip-guided-sam segment`: files, folders, stacks; reports and exit codes (tiny preset)."""

import numpy as np
import pytest

from napari_clip_guided_sam.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from napari_clip_guided_sam.data.reader import read_image


def segment(*args):
    return main(
        [
            "segment",
            *map(str, args),
            "--preset",
            "tiny",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--no-progress",
        ]
    )


def test_help_explains_usage_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "--help"])
    assert exit_info.value.code == EXIT_OK
    text = capsys.readouterr().out
    for expected in ("examples:", "exit codes:", "--classes", "--instances", "report"):
        assert expected in text


def test_bad_command_line_exits_with_usage_code(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(tmp_path), "--threshold", "high"])
    assert exit_info.value.code == EXIT_USAGE


def test_stack_gets_labels_with_pixel_size_and_a_report(tmp_path, capsys, write_stack):
    source = write_stack(tmp_path / "cells.tif")
    assert segment(source, "-c", "nucleus", "cell") == EXIT_OK
    output = read_image(tmp_path / "segmented" / "cells_labels.tif")
    assert output.shape == (2, 40, 48) and output.axes == "ZYX"
    assert output.pixel_size == pytest.approx((2.0, 0.25, 0.25)) and output.unit == "µm"
    report = (tmp_path / "segmented" / "segment_report.csv").read_text()
    assert "cells.tif,done" in report
    assert "1 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert segment(source, "-c", "nucleus", "cell") == EXIT_OK  # second run: skipped
    assert "0 done, 1 skipped" in capsys.readouterr().out


def test_folder_with_a_corrupt_file_completes_the_rest_and_exits_1(tmp_path, capsys, write_stack):
    images = tmp_path / "images"
    images.mkdir()
    write_stack(images / "a.tif")
    (images / "b.tif").write_bytes(b"not a tiff at all")
    (images / "c.csv").write_text("1,2\n")
    out = tmp_path / "labels"
    points = tmp_path / "clicks.csv"
    points.write_text("x,y,label\n15,12,1\n")
    code = segment(
        images, "-c", "nucleus", "-o", out, "--points", points, "--instances", "watershed"
    )
    assert code == EXIT_FAILED
    captured = capsys.readouterr()
    assert "FAILED b.tif" in captured.err and "skipped c.csv: unsupported" in captured.out
    assert [p.name for p in out.glob("*.tif")] == ["a_labels.tif"]
    assert "b.tif,failed" in (out / "segment_report.csv").read_text()


def test_refusals_are_one_line_errors(tmp_path, capsys, write_stack):
    images = tmp_path / "images"
    images.mkdir()
    write_stack(images / "a.tif")
    assert segment(images, "-c", "nucleus", "-o", images) == EXIT_FAILED
    assert "is the input folder" in capsys.readouterr().err
    assert segment(tmp_path / "missing.tif", "-c", "nucleus") == EXIT_FAILED
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "movie.avi").write_bytes(b"RIFF")
    assert segment(tmp_path / "movie.avi", "-c", "nucleus") == EXIT_FAILED
    assert "unsupported file type" in capsys.readouterr().err


def test_link_slices_needs_instances_and_can_be_turned_off(tmp_path, capsys, write_stack):
    import json

    from napari_clip_guided_sam.inference.instances import InstanceConfig, labels_to_instances
    from napari_clip_guided_sam.inference.linking import link_stack

    source = write_stack(tmp_path / "cells.tif", n_slices=3)
    assert segment(source, "-c", "nucleus", "--link-slices") == EXIT_USAGE
    assert "add --instances" in capsys.readouterr().err

    assert segment(source, "-c", "nucleus", "-o", tmp_path / "classes") == EXIT_OK
    classes = read_image(tmp_path / "classes" / "cells_labels.tif").array
    per_slice = np.stack([labels_to_instances(c, 1, InstanceConfig("connected")) for c in classes])
    linked = link_stack(per_slice, classes)
    assert not np.array_equal(linked, per_slice)
    for flag, expected in (("--no-link-slices", per_slice), (None, linked)):
        out = tmp_path / str(flag)
        extra = [flag] if flag else []
        assert segment(source, "-c", "nucleus", "-o", out, "--instances", "connected", *extra) == 0
        np.testing.assert_array_equal(read_image(out / "cells_labels.tif").array, expected)
        settings = json.loads((out / "segment_report.json").read_text())["settings"]
        assert settings["link_slices"] is (False if flag else None)


def test_tiling_options_reach_the_run_and_its_report(tmp_path, write_stack, capsys):
    import json

    source = write_stack(tmp_path / "cells.tif", n_slices=2)  # 40 x 48 slices
    out = tmp_path / "tiled"
    tiled = ("--tiling", "on", "--tile-shape", "16", "24", "--halo", "4")
    assert segment(source, "-c", "nucleus", "-o", out, *tiled) == EXIT_OK
    settings = json.loads((out / "segment_report.json").read_text())["settings"]
    assert settings["tiling"] == {"mode": "on", "tile_shape": [16, 24], "halo": [4, 4]}
    labels = read_image(out / "cells_labels.tif").array
    assert labels.shape == (2, 40, 48)
    assert segment(source, "-c", "nucleus", "-o", tmp_path / "whole") == EXIT_OK
    whole = read_image(tmp_path / "whole" / "cells_labels.tif").array
    assert not np.array_equal(labels, whole)  # windows of 24 x 32 px, not the squashed slice
    assert segment(source, "-c", "nucleus", "--halo", "-2") == EXIT_USAGE
    assert "halo must be 0 or more" in capsys.readouterr().err


def test_compile_compiles_the_encoder_and_gives_the_same_labels(
    tmp_path, monkeypatch, capsys, write_stack
):
    from torch._dynamo.utils import counters

    from napari_clip_guided_sam.model import compilation

    compiled, compile_image_encoder = [], compilation.compile_image_encoder

    def compile_fast(model):  # aot_eager traces what inductor compiles, in seconds
        done = compile_image_encoder(model, backend="aot_eager")
        if done:
            compiled.append(model)
        return done

    monkeypatch.setattr(compilation, "compile_image_encoder", compile_fast)
    source = write_stack(tmp_path / "cells.tif")
    assert segment(source, "-c", "nucleus", "-o", tmp_path / "eager") == EXIT_OK
    assert not compiled
    counters.clear()
    assert segment(source, "-c", "nucleus", "-o", tmp_path / "compiled", "--compile") == EXIT_OK
    assert len(compiled) == 1 and counters["stats"]["unique_graphs"] == 1  # and it ran
    eager = read_image(tmp_path / "eager" / "cells_labels.tif").array
    labels = read_image(tmp_path / "compiled" / "cells_labels.tif").array
    # (the compiled graph rounds differently, ~1e-6: a pixel at the threshold may flip)
    assert labels.shape == eager.shape and np.mean(labels != eager) <= 1e-3

    # A model that runs its encoder block by block is not compiled, and the user is told.
    monkeypatch.setattr(
        "napari_clip_guided_sam.model.clip_guided_sam.CLIPGuidedSAM.encoder_runs_by_block",
        lambda self: True,
    )
    capsys.readouterr()
    assert segment(source, "-c", "nucleus", "-o", tmp_path / "by_block", "--compile") == EXIT_OK
    assert len(compiled) == 1
    assert "runs its image encoder block by block" in capsys.readouterr().err
