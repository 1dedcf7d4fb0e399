"""Embeddings computed once: the on-disk store makes a revisit decoder-only, in another
predictor too, and never serves a changed model, a corrupt entry or more than its limit."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from napari_clip_guided_sam.inference.batch import SegmentOptions, segment_stack_to_array
from napari_clip_guided_sam.inference.batch.precompute import precompute_stack
from napari_clip_guided_sam.inference.embedding_store import EmbeddingStore
from napari_clip_guided_sam.inference.predictor import Predictor
from napari_clip_guided_sam.model.factory import build_model

CLASSES = ["nucleus", "cell"]


def predictor_with(store: EmbeddingStore | None, seed: int = 0, **options) -> Predictor:
    predictor = Predictor(build_model("tiny", seed=seed), "cpu", "fp32", **options)
    predictor.use_embedding_store(store)
    return predictor


def image(seed: int = 0) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 60, (64, 80, 3), dtype=np.uint8)
    rgb[20:40, 25:50] = 220
    return rgb


def run(generator):
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def test_a_revisit_in_a_new_predictor_is_decoder_only_and_identical(tmp_path):
    store = EmbeddingStore(tmp_path)
    first = predictor_with(store)
    computed = first.segment(image(), CLASSES)
    assert first.stats.encoder_calls == 2 and first.stats.clip_calls == 1
    assert len(store.entries()) == 3  # tokens + one embedding per class

    again = predictor_with(store)  # another session: empty memory caches
    revisited = again.segment(image(), CLASSES)
    assert again.stats.encoder_calls == 0 and again.stats.clip_calls == 0
    assert again.stats.disk_hits == 3 and again.stats.decoder_calls == 2
    np.testing.assert_array_equal(revisited.labels, computed.labels)
    np.testing.assert_array_equal(revisited.probabilities, computed.probabilities)

    again.set_guide_options(threshold=0.6, n_points=3)  # prompt-only: the entries still serve
    again.clear_cache()
    again.segment(image(), CLASSES)
    assert again.stats.encoder_calls == 0


def test_a_changed_model_or_precision_never_reads_the_old_entries(tmp_path):
    store = EmbeddingStore(tmp_path)
    predictor_with(store).segment(image(), CLASSES[:1])

    changed = build_model("tiny", seed=0)
    with torch.no_grad():  # one weight of a "new checkpoint" differs
        next(p for n, p in changed.named_parameters() if "adapters" in n).add_(1e-3)
    other = Predictor(changed, "cpu", "fp32")
    other.use_embedding_store(store)
    other.segment(image(), CLASSES[:1])
    assert other.stats.encoder_calls == 1 and other.stats.disk_hits == 0

    half = predictor_with(None)
    half.dtype = torch.bfloat16  # another precision is another scope
    half.use_embedding_store(store)
    assert half._disk is not None and half._disk.scope != other._disk.scope


def test_a_corrupt_entry_is_recomputed_and_replaced(tmp_path):
    store = EmbeddingStore(tmp_path)
    computed = predictor_with(store).segment(image(), CLASSES)
    entries = [entry.path for entry in store.entries()]
    for number, path in enumerate(entries):  # truncated, garbage, empty
        data = open(path, "rb").read()
        with open(path, "wb") as broken:
            broken.write([data[: len(data) // 2], b"not a zip", b""][number % 3])

    again = predictor_with(store)
    revisited = again.segment(image(), CLASSES)
    assert again.stats.encoder_calls == 2 and again.stats.disk_hits == 0
    assert again._disk is not None and again._disk.store.discarded == 3
    np.testing.assert_array_equal(revisited.labels, computed.labels)
    fresh = predictor_with(store)
    fresh.segment(image(), CLASSES)  # the rewritten entries are whole again
    assert fresh.stats.disk_hits == 3 and fresh.stats.encoder_calls == 0


def test_the_size_limit_evicts_the_least_recently_used_entries(tmp_path):
    store = EmbeddingStore(tmp_path)
    predictor = predictor_with(store)
    predictor.segment(image(0), CLASSES[:1])
    one_image = store.size_bytes()
    old = [entry.path for entry in store.entries()]
    for number, path in enumerate(old):  # used long ago, old[0] first
        os.utime(path, ns=(10**18 + number, 10**18 + number))

    revisit = predictor_with(store)
    revisit.segment(image(0), CLASSES[:1])  # a hit marks its entry as just used
    assert all(os.stat(path).st_mtime_ns > 10**18 + 10 for path in old)
    for number, path in enumerate(old):
        os.utime(path, ns=(10**18 + number, 10**18 + number))

    store.max_bytes = int(one_image * 1.5)  # room for one image's entries, not two
    predictor.segment(image(1), CLASSES[:1])
    remaining = {entry.path for entry in store.entries()}
    assert store.size_bytes() <= store.max_bytes
    assert old[0] not in remaining  # the least recently used went first
    assert len(remaining - set(old)) == 2  # the new image's tokens and embedding stay

    with pytest.raises(ValueError, match="positive"):
        EmbeddingStore(tmp_path, max_gb=0)


def test_clear_removes_every_entry(tmp_path):
    store = EmbeddingStore(tmp_path)
    predictor_with(store).segment(image(), CLASSES)
    assert store.clear() == 3 and store.entries() == [] and store.size_bytes() == 0


def test_a_precomputed_stack_segments_with_the_decoder_only(tmp_path):
    from napari_clip_guided_sam.data.image import ImageData

    stack = np.stack([image(seed) for seed in range(3)])
    data = ImageData(stack, "ZYXC")
    options = SegmentOptions(class_names=tuple(CLASSES))
    store = EmbeddingStore(tmp_path)
    precomputing = predictor_with(store)
    assert run(precompute_stack(precomputing, data, options)) == 3
    assert precomputing.stats.encoder_calls == 6 and precomputing.stats.decoder_calls == 0

    segmenting = predictor_with(store)
    labels = run(segment_stack_to_array(segmenting, data, options))
    assert segmenting.stats.encoder_calls == 0 and segmenting.stats.clip_calls == 0
    assert segmenting.stats.decoder_calls == 6
    uncached = run(segment_stack_to_array(predictor_with(None), data, options))
    np.testing.assert_array_equal(labels, uncached)


def _hammer(folder: str, worker: int) -> int:
    """Write and read entries (some shared with the other workers) under a small limit."""
    store = EmbeddingStore(folder, max_gb=40 * 2**10 / 2**30)  # ~40 KB: constant eviction
    found = 0
    for step in range(12):
        name = f"{step % 4:032d}.zarr.zip"  # four names every worker writes
        value = np.full((16, 16), step % 4, np.float32)
        store.write("scope", name, {"map": torch.from_numpy(value)})
        read = store.read("scope", name)
        if read is not None:  # may be evicted by another worker meanwhile
            assert torch.equal(read["map"], torch.from_numpy(value))
            found += 1
    assert store.discarded == 0  # no read ever met a partial entry
    return found


def test_concurrent_processes_never_see_a_partial_entry(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(3) as pool:
        found = list(pool.map(_hammer, [str(tmp_path)] * 3, range(3)))
    assert sum(found) > 0  # reads were whole (or absent: evicted), never partial
    store = EmbeddingStore(tmp_path, max_gb=40 * 2**10 / 2**30)
    assert store.size_bytes() <= store.max_bytes
    assert not [p for p in (tmp_path / "scope").iterdir() if not p.name.endswith(".zarr.zip")]


def test_a_store_that_cannot_be_written_warns_and_segmenting_goes_on(tmp_path):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    predictor = predictor_with(EmbeddingStore(blocked))
    with pytest.warns(UserWarning, match="cannot keep embeddings in the cache"):
        prediction = predictor.segment(image(), CLASSES[:1])
    assert prediction.labels.shape == (64, 80) and predictor.stats.encoder_calls == 1
