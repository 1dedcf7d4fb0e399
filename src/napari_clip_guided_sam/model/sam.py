"""segment-anything wiring: build SAM from a `SamConfig` with segment-anything's modules."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from torch import nn

from .config import SamConfig

# SAM's pixel statistics (ImageNet mean/std on 0-255 values), per RGB channel.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def build_sam(config: SamConfig) -> Sam:
    """A randomly initialised SAM at the size its base weights were made for
    (`SamConfig.weights_image_size`), with segment-anything's own classes.

    Mirrors segment-anything's `build_sam_vit_*` so official checkpoints load strictly;
    `resize_input` then brings it to `config.image_size`.
    """
    size = config.weights_image_size
    grid = size // config.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth,
            embed_dim=config.encoder_embed_dim,
            img_size=size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=config.global_attn_indexes,
            window_size=config.window_size,
            out_chans=config.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(size, size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    ).eval()


def resize_input(sam: Sam, config: SamConfig) -> None:
    """Make a SAM built by `build_sam` (base weights loaded) take `config.image_size` inputs.

    As SAM-family models fine-tuned at other sizes do: the absolute position embedding
    [1, g, g, C] is resized bilinearly to the new token grid, and the relative-position
    tables of the global-attention blocks ([2g - 1, d]) linearly to 2g' - 1 rows (both
    align_corners=False); windowed blocks keep their windows and tables. The prompt
    encoder's frame and embedding grid follow; its and the decoder's weights do not depend
    on the size. Called once, after the strict load, like CLIP's positional embedding
    resize.
    """
    encoder = sam.image_encoder
    old_grid = encoder.pos_embed.shape[1]
    grid = config.grid_size
    if grid == old_grid:
        return
    encoder.pos_embed = nn.Parameter(
        _resize(encoder.pos_embed.permute(0, 3, 1, 2), (grid, grid), "bilinear").permute(
            0, 2, 3, 1
        ),
        requires_grad=encoder.pos_embed.requires_grad,
    )
    for index in config.global_attn_indexes:
        attention = encoder.blocks[index].attn
        for name in ("rel_pos_h", "rel_pos_w"):
            table = getattr(attention, name)  # [2 g - 1, d]
            resized = _resize(table.T[None], (2 * grid - 1,), "linear")[0].T
            setattr(attention, name, nn.Parameter(resized, requires_grad=table.requires_grad))
    encoder.img_size = config.image_size
    prompt_encoder = sam.prompt_encoder
    prompt_encoder.input_image_size = (config.image_size, config.image_size)
    prompt_encoder.image_embedding_size = (grid, grid)
    prompt_encoder.mask_input_size = (4 * grid, 4 * grid)


def _resize(tensor: torch.Tensor, size: tuple[int, ...], mode: str) -> torch.Tensor:
    """Interpolate a [1, C, *spatial] tensor (meta tensors only change shape)."""
    tensor = tensor.detach()
    if tensor.device.type == "meta":
        return tensor.new_empty(*tensor.shape[:2], *size)
    resized = F.interpolate(tensor.float(), size=size, mode=mode, align_corners=False)
    return resized.to(tensor.dtype).contiguous()
