"""`clip-guided-sam segment --workers N | --scheduler ADDRESS`: the batch on dask workers from
the command line, with the serial run's files, report and exit codes (tiny preset)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam.cli import EXIT_FAILED, EXIT_OK, main

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
