"""Interactive predictor session: set an image once, then prompt it with text and clicks cheaply.

The expensive stages are cached at the level they depend on ("a stateful predictor over
stateless modules", as segment-anything's `SamPredictor`; docs/architecture.md, "Caches"):

- CLIP visual tokens per image (text-independent);
- guide text features per class name (or the features a closed-set checkpoint brought);
- the adapted SAM image embedding and the similarity map per (image, class);
- with adapters in the last encoder blocks only, the SAM encoder's frozen prefix per image
  (the blocks before the first adapted one; all of them when zero-shot), so a new class on
  a cached image runs only the blocks after it.

A predictor's weights never change (a new checkpoint is a new predictor), so no key needs
a weights version. An optional on-disk store (`use_embedding_store`;
`inference.embedding_store`) keeps the CLIP tokens and embeddings across images and
sessions, keyed by a hash of the weights too.

Moving a point or changing the prompt options re-runs only the prompt encoder and mask
decoder. The guide options (similarity threshold, sampled points) only shape the prompts,
never the embedding, so changing them keeps every cache valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.class_map import LabelTable
from ..model.card import ModelCard
from ..model.checkpoint import CheckpointError, load_model, read_checkpoint, same_architecture
from ..model.clip_guided_sam import CLIPGuidedSAM, GuideOutput
from ..model.config import adapted_blocks, get_preset
from ..model.factory import build_model
from ..model.prefix_cache import PrefixStore
from ..model.preprocess import InputFrame, prepare_image, validate_rgb
from ..model.runtime import autocast, resolve_device, resolve_precision
from ..model.threads import work_unit
from .embedding_store import EmbeddingStore, ModelEmbeddings
from .objects import ObjectPrompt, select_object
from .predictions import (
    InferenceMemoryError,
    ObjectPrediction,
    Prediction,
    PredictorStats,
    is_out_of_memory,
    labels_from_probabilities,
)
from .prompt_tensors import ObjectTensors, clean_names, clicks_to_frame, object_tensors
from .tiles import TilingConfig, plan_tiles

__all__ = ["Predictor"]

DEFAULT_CACHE_SIZE = 8  # image x class embeddings kept (about 4 MB each for vit_b in fp32)
# Memory the embedding cache may grow to so that every window of a tiled image stays cached
# (a click then re-runs only the decoder); beyond it, windows are encoded again.
TILED_CACHE_MB = 1024
# A window of a tiled image is segmented for a class when its similarity map, normalised
# over the whole image, reaches this level (docs/architecture.md, "Tiling").
WINDOW_PRESENCE = 0.5


class LRUCache:
    """A dict that keeps the `capacity` most recently used entries."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"Cache size must be at least 1, got {capacity}.")
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:  # None when absent
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()


@dataclass
class _ImageState:
    key: str  # content hash of the uint8 RGB image
    tensor: torch.Tensor  # [3, S, S] SAM-normalised input on the device
    frame: InputFrame


@dataclass
class _ClassEntry:
    embedding: torch.Tensor  # [C, g, g] adapted SAM image embedding
    similarity_map: torch.Tensor  # [S, S] float32 in the SAM frame
    similarity_original: np.ndarray | None = None  # float32 [H, W], made at the first decode


def image_key(rgb: np.ndarray) -> str:
    """A content hash of an image (shape and bytes)."""
    digest = hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16)
    digest.update(repr(rgb.shape).encode())
    return digest.hexdigest()


