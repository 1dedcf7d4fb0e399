"""`clip-guided-sam precompute`: a stack's embeddings into the cache, that `segment
--embedding-cache` then reads instead of encoding; `--clear` empties it (tiny preset)."""

import os

import numpy as np
import pytest

from napari_clip_guided_sam.cli import EXIT_OK, EXIT_USAGE, main
from napari_clip_guided_sam.data.reader import read_image
from napari_clip_guided_sam.inference.embedding_store import EmbeddingStore

MODEL = ["--preset", "tiny", "--device", "cpu", "--precision", "fp32", "--no-progress"]


def test_precompute_then_segment_reads_the_cache_and_clear_empties_it(
    tmp_path, capsys, write_stack
):
    source = write_stack(tmp_path / "cells.tif", n_slices=3)
    cache = tmp_path / "cache"
    store = EmbeddingStore(cache)
    args = ["-c", "nucleus", "cell", "--cache-dir", str(cache), *MODEL]
    assert main(["precompute", str(source), *args]) == EXIT_OK
    assert "1 of 1 done" in capsys.readouterr().out
    entries = {entry.path: entry.stat().st_mtime_ns for entry in store.entries()}
    assert len(entries) == 3 * 3  # tokens + 2 classes, per slice
    for path in entries:  # mark them old: a read makes them recent again
        os.utime(path, ns=(10**18, 10**18))

    out = tmp_path / "out"
    assert main(["segment", str(source), "-o", str(out), "--embedding-cache", *args]) == EXIT_OK
    after = {entry.path: entry.stat().st_mtime_ns for entry in store.entries()}
    assert after.keys() == entries.keys()  # nothing new was computed...
    assert all(stamp > 10**18 for stamp in after.values())  # ...every entry was read
    cached = read_image(out / "cells_labels.tif").array
    plain = tmp_path / "plain"
    assert main(["segment", str(source), "-o", str(plain), *args]) == EXIT_OK
    np.testing.assert_array_equal(cached, read_image(plain / "cells_labels.tif").array)

    capsys.readouterr()
    assert main(["precompute", "--clear", "--cache-dir", str(cache)]) == EXIT_OK
    assert "removed 9 cached entries" in capsys.readouterr().out and store.entries() == []


def test_precompute_needs_an_input_or_clear_and_a_positive_size(tmp_path, capsys):
    assert main(["precompute", "--cache-dir", str(tmp_path)]) == EXIT_USAGE
    assert "--clear" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["precompute", str(tmp_path), "--cache-size", "big"])
    assert main(["precompute", "--clear", "--cache-dir", str(tmp_path), "--cache-size", "0"]) == (
        EXIT_USAGE
    )
