"""`clip-guided-sam segment --workers N | --scheduler ADDRESS`: the batch on dask workers from
the command line, with the serial run's files, report and exit codes (tiny preset)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main

distributed = pytest.importorskip("distributed")

TINY = ["--preset", "tiny", "--device", "cpu", "--precision", "fp32", "--no-progress"]


def images(folder, count=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 400, size=(40, 48)).astype(np.uint16)
        image[8 + 4 * index : 24, 10:30] += 3000
        tifffile.imwrite(folder / f"img{index}.tif", image)
    return folder


def test_local_workers_write_what_the_serial_run_writes(tmp_path, capsys):
    source = images(tmp_path / "in")
    assert main(["segment", str(source), "-c", "nucleus", "-o", str(tmp_path / "serial"),
                 *TINY]) == EXIT_OK  # fmt: skip
    code = main(["segment", str(source), "-c", "nucleus", "-o", str(tmp_path / "dask"),
                 "--workers", "1", *TINY])  # fmt: skip

    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "dask cluster: 1 worker(s); dashboard:" in out and "2 done, 0 skipped, 0 failed" in out
    for name in ("img0_labels.tif", "img1_labels.tif"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()


def test_a_running_cluster_reports_failed_files_and_exits_1(tmp_path, capsys):
    source = images(tmp_path / "in")
    (source / "broken.tif").write_bytes(b"not a tiff")
    output = tmp_path / "out"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        code = main(["segment", str(source), "-c", "nucleus", "-o", str(output),
                     "--scheduler", cluster.scheduler_address, *TINY])  # fmt: skip

    captured = capsys.readouterr()
    assert code == EXIT_FAILED
    assert "FAILED broken.tif" in captured.err and "2 done, 0 skipped, 1 failed" in captured.out
    rows = {
        row["input"]: row
        for row in json.loads((output / "segment_report.json").read_text())["files"]
    }
    assert rows[str(source / "broken.tif")]["status"] == "failed"
    assert rows[str(source / "broken.tif")]["reason"]
    assert sorted(p.name for p in output.glob("*_labels.tif")) == ["img0_labels.tif",
                                                                   "img1_labels.tif"]  # fmt: skip


def test_a_stack_split_into_slice_ranges_writes_the_serial_store(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 400, size=(5, 40, 48)).astype(np.uint16)
    stack[:, 10:26, 12:30] += 3000
    tifffile.imwrite(source / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    common = ["-c", "nucleus", "--format", "ome.zarr", *TINY]
    assert main(["segment", str(source), "-o", str(tmp_path / "serial"), *common]) == EXIT_OK
    code = main(["segment", str(source), "-o", str(tmp_path / "dask"), *common,
                 "--workers", "1", "--slices-per-task", "2"])  # fmt: skip

    assert code == EXIT_OK and "1 done, 0 skipped, 0 failed" in capsys.readouterr().out

    def store(folder):
        root = folder / "stack_labels.ome.zarr"
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert store(tmp_path / "dask") == store(tmp_path / "serial")


def test_slices_per_task_needs_a_cluster(tmp_path, capsys):
    source = images(tmp_path / "in", count=1)
    code = main(["segment", str(source), "-c", "nucleus", "--slices-per-task", "4", *TINY])

    assert code == EXIT_USAGE
    assert "--workers or --scheduler" in capsys.readouterr().err