class Predictor:
    """A session that owns a CLIP-Guided SAM model, its device, precision and caches.

    Typical use: `set_image(rgb)` once per image (or slice), then `predict(class_names,
    points, point_labels)` as often as the prompts change. All public methods are
    thread-safe (one lock), so a GUI may call them from a worker thread.

    class_text_features: guide text features of a closed class set (name -> [D]), e.g.
    saved with a fine-tuned checkpoint; other names warn and go through the text tower.
    cache_size: image x class embeddings kept (LRU); CLIP tokens of as many images.
    encoder_batch_size: image x class pairs encoded together; None: 1 on the CPU (batching
    gains ~5% there and doubles peak memory), 2 on accelerators.
    decoder_threads: CPU threads for the prompt encoder + mask decoder. None: like every
    other stage, the thread policy's count at the moment of the click
    (`model.threads.threads_for_work`, the CPUs other processes leave free): the decoder's
    operations are small, and on a busy CPU each of them waits for a descheduled thread
    (2 cores, one taken by another job: 1.29 s with 2 threads, 85 ms with 1), while on an
    idle one 2 threads are about twice as fast as 1.
    """

    def __init__(
        self,
        model: CLIPGuidedSAM,
        device: str = "auto",
        precision: str = "auto",
        class_text_features: dict[str, torch.Tensor] | None = None,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        encoder_batch_size: int | None = None,
        decoder_threads: int | None = None,
    ):
        self.device = resolve_device(device)
        if encoder_batch_size is None:
            encoder_batch_size = 1 if self.device.type == "cpu" else 2
        if encoder_batch_size < 1:
            raise ValueError(f"encoder_batch_size must be at least 1, got {encoder_batch_size}.")
        self.dtype = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        self.encoder_batch_size = encoder_batch_size
        self.decoder_threads = decoder_threads if self.device.type == "cpu" else None
        self.stats = PredictorStats()
        self.checkpoint_path: Path | None = None
        self.checkpoint_card: ModelCard | None = None  # the loaded checkpoint's card, if any
        # The output label values of the checkpoint's classes, as in its training labels.
        self.checkpoint_labels: LabelTable | None = None
        self._lock = threading.RLock()
        self._text_features: dict[str, torch.Tensor] = {}  # class name -> [D]
        self._closed_set = {
            name: feature.detach().float().reshape(-1).to(self.device)
            for name, feature in (class_text_features or {}).items()
        }
        self._tokens = LRUCache(cache_size)
        self._embeddings = LRUCache(cache_size)
        self._image: _ImageState | None = None
        self._disk: ModelEmbeddings | None = None  # the on-disk store, if any
        adapted = adapted_blocks(self.config)
        if adapted and adapted[0] > 0 and self.model.prefix_cache is None:
            sam = self.config.sam
            entry = sam.grid_size**2 * sam.encoder_embed_dim * 4  # one image's tokens, fp32
            self.model.prefix_cache = PrefixStore(cache_size * entry, parts=("sam",))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(
        cls,
        preset: str = "paper",
        checkpoint: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        *,
        sam_weights: str | Path | None = None,
        clip_weights: str | Path | None = None,
        **options: Any,
    ) -> Predictor:
        """Build the preset's model (official base weights; `tiny`: seeded random ones).

        Without a checkpoint the model is zero-shot: CLIP Surgery prompts the vanilla SAM
        encoder (`zero_shot`). checkpoint: a fine-tuned checkpoint of the same architecture
        (see `from_checkpoint`); one trained for another architecture is a
        `CheckpointError` naming the preset to choose. sam_weights / clip_weights: the
        user's own base files instead of the official ones.
        """
        config = get_preset(preset)
        if checkpoint is None:
            model = build_model(config, sam_weights=sam_weights, clip_weights=clip_weights)
            return cls(model, device, precision, **options)
        header = read_checkpoint(checkpoint)
        # The adapter initialisation is the checkpoint's own choice, not the preset's.
        expected = config.replace(**{"adapters.init": header.config.adapters.init})
        if not same_architecture(header.config, expected):
            raise CheckpointError(
                f"{Path(checkpoint).name} was trained for preset {header.config.name!r}, not "
                f"{preset!r}; choose preset {header.config.name!r} for this checkpoint."
            )
        return cls.from_checkpoint(
            checkpoint,
            device,
            precision,
            sam_weights=sam_weights,
            clip_weights=clip_weights,
            **options,
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        device: str = "auto",
        precision: str = "auto",
        *,
        sam_weights: str | Path | None = None,
        clip_weights: str | Path | None = None,
        **options: Any,
    ) -> Predictor:
        """A predictor for a fine-tuned checkpoint, with the preset and base it records.

        Its class text features become the closed class set. A checkpoint fine-tuned on
        custom base weights needs those files again (`sam_weights` / `clip_weights`).
        """
        model, loaded = load_model(checkpoint, sam_weights=sam_weights, clip_weights=clip_weights)
        features = None
        if loaded.text_features is not None:
            features = dict(zip(loaded.class_names, loaded.text_features, strict=True))
        predictor = cls(model, device, precision, features, **options)
        predictor.checkpoint_path = Path(checkpoint)
        predictor.checkpoint_card = loaded.card
        table = loaded.metadata.get("label_table")
        if table is not None:
            predictor.checkpoint_labels = LabelTable.from_config(table)
        return predictor

    # ------------------------------------------------------------------ properties
    @property
    def config(self):
        """The model's `ModelConfig` (guide options included)."""
        return self.model.config

    @property
    def input_size(self) -> int:
        """Side of the model's square input (a tile's window, `inference.tiles`)."""
        return self.config.sam.image_size

    @property
    def zero_shot(self) -> bool:
        """No fine-tuned adapters: the paper's training-free "CLIP Surgery + SAM" baseline."""
        return self.model.zero_shot

    def provenance(self) -> dict[str, Any]:
        """What model this is, for people and records: preset, checkpoint, adapter state
        ("zero-shot (no fine-tuned adapters)" or "fine-tuned adapters"), the classes a
        checkpoint brought, the base weights (per backbone: kind, file, sha256) and the
        checkpoint's card (None without a checkpoint or for checkpoints without one)."""
        model = self.model
        return {
            "preset": model.config.name,
            "checkpoint": None if self.checkpoint_path is None else str(self.checkpoint_path),
            "adapters": model.adapter_state,
            "classes": self.closed_set_classes,
            "base_weights": None if model.base is None else model.base.to_dict(),
            "card": None if self.checkpoint_card is None else asdict(self.checkpoint_card),
        }

    @property
    def closed_set_classes(self) -> list[str]:
        """Class names whose text features came with the checkpoint (empty: open set)."""
        return list(self._closed_set)

    def label_table_for(self, class_names: Sequence[str]) -> LabelTable:
        """The label values `predict(class_names)` writes: the checkpoint's own values when
        it was trained on all these classes (any subset of them, each keeps its value),
        else ``k + 1`` for the k-th name with 0 unlabelled."""
        names = clean_names(class_names)
        table = self.checkpoint_labels.subset(names) if self.checkpoint_labels else None
        return table if table is not None else LabelTable.positional(names)

    # ------------------------------------------------------------------ options
    def set_guide_options(
        self,
        threshold: float | None = None,
        n_points: int | None = None,
        n_negative_points: int | None = None,
    ) -> None:
        """Change how prompts come from the similarity map (`ModelConfig.guide`).

        threshold: tau in (0, 1) for the dense prompt and the point mask; n_points: points
        sampled in text-only mode (>= 1); n_negative_points: negatives from map < 1 - tau.
        The image embeddings do not depend on these, so no cache is invalidated.
        """
        changes: dict[str, Any] = {}
        if threshold is not None:
            if not 0.0 < float(threshold) < 1.0:
                raise ValueError(f"The similarity threshold must be in (0, 1), got {threshold}.")
            changes["guide.threshold"] = float(threshold)
        if n_points is not None:
            if int(n_points) < 1:
                raise ValueError(f"At least one point must be sampled, got {n_points}.")
            changes["guide.n_points"] = int(n_points)
        if n_negative_points is not None:
            if int(n_negative_points) < 0:
                raise ValueError(f"n_negative_points must be >= 0, got {n_negative_points}.")
            changes["guide.n_negative_points"] = int(n_negative_points)
        if changes:
            with self._lock:
                self.model.config = self.model.config.replace(**changes)

    def clear_cache(self) -> None:
        """Drop cached tokens, prefixes and embeddings (text features stay)."""
        with self._lock:
            self._tokens.clear()
            self._embeddings.clear()
            if self.model.prefix_cache is not None:
                self.model.prefix_cache.clear()

    def use_embedding_store(self, store: EmbeddingStore | None) -> None:
        """Keep CLIP tokens and embeddings in an on-disk store too (None: stop), so an image
        and class seen before, in this session or another, need only the decoder."""
        with self._lock:
            self._disk = (
                None if store is None else store.for_model(self.model, self.dtype, self.device)
            )

    # ------------------------------------------------------------------ image
    def set_image(self, rgb: np.ndarray) -> str:
        """Make `rgb` (uint8 [H, W, 3]) the current image; returns its content key.

        The CLIP tokens are computed now (or found in the cache); embeddings wait for the
        class names in `predict`.
        """
        validate_rgb(rgb)
        key = image_key(rgb)
        with self._lock:
            if self._image is not None and self._image.key == key:
                return key
            tensor, frame = prepare_image(rgb, self.config.sam.image_size, self.config.resize)
            self._image = _ImageState(key, tensor.to(self.device), frame)
            with self._memory_guard("computing the CLIP image features", 1):
                self._clip_tokens()
        return key

    def _require_image(self) -> _ImageState:
        if self._image is None:
            raise RuntimeError("No image set: call set_image(rgb) before predict().")
        return self._image

    def _clip_tokens(self) -> torch.Tensor:
        """Cached CLIP Surgery tokens of the current image: [1, 1+N, D]."""
        image = self._require_image()
        tokens = self._tokens.get(image.key)
        if tokens is None and self._disk is not None:
            tokens = self._disk.tokens(image.key, self.device)
            self.stats.disk_hits += tokens is not None
        if tokens is None:
            with self._compute():
                tokens = self.model.clip_tokens(image.tensor[None])
            self.stats.clip_calls += 1
            if self._disk is not None:
                self._disk.put_tokens(image.key, tokens)
        self._tokens.put(image.key, tokens)
        return tokens

    # ------------------------------------------------------------------ text
    def text_features(self, class_names: Sequence[str]) -> torch.Tensor:
        """Guide text features of the class names: [K, D] (cached per name)."""
        names = clean_names(class_names)
        with self._lock:
            missing = [n for n in names if n not in self._text_features]
            unknown = [n for n in missing if n not in self._closed_set]
            if unknown and self._closed_set:
                warnings.warn(
                    f"{', '.join(map(repr, unknown))} not among the classes this checkpoint "
                    f"was trained on ({', '.join(self._closed_set)}); computing "
                    f"{'its' if len(unknown) == 1 else 'their'} text features with the text "
                    "tower, results may be poor.",
                    UserWarning,
                    stacklevel=3,
                )
            for name in missing:
                if name in self._closed_set:
                    self._text_features[name] = self._closed_set[name]
            if unknown:
                with self._compute():
                    features = self.model.text_features(unknown).float()
                self.stats.text_calls += len(unknown)
                for name, feature in zip(unknown, features, strict=True):
                    self._text_features[name] = feature
            return torch.stack([self._text_features[n] for n in names])

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        class_names: Sequence[str],
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        threshold: float = 0.5,
        *,
        similarity_bounds: np.ndarray | None = None,
    ) -> Prediction:
        """Masks of the current image for K class names.

        points: [n, 2] (x, y) in original image pixels, with point_labels [n] (1 positive,
        0 negative), shared by all classes; None (or n = 0) is text-only mode, where points
        are sampled from each class's similarity map with a fixed seed. threshold: the mask
        probability above which a pixel takes its most probable class.
        similarity_bounds: [K, 2] raw (low, high) similarities of the whole image this one is
        a window of (`inference.tiled`), to normalise each class's map with. A class gets no
        mask (probability 0, not decoded) when that map stays below `WINDOW_PRESENCE` and
        there are no clicks.
        """
        names = clean_names(class_names)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"The mask threshold must be in [0, 1), got {threshold}.")
        with self._lock:
            image = self._require_image()
            user_points = clicks_to_frame(points, point_labels, image.frame)
            with self._memory_guard("segmenting", len(names)):
                entries = self._entries(names)
                if similarity_bounds is None:
                    return self._decode(names, entries, user_points, threshold)
                return self._decode_window(
                    names, entries, user_points, threshold, similarity_bounds
                )

    def similarity_range(self, class_names: Sequence[str]) -> np.ndarray:
        """Raw (low, high) patch similarity of the current image to each class: [K, 2].

        CLIP (cached per image) and the text features only, not SAM's encoder; the range
        the similarity map is min-max normalised with (`SemanticGuide.similarity_map`).
        """
        names = clean_names(class_names)
        with self._lock:
            image = self._require_image().tensor[None]
            tokens = self._clip_tokens()
            text = self.text_features(names)
            with self._compute():
                guide = self.model.guidance(image, text, clip_tokens=tokens)
            patches = guide.similarity[0, :, 1:].float()
            return torch.stack([patches.amin(-1), patches.amax(-1)], -1).cpu().numpy()

    def segment(
        self,
        rgb: np.ndarray,
        class_names: Sequence[str],
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        threshold: float = 0.5,
        *,
        tiling: TilingConfig | None = None,
    ) -> Prediction:
        """`set_image` then `predict` as one step (no other thread can slip in between).

        An image larger than the model's input is segmented in overlapping windows when
        `tiling` (default: automatic, `inference.tiles.TilingConfig`) says so
        (`inference.tiled`); its windows' embeddings stay cached where memory allows
        (`TILED_CACHE_MB`), so a new click re-runs only the decoder.
        """
        validate_rgb(rgb)
        plan = plan_tiles(rgb.shape[:2], self.input_size, tiling or TilingConfig())
        with self._lock:
            if not plan.tiled:
                self.set_image(rgb)
                return self.predict(class_names, points, point_labels, threshold)
            from .tiled import ArrayTiles, segment_tiled  # it builds on this module

            names = clean_names(class_names)
            if not 0.0 <= threshold < 1.0:
                raise ValueError(f"The mask threshold must be in [0, 1), got {threshold}.")
            if points is not None and len(points):  # clear errors before any window runs
                frame = InputFrame(plan.shape, self.config.sam.image_size, self.config.resize)
                clicks_to_frame(points, point_labels, frame)
            self._reserve_for_windows(plan.n_tiles, len(names))
            table = self.label_table_for(names)
            source = ArrayTiles(rgb)
            with self._memory_guard("segmenting in tiles", len(names)):
                return segment_tiled(
                    self, source, plan, names, table, points, point_labels, threshold
                )

    def _reserve_for_windows(self, n_windows: int, n_classes: int) -> None:
        """Let the caches hold every window of a tiled image, within `TILED_CACHE_MB`."""
        sam = self.config.sam
        embedding = sam.prompt_embed_dim * sam.grid_size**2 * 4
        budget = TILED_CACHE_MB * 2**20
        self._embeddings.capacity = max(
            self._embeddings.capacity, min(n_windows * n_classes, budget // embedding)
        )
        self._tokens.capacity = max(self._tokens.capacity, min(n_windows, 64))

    def predict_objects(
        self,
        class_name: str,
        objects: Sequence[ObjectPrompt],
        *,
        text_guide: bool = True,
        threshold: float = 0.5,
        select: bool = True,
    ) -> ObjectPrediction:
        """One mask per object of `class_name` on the current image (the object workflow).

        Each object's prompts (`inference.objects.ObjectPrompt`, original pixels): its
        clicks and box are SAM's sparse prompts; its mask, if any, is the dense prompt,
        else (text_guide) the class's similarity map is, as in `predict`. An object
        without any prompt of its own is prompted by the text alone (sampled points);
        without the text guide it is an error. The image embedding is the class's either
        way (the adapters see the class text), so changing prompts runs only the decoder.
        select: keep of each mask only what the object's prompts point at
        (`inference.objects.select_object`: inside its box, the pieces holding a positive
        click); a fine-tuned model segments its whole class, so a click on one nucleus
        would otherwise give all of them. Probabilities stay the decoder's.
        """
        names = clean_names([class_name])
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"The mask threshold must be in [0, 1), got {threshold}.")
        objects = list(objects)
        if not objects:
            raise ValueError("No objects to segment: give at least one object's prompts.")
        if not text_guide and not all(o.has_user_prompt for o in objects):
            raise ValueError(
                "An object has no click, box or mask and the text guide is off: add a prompt "
                "or turn the text guide on."
            )
        with self._lock:
            frame = self._require_image().frame
            prompts = [object_tensors(o, frame) for o in objects]  # bad input fails here
            with self._memory_guard("segmenting objects", 1):
                entry = self._entries(names)[0]
                prediction = self._decode_objects(names[0], entry, prompts, text_guide, threshold)
        if select:
            for index, prompt in enumerate(objects):
                prediction.masks[index] = select_object(prediction.masks[index], prompt)
        return prediction

    def segment_objects(
        self,
        rgb: np.ndarray,
        class_name: str,
        objects: Sequence[ObjectPrompt],
        *,
        text_guide: bool = True,
        threshold: float = 0.5,
        select: bool = True,
        tiling: TilingConfig | None = None,
    ) -> ObjectPrediction:
        """`set_image` then `predict_objects` as one step.

        When `tiling` (default: automatic) would tile `rgb`, each object is segmented in a
        window around its own prompts at full resolution (`inference.tiled_objects`).
        """
        validate_rgb(rgb)
        plan = plan_tiles(rgb.shape[:2], self.input_size, tiling or TilingConfig())
        if plan.tiled:
            from .tiled_objects import segment_objects_in_windows  # it builds on this module

            with self._lock:
                return segment_objects_in_windows(
                    self,
                    rgb,
                    class_name,
                    objects,
                    plan.halo,
                    text_guide=text_guide,
                    threshold=threshold,
                    select=select,
                )
        with self._lock:
            self.set_image(rgb)
            return self.predict_objects(
                class_name, objects, text_guide=text_guide, threshold=threshold, select=select
            )

    def has_embeddings(self, class_names: Sequence[str]) -> bool:
        """Whether `predict(class_names)` on the current image needs no encoder run."""
        with self._lock:
            if self._image is None:
                return False
            names = clean_names(class_names)
            return all(self._embedding_key(n, names) in self._embeddings for n in names)

    def _embedding_key(self, name: str, names: list[str]) -> tuple:
        # With feature surgery a class's similarity depends on the other classes too.
        classes = tuple(names) if self.model.guide.guide_config.feature_surgery else ()
        return (self._require_image().key, classes, name)

    def _entries(self, names: list[str]) -> list[_ClassEntry]:
        """Embedding and similarity map per class, computing only the missing ones."""
        keys = [self._embedding_key(n, names) for n in names]
        found = {k: self._embeddings.get(k) for k in keys}
        self.stats.embedding_hits += sum(entry is not None for entry in found.values())
        if self._disk is not None:
            for key in [k for k in keys if found[k] is None]:
                stored = self._disk.embedding(key, self.device)
                if stored is not None:
                    found[key] = _ClassEntry(*stored)
                    self._embeddings.put(key, found[key])
                    self.stats.disk_hits += 1
        missing = [(n, k) for n, k in zip(names, keys, strict=True) if found[k] is None]
        if missing:
            entries = self._encode([n for n, _ in missing])
            for (_, key), entry in zip(missing, entries, strict=True):
                found[key] = entry
                self._embeddings.put(key, entry)
                if self._disk is not None:
                    self._disk.put_embedding(key, entry.embedding, entry.similarity_map)
        return [found[k] for k in keys]

    def embed(self, rgb: np.ndarray, class_names: Sequence[str]) -> None:
        """Compute (or find) the CLIP tokens and class embeddings of an image without
        decoding: fills the caches, the disk store too, for later `predict` calls."""
        names = clean_names(class_names)
        with self._lock:
            self.set_image(rgb)
            with self._memory_guard("computing embeddings", len(names)):
                self._entries(names)

    def _encode(self, names: list[str]) -> Iterator[_ClassEntry]:
        """Run the guide once and the adapted image encoder per class (in batches)."""
        image = self._require_image().tensor[None]
        tokens = self._clip_tokens()
        text = self.text_features(names)
        with self._compute():
            guide = self.model.guidance(image, text, clip_tokens=tokens)
        for start in range(0, len(names), self.encoder_batch_size):
            part = slice(start, start + self.encoder_batch_size)
            chunk = GuideOutput(
                text=guide.text[:, part],
                tokens=guide.tokens,
                similarity=guide.similarity[:, part],
                similarity_map=guide.similarity_map[:, part],
            )
            with self._compute():
                embeddings = self.model.encode_image(image, chunk)
            self.stats.encoder_calls += embeddings.shape[0]
            for offset, embedding in enumerate(embeddings):
                # Clones, so a cached entry does not keep its whole batch alive.
                similarity_map = guide.similarity_map[0, start + offset].float().clone()
                yield _ClassEntry(embedding.clone(), similarity_map)

    def _decode(
        self,
        names: list[str],
        entries: list[_ClassEntry],
        user_points: tuple[torch.Tensor, torch.Tensor] | None,
        threshold: float,
    ) -> Prediction:
        """Prompt encoder + mask decoder for every class, then back to the original frame."""
        frame = self._require_image().frame
        table = self.label_table_for(names)
        maps = torch.stack([e.similarity_map for e in entries])  # [K, S, S]
        with self._compute(self.decoder_threads):
            dense = self.model.dense_prompt(maps)
            if user_points is None:
                # One seeded draw per class: a class's points do not depend on the others.
                sampled = [self.model.sample_points(m[None]) for m in maps]
                coords = torch.cat([c for c, _ in sampled])
                labels = torch.cat([lab for _, lab in sampled])
            else:
                coords = user_points[0][None].expand(len(names), -1, -1)
                labels = user_points[1][None].expand(len(names), -1)
            embeddings = torch.stack([e.embedding for e in entries])
            logits, ious = self.model.decode(
                embeddings, dense, coords.to(self.device), labels.to(self.device)
            )
            probabilities = frame.logits_to_original(logits.float()).sigmoid_()
            values = torch.tensor([table.values[n] for n in names], dtype=torch.int32)
            label_image = labels_from_probabilities(
                probabilities, threshold, values.to(probabilities.device), table.unlabelled
            )
            for entry in entries:  # the maps do not change with the prompts: resized once
                if entry.similarity_original is None:
                    resized = frame.logits_to_original(entry.similarity_map).clamp_(0.0, 1.0)
                    entry.similarity_original = resized.cpu().numpy()
        self.stats.decoder_calls += len(names)
        return Prediction(
            labels=label_image.cpu().numpy(),
            probabilities=probabilities.cpu().numpy(),
            similarity_maps=np.stack([_resized_map(e) for e in entries]),
            class_names=list(names),
            iou_predictions=ious.float().cpu().numpy(),
            label_table=table,
        )

    def _decode_window(
        self,
        names: list[str],
        entries: list[_ClassEntry],
        user_points: tuple[torch.Tensor, torch.Tensor] | None,
        threshold: float,
        bounds: np.ndarray,
    ) -> Prediction:
        """`_decode` of a window of a larger image (docs/architecture.md, "Tiling").

        Each class's map is re-normalised from this window's own similarity range to
        `bounds` ([K, 2], the whole image's). A class is decoded only where that map reaches
        `WINDOW_PRESENCE` (or with clicks), and then prompted as an untiled image is, from
        its own map; elsewhere its probability is 0. The returned maps are the re-normalised
        ones, so that the windows' maps blend into one map of the whole image.
        """
        bounds = np.asarray(bounds, dtype=np.float32)
        if bounds.shape != (len(names), 2):
            raise ValueError(f"similarity_bounds must be [{len(names)}, 2], got {bounds.shape}.")
        own = self.similarity_range(names).tolist()
        span = np.maximum(bounds[:, 1] - bounds[:, 0], 1e-12).tolist()
        maps = torch.stack(
            [
                (entry.similarity_map * (high - low) + low - g_low) / g_span
                for entry, (low, high), (g_low, _), g_span in zip(
                    entries, own, bounds.tolist(), span, strict=True
                )
            ]
        ).clamp_(0.0, 1.0)
        clicked = user_points is not None
        present = [k for k in range(len(names)) if clicked or maps[k].max() >= WINDOW_PRESENCE]
        frame = self._require_image().frame
        probabilities = np.zeros((len(names), *frame.original_size), np.float32)
        ious = np.zeros(len(names), np.float32)
        if present:
            part = self._decode(
                [names[k] for k in present], [entries[k] for k in present], user_points, 0.5
            )
            probabilities[present] = part.probabilities
            ious[present] = part.iou_predictions
        table = self.label_table_for(names)
        values = torch.tensor([table.values[n] for n in names], dtype=torch.int32)
        labels = labels_from_probabilities(
            torch.from_numpy(probabilities), threshold, values, table.unlabelled
        )
        return Prediction(
            labels=labels.numpy(),
            probabilities=probabilities,
            similarity_maps=frame.logits_to_original(maps).clamp_(0.0, 1.0).cpu().numpy(),
            class_names=list(names),
            iou_predictions=ious,
            label_table=table,
        )

    def _decode_objects(
        self,
        name: str,
        entry: _ClassEntry,
        objects: list[ObjectTensors],
        text_guide: bool,
        threshold: float,
    ) -> ObjectPrediction:
        """Prompt encoder + mask decoder once per object, then back to the original frame."""
        frame = self._require_image().frame
        similarity = entry.similarity_map[None]
        embedding = entry.embedding[None]
        logits, ious = [], []
        with self._compute(self.decoder_threads):
            text_dense = self.model.dense_prompt(similarity) if text_guide else None
            for prompt in objects:
                dense = text_dense
                if prompt.mask is not None:
                    dense = self.model.mask_prompt(prompt.mask[None].to(self.device))
                coords = labels = None
                if prompt.points is not None:
                    coords, labels = (t[None].to(self.device) for t in prompt.points)
                elif prompt.box is None and prompt.mask is None:  # the text alone
                    coords, labels = (
                        t.to(self.device) for t in self.model.sample_points(similarity)
                    )
                box = None if prompt.box is None else prompt.box[None].to(self.device)
                mask_logits, iou = self.model.decode(embedding, dense, coords, labels, box)
                logits.append(mask_logits)
                ious.append(iou)
            probabilities = frame.logits_to_original(torch.cat(logits).float()).sigmoid_()
        self.stats.decoder_calls += len(objects)
        probabilities_np = probabilities.cpu().numpy()
        return ObjectPrediction(
            masks=probabilities_np > threshold,
            probabilities=probabilities_np,
            iou_predictions=torch.cat(ious).float().cpu().numpy(),
            class_name=name,
        )

    # ------------------------------------------------------------------ runtime
    @contextlib.contextmanager
    def _compute(self, threads: int | None = None):
        """One unit of work (`model.threads.work_unit`: its turn in the compute lane and,
        on the CPU, `threads` intra-op threads or the policy's count), no autograd, the
        resolved precision."""
        with work_unit(self.device, threads), torch.inference_mode():
            with autocast(self.device, self.dtype):
                yield

    @contextlib.contextmanager
    def _memory_guard(self, what: str, n_classes: int):
        """Turn out-of-memory errors into one clear, actionable message."""
        try:
            yield
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            self.clear_cache()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            hint = "use device 'cpu' (slower, but it has more memory), "
            if self.device.type == "cpu":
                hint = "close other programs, "
            raise InferenceMemoryError(
                f"Out of memory on {self.device.type} while {what} ({n_classes} class"
                f"{'es' if n_classes != 1 else ''}). To fix: {hint}segment fewer classes at "
                f"once, or use a smaller batch (encoder batch size "
                f"{self.encoder_batch_size}), or a smaller model preset."
            ) from error


def _resized_map(entry: _ClassEntry) -> np.ndarray:
    """The class's similarity map in the original frame (resized by `_decode`)."""
    if entry.similarity_original is None:
        raise RuntimeError("The similarity map was not resized to the image frame.")
    return entry.similarity_original
