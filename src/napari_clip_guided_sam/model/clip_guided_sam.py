"""The composed CLIP-Guided SAM model: guide -> prompts -> adapted SAM.

See docs/architecture.md, "The method as implemented".

Every stage is a method so the predictor can cache what does not change: CLIP tokens per
image, text features per class, the image embedding per (image, text), and re-run only the
prompt encoder and mask decoder when the user's points move. `forward` chains them and is
differentiable (segment-anything's own `Sam.forward` runs under `no_grad`).

The leading encoder blocks that carry no adapter and do not train (the frozen prefix, in
SAM and in CLIP's visual tower) run once per image rather than once per image-class pair,
and with a `prefix_cache` once per image content at all (docs/architecture.md, "Frozen
prefix"). `activation_checkpointing` recomputes the trained SAM blocks in the backward pass
instead of keeping their activations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import prompts
from .adapters import EncoderAdapters, Guidance
from .base_weights import BaseWeights
from .config import ModelConfig
from .guide import SemanticGuide, VisualStreams
from .prefix_cache import Entry, PrefixStore, tensor_digest

ZERO_SHOT = "zero-shot (no fine-tuned adapters)"
FINE_TUNED = "fine-tuned adapters"


@dataclass
class GuideOutput:
    """CLIP guidance for B images x K classes (P = B * K pairs, image-major)."""

    text: torch.Tensor  # [B, K, D] guide text features
    tokens: torch.Tensor  # [B, 1+N, D] normalised CLIP Surgery tokens
    similarity: torch.Tensor  # [B, K, 1+N] per-token similarity s_i
    similarity_map: torch.Tensor  # [B, K, S, S] min-max normalised, in the SAM frame

    def adapter_guidance(self, config) -> Guidance:
        """Per-pair inputs of the semantic adapters (ablation switches applied)."""
        batch, classes = self.similarity.shape[:2]
        text = self.text.reshape(batch * classes, -1) if config.use_text else None
        vision = None
        if config.use_vision or config.use_similarity:
            no_input = self.tokens.new_zeros(())  # an input switched off adds nothing
            tokens = self.tokens[:, None] if config.use_vision else no_input
            sims = self.similarity[..., None] if config.use_similarity else no_input
            vision = (tokens + sims).expand(batch, classes, *self.tokens.shape[1:])
            vision = vision.reshape(batch * classes, *self.tokens.shape[1:])
        return Guidance(text=text, vision=vision)


@dataclass
class ModelOutput:
    """Masks for B images x K classes."""

    low_res_logits: torch.Tensor  # [B, K, L, L] mask logits (L = 256 at 1024 px)
    iou_predictions: torch.Tensor  # [B, K]
    similarity_map: torch.Tensor  # [B, K, S, S]
    point_coords: torch.Tensor  # [B, K, n, 2] (x, y) in the SAM input frame
    point_labels: torch.Tensor  # [B, K, n] 1 positive, 0 negative


class CLIPGuidedSAM(nn.Module):
    """SAM made semantically aware by CLIP Surgery features injected through adapters.

    Until its trainable tensors come from fine-tuning (`fine_tuned`), the model is the
    paper's training-free baseline, "CLIP Surgery + SAM": the similarity map prompts the
    vanilla SAM image encoder, the adapters are bypassed.
    """

    def __init__(self, config: ModelConfig, sam: Sam, guide: SemanticGuide):
        super().__init__()
        self.config = config
        self.sam = sam
        self.guide = guide
        self.base: BaseWeights | None = None  # where SAM and CLIP came from (the factory)
        self.adapters = (
            EncoderAdapters(sam.image_encoder, guide.embed_dim, config.adapters)
            if config.adapters.enabled
            else None
        )
        self.fine_tuned = False
        # Runtime choices, not part of the architecture (training and the predictor set them).
        self.prefix_cache: PrefixStore | None = None
        self.activation_checkpointing = False

    @property
    def device(self) -> torch.device:
        return self.sam.mask_decoder.iou_token.weight.device

    @property
    def base_weights(self) -> str:
        """Short form of `base`: "official", "random:<seed>" or "custom"."""
        return "unknown" if self.base is None else self.base.tag

    @property
    def fine_tuned(self) -> bool:
        """Whether adapters and decoder are fine-tuned (a checkpoint was applied, or the
        training engine trains them). False: zero-shot, the adapters are bypassed."""
        return self._fine_tuned

    @fine_tuned.setter
    def fine_tuned(self, value: bool) -> None:
        self._fine_tuned = bool(value)
        if self.adapters is not None:
            self.adapters.active = self._fine_tuned

    @property
    def zero_shot(self) -> bool:
        """The training-free baseline: CLIP Surgery prompts and vanilla SAM."""
        return not self._fine_tuned

    @property
    def adapter_state(self) -> str:
        """What users are told: `ZERO_SHOT` or `FINE_TUNED`."""
        return FINE_TUNED if self._fine_tuned else ZERO_SHOT

    # ------------------------------------------------------------------ checks
    def check_images(self, images: torch.Tensor) -> None:
        """Images must be a SAM-normalised float batch [B, 3, S, S] (see `prepare_image`)."""
        size = self.config.sam.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"Expected SAM inputs of shape [B, 3, {size}, {size}], got {tuple(images.shape)}; "
                "prepare images with model.preprocess.prepare_image."
            )
        if not images.is_floating_point():
            raise ValueError(f"Expected float SAM inputs, got {images.dtype}.")

    def check_points(self, coords: torch.Tensor) -> None:
        """Point coordinates [..., 2] must lie inside the SAM input frame."""
        size = self.config.sam.image_size
        if coords.numel() and (coords.min() < 0 or coords.max() >= size):
            raise ValueError(
                f"Points must lie inside the {size}x{size} input frame (x, y in [0, {size})); "
                f"got values from {coords.min().item():g} to {coords.max().item():g}."
            )

    def check_boxes(self, boxes: torch.Tensor) -> None:
        """Boxes [P, 4] (x0, y0, x1, y1) must be finite, inside the SAM input frame, with
        x0 < x1 and y0 < y1."""
        size = self.config.sam.image_size
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"Boxes must be [P, 4] as (x0, y0, x1, y1), got {tuple(boxes.shape)}.")
        if not torch.isfinite(boxes).all():
            raise ValueError("Boxes must be finite numbers (no NaN or infinity).")
        if boxes.numel() and (boxes.min() < 0 or boxes.max() > size):
            raise ValueError(
                f"Boxes must lie inside the {size}x{size} input frame; got corners from "
                f"{boxes.min().item():g} to {boxes.max().item():g}."
            )
        if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            raise ValueError("Boxes need x0 < x1 and y0 < y1 (corners top-left, bottom-right).")

    # ------------------------------------------------------------------ guide
    def clip_input(self, images: torch.Tensor) -> torch.Tensor:
        """SAM input [B, 3, S, S] resized bilinearly (no antialias) to CLIP's size."""
        size = self.config.clip.clip_size
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)

    def clip_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Raw CLIP Surgery tokens, text-independent: [B, 3, S, S] -> [B, 1+N, D].

        The visual blocks before the first trainable one run one image at a time (so that
        a cached and a computed prefix are the same numbers) and, with a prefix cache, once
        per image content.
        """
        depth = self.clip_prefix_depth()
        if depth == 0:
            return self.guide.encode_image_tokens(self.clip_input(images))

        def streams_of(image: torch.Tensor) -> Entry:
            x_ori, x_new = self.guide.visual_streams(self.clip_input(image), depth)
            return (x_ori,) if x_new is x_ori else (x_ori, x_new)  # one tensor before surgery

        entries = [self._prefix("clip", image[None], depth, streams_of) for image in images]
        ori = _join([entry[0] for entry in entries])
        new = _join([entry[-1] for entry in entries])
        streams: VisualStreams = (ori, ori if all(len(e) == 1 for e in entries) else new)
        return self.guide.finish_tokens(streams, depth)

    def text_features(self, class_names: list[str]) -> torch.Tensor:
        """Guide text features of K class names: [K, D]."""
        return self.guide.text_features(class_names)

    def guidance(
        self, images: torch.Tensor, text: torch.Tensor, clip_tokens: torch.Tensor | None = None
    ) -> GuideOutput:
        """Similarities of B images to K classes.

        images: [B, 3, S, S]; text: [K, D] (shared) or [B, K, D]; clip_tokens: optional
        cached `clip_tokens(images)`.
        """
        if clip_tokens is None:
            clip_tokens = self.clip_tokens(images)
        batch = clip_tokens.shape[0]
        if text.dim() == 2:
            text = text[None].expand(batch, *text.shape)
        tokens = self.guide.normalize_tokens(clip_tokens)
        similarity = self.guide.similarity(tokens, text)
        return GuideOutput(
            text=text,
            tokens=tokens,
            similarity=similarity,
            similarity_map=self.guide.similarity_map(similarity, self.config.sam.image_size),
        )

    # ------------------------------------------------------------------ prompts
    def dense_prompt(self, similarity_map: torch.Tensor) -> torch.Tensor:
        """[P, S, S] -> SAM `masks` prompt [P, 1, L, L]."""
        guide = self.config.guide
        return prompts.dense_prompt(
            similarity_map, self.config.sam.low_res_size, guide.threshold, guide.dense_prompt_scale
        )

    def mask_prompt(self, masks: torch.Tensor) -> torch.Tensor:
        """Masks in the SAM frame [P, S, S] (e.g. a previous slice's object) -> SAM `masks`
        prompt [P, 1, L, L], in the 0/scale form of the text's dense prompt."""
        size, scale = self.config.sam.low_res_size, self.config.guide.dense_prompt_scale
        return prompts.dense_prompt(masks, size, 0.5, scale)

    def sample_points(
        self, similarity_map: torch.Tensor, generator: prompts.Generators | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text-only points from [P, S, S] maps: coords [P, n, 2], labels [P, n].

        `generator`: one for all maps, or one per map. Without a generator, a CPU generator
        seeded with `guide.point_seed` is used, so inference repeats exactly.
        """
        guide = self.config.guide
        if generator is None:
            generator = torch.Generator().manual_seed(guide.point_seed)
        return prompts.sample_points_from_map(
            similarity_map, guide.threshold, guide.n_points, generator, guide.n_negative_points
        )

    # ------------------------------------------------------------------ frozen prefix
    def encoder_prefix_depth(self) -> int:
        """How many leading SAM encoder blocks depend on the image only and never train:
        those before the first adapted block (every block when zero-shot), as long as none
        of their parameters (or the patch and position embeddings) is trainable."""
        encoder = self.sam.image_encoder
        blocks = encoder.blocks
        stop = len(blocks)
        if self.adapters is not None and self.adapters.active:
            adapted = self.adapters.adapted_blocks
            stop = adapted[0] if adapted else stop
        stem = [*encoder.patch_embed.parameters(), encoder.pos_embed]
        if any(p is not None and p.requires_grad for p in stem):
            return 0
        return _first_trainable(blocks[:stop])

    def clip_prefix_depth(self) -> int:
        """How many leading CLIP visual blocks have no trainable parameter (and neither the
        patch embedding, class and position embeddings nor `ln_pre`)."""
        visual = self.guide.clip.visual
        stem = [
            *visual.conv1.parameters(),
            *visual.ln_pre.parameters(),
            visual.class_embedding,
            visual.positional_embedding,
        ]
        if any(p.requires_grad for p in stem):
            return 0
        return _first_trainable(visual.transformer.resblocks)

    def encoder_prefix(self, images: torch.Tensor, depth: int) -> torch.Tensor:
        """Tokens entering SAM encoder block `depth`, computed without autograd (one image at
        a time, so a cached and a computed prefix are the same numbers): [B, 3, S, S] ->
        [B, g, g, C]. Only for `depth <= encoder_prefix_depth()`."""
        encoder = self.sam.image_encoder

        def tokens_of(image: torch.Tensor) -> Entry:
            with torch.no_grad():
                x = encoder.patch_embed(image)
                if encoder.pos_embed is not None:
                    x = x + encoder.pos_embed
                for block in encoder.blocks[:depth]:
                    x = block(x)
            return (x,)

        entries = [self._prefix("sam", image[None], depth, tokens_of) for image in images]
        return _join([entry[0] for entry in entries])

    def encoder_runs_by_block(self) -> bool:
        """Whether `encode_image` runs SAM's encoder block by block rather than in one call
        (the call that `model.compilation` compiles): when part of it is a frozen prefix to
        share between classes or cache, or blocks are recomputed in the backward."""
        adapted = self.adapters is not None and not self.zero_shot
        return self._runs_by_block(adapted, self.encoder_prefix_depth())

    def _runs_by_block(self, adapted: bool, prefix_depth: int) -> bool:
        shares_prefix = adapted or self._caches("sam")
        return (prefix_depth > 0 and shares_prefix) or self.activation_checkpointing

    def _caches(self, part: str) -> bool:
        return self.prefix_cache is not None and part in self.prefix_cache.parts

    def _prefix(
        self, part: str, image: torch.Tensor, depth: int, compute: Callable[[torch.Tensor], Entry]
    ) -> Entry:
        """`compute(image)`, or the entry a prefix cache holds for this image content and
        everything else the prefix's numbers depend on."""
        store = self.prefix_cache
        if store is None or part not in store.parts:
            return compute(image)
        device = image.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        fused = type(self.sam.image_encoder.blocks[0].attn).__name__, self.guide.fused_attention
        active = self.adapters is not None and self.adapters.active
        context = (part, depth, self.training, active, fused, autocast, str(image.device))
        key = f"{part}-{depth}-{tensor_digest(repr(context).encode())}-{tensor_digest(image)}"
        entry = store.get(key)
        if entry is None:
            entry = compute(image)
            store.put(key, entry)
        return entry

    # ------------------------------------------------------------------ SAM
    def encode_image(self, images: torch.Tensor, guide_output: GuideOutput) -> torch.Tensor:
        """Adapted SAM image embeddings (vanilla ones when zero-shot), one per image-class
        pair.

        images: [B, 3, S, S] -> [B * K, C, g, g] (C = 256, g = 64 at 1024 px).
        """
        classes = guide_output.similarity.shape[1]
        encoder = self.sam.image_encoder
        adapted = self.adapters is not None and not self.zero_shot
        depth = self.encoder_prefix_depth()
        split = self._runs_by_block(adapted, depth)  # (`encoder_runs_by_block`)
        if not adapted:  # the embedding ignores the class
            if split:
                embeddings = self._encoder_suffix(self.encoder_prefix(images, depth), depth)
            else:
                embeddings = encoder(images)
            return embeddings.repeat_interleave(classes, dim=0) if classes > 1 else embeddings
        assert self.adapters is not None
        guidance = guide_output.adapter_guidance(self.config.adapters)
        if not split:
            pairs = images.repeat_interleave(classes, dim=0) if classes > 1 else images
            with self.adapters.guided(guidance):
                return encoder(pairs)
        tokens = self.encoder_prefix(images, depth)
        pairs = tokens.repeat_interleave(classes, dim=0) if classes > 1 else tokens
        with self.adapters.guided(guidance):
            return self._encoder_suffix(pairs, depth, guidance)

    def _encoder_suffix(
        self, tokens: torch.Tensor, start: int, guidance: Guidance | None = None
    ) -> torch.Tensor:
        """SAM encoder blocks `start`.. and the neck: [P, g, g, C] -> [P, 256, g, g].

        With activation checkpointing (and autograd on), each block keeps only its input
        and is recomputed in the backward pass, under the same guidance.
        """
        encoder = self.sam.image_encoder
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for block in encoder.blocks[start:]:
            if recompute:
                tokens = checkpoint(self._run_block, block, tokens, guidance, use_reentrant=False)
            else:
                tokens = block(tokens)
        return encoder.neck(tokens.permute(0, 3, 1, 2))

    def _run_block(
        self, block: nn.Module, tokens: torch.Tensor, guidance: Guidance | None
    ) -> torch.Tensor:
        if guidance is None or self.adapters is None:
            return block(tokens)
        with self.adapters.guided(guidance):  # also when recomputed during the backward
            return block(tokens)

    def decode(
        self,
        embeddings: torch.Tensor,
        dense: torch.Tensor | None,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder for P pairs, one mask each.

        embeddings: [P, C, g, g]; dense: [P, 1, L, L] or None (no dense prompt: SAM's
        "no mask" embedding); point_coords: [P, n, 2] (x, y in the SAM frame) or None;
        point_labels: [P, n]; boxes: [P, 4] (x0, y0, x1, y1 in the SAM frame) or None.
        Returns logits [P, L, L] and IoU [P].
        """
        if boxes is not None:
            self.check_boxes(boxes)
        prompt_encoder, decoder = self.sam.prompt_encoder, self.sam.mask_decoder
        position = prompt_encoder.get_dense_pe()
        logits, ious = [], []
        for index in range(embeddings.shape[0]):
            pair = slice(index, index + 1)
            points = None
            if point_coords is not None:
                assert point_labels is not None
                points = (point_coords[pair], point_labels[pair])
            sparse, dense_embedding = prompt_encoder(
                points=points,
                boxes=None if boxes is None else boxes[pair].float(),
                masks=None if dense is None else dense[pair].to(embeddings.dtype),
            )
            mask_logits, iou = decoder(
                image_embeddings=embeddings[index : index + 1],
                image_pe=position,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense_embedding,
                multimask_output=False,
            )
            logits.append(mask_logits[:, 0])
            ious.append(iou[:, 0])
        return torch.cat(logits), torch.cat(ious)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: torch.Tensor,
        text: torch.Tensor,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        generator: prompts.Generators | None = None,
        clip_tokens: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Masks for every image x class.

        images: [B, 3, S, S] SAM-normalised; text: [K, D] or [B, K, D] guide text features.
        Manual mode: point_coords [B, n, 2] or [B, K, n, 2] (x, y in the SAM frame) with
        point_labels [B, n] / [B, K, n]. Text-only mode (no points): points are sampled from
        each similarity map with `generator` (default: seeded, repeatable), or with the
        generator of its image when given one per image.
        """
        self.check_images(images)
        if point_coords is not None:  # before the CLIP pass, so a bad call fails cheaply
            self.check_points(point_coords)
        guide_output = self.guidance(images, text, clip_tokens)
        batch, classes = guide_output.similarity.shape[:2]
        maps = guide_output.similarity_map.flatten(0, 1)  # [P, S, S]
        with torch.no_grad():
            dense = self.dense_prompt(maps)
            if point_coords is None:
                if generator is not None and not isinstance(generator, torch.Generator):
                    generator = [g for g in generator for _ in range(classes)]  # per image
                coords, labels = self.sample_points(maps, generator)
            else:
                coords, labels = _pair_points(point_coords, point_labels, batch, classes)
        embeddings = self.encode_image(images, guide_output)
        logits, ious = self.decode(
            embeddings, dense, coords.to(images.device), labels.to(images.device)
        )
        return ModelOutput(
            low_res_logits=logits.reshape(batch, classes, *logits.shape[-2:]),
            iou_predictions=ious.reshape(batch, classes),
            similarity_map=guide_output.similarity_map,
            point_coords=coords.reshape(batch, classes, *coords.shape[-2:]),
            point_labels=labels.reshape(batch, classes, -1),
        )


def _join(parts: list[torch.Tensor]) -> torch.Tensor:
    """Per-image tensors as one batch; a single one as it is (its memory layout, which the
    next kernels' rounding follows, stays that of the unsplit encoder's)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _first_trainable(blocks) -> int:
    """Index of the first block with a trainable parameter (len(blocks) when none has)."""
    for index, block in enumerate(blocks):
        if any(p.requires_grad for p in block.parameters()):
            return index
    return len(blocks)


def _pair_points(
    coords: torch.Tensor, labels: torch.Tensor | None, batch: int, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image or per-pair points -> per-pair [P, n, 2] and [P, n]."""
    if labels is None:
        raise ValueError("point_labels are required with point_coords (1 positive, 0 negative).")
    if coords.shape[-1] != 2 or coords.shape[:-1] != labels.shape:
        raise ValueError(
            f"point_coords must be [..., n, 2] matching point_labels [..., n]; got "
            f"{tuple(coords.shape)} and {tuple(labels.shape)}."
        )
    if coords.dim() == 3:
        if coords.shape[0] != batch:
            raise ValueError(f"Expected points for {batch} images, got {coords.shape[0]}.")
        coords = coords[:, None].expand(batch, classes, *coords.shape[1:])
        labels = labels[:, None].expand(batch, classes, labels.shape[-1])
    elif coords.dim() != 4 or coords.shape[:2] != (batch, classes):
        raise ValueError(
            f"point_coords must be [B, n, 2] or [B, K, n, 2] with B={batch}, K={classes}; "
            f"got {tuple(coords.shape)}."
        )
    return coords.reshape(batch * classes, -1, 2).float(), labels.reshape(batch * classes, -1)
