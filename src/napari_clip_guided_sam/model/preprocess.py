"""From an RGB image to SAM's input frame and back (docs/architecture.md, "Forward pass")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import ResizeMode
from .sam import PIXEL_MEAN, PIXEL_STD

# The smallest image side the model segments: SAM and CLIP see the image in 16-pixel
# patches; a smaller image holds less than one patch of detail and gives no useful mask.
MIN_IMAGE_SIDE = 16


def validate_rgb(image: np.ndarray) -> None:
    """The model's input contract: a uint8 array of shape [H, W, 3], both sides at least
    `MIN_IMAGE_SIDE` pixels. The CLI, batch runs, training and the widgets all pass here."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"Expected a numpy array, got {type(image).__name__}.")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"Expected an RGB image of shape (H, W, 3), got shape {image.shape}; convert "
            "grey or multichannel data with data.normalize.to_model_rgb first."
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"Expected a uint8 RGB image, got dtype {image.dtype}; scale it to 0-255 with "
            "data.normalize.to_model_rgb first."
        )
    if min(image.shape[:2]) < 1:
        raise ValueError(f"Image is empty: shape {image.shape}.")
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        height, width = image.shape[:2]
        raise ValueError(
            f"The image is {width} x {height} pixels, too small to segment: both sides must "
            f"be at least {MIN_IMAGE_SIDE} pixels; use a larger image."
        )


@dataclass(frozen=True)
class InputFrame:
    """How an image of `original_size` (H, W) maps onto the square SAM input frame."""

    original_size: tuple[int, int]
    input_size: int
    mode: ResizeMode

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Factors from original (x, y) pixel coordinates to input-frame coordinates."""
        height, width = self.original_size
        if self.mode == "squash":
            return self.input_size / width, self.input_size / height
        factor = self.input_size / max(height, width)
        return factor, factor

    @property
    def content_size(self) -> tuple[int, int]:
        """(h, w) of the image content inside the input frame (the rest is padding)."""
        if self.mode == "squash":
            return self.input_size, self.input_size
        height, width = self.original_size
        factor = self.input_size / max(height, width)
        return int(height * factor + 0.5), int(width * factor + 0.5)

    def points_to_input(self, points_xy: np.ndarray) -> np.ndarray:
        """Original-image (x, y) points [n, 2] -> input-frame coordinates [n, 2]."""
        points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(points_xy).all():
            bad = points_xy[~np.isfinite(points_xy).all(axis=1)].tolist()
            raise ValueError(
                f"Point(s) {bad} have coordinates that are not numbers (NaN or infinite); "
                "give each click as finite x, y pixel positions."
            )
        height, width = self.original_size
        outside = (
            (points_xy[:, 0] < 0)
            | (points_xy[:, 1] < 0)
            | (points_xy[:, 0] >= width)
            | (points_xy[:, 1] >= height)
        )
        if outside.any():
            raise ValueError(
                f"Point(s) {points_xy[outside].tolist()} lie outside the image "
                f"(x in [0, {width}), y in [0, {height}))."
            )
        sx, sy = self.scale_xy
        return points_xy * np.array([sx, sy])

    def boxes_to_input(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Original-image boxes [n, 4] (x0, y0, x1, y1) -> input-frame boxes [n, 4].

        Corners are pixel coordinates like points; a box reaching past the image border is
        clipped to it (a rectangle drawn to the edge), one lying wholly outside is an error,
        as are non-finite corners and boxes without area (x0 >= x1 or y0 >= y1).
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"Boxes must have shape (n, 4) as (x0, y0, x1, y1), got {boxes.shape}."
            )
        if not np.isfinite(boxes).all():
            raise ValueError("Box corners must be finite numbers (no NaN or infinity).")
        inverted = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if inverted.any():
            raise ValueError(
                f"Box(es) {boxes[inverted].tolist()} have no area: a box is (x0, y0, x1, y1) "
                "with x0 < x1 and y0 < y1."
            )
        height, width = self.original_size
        limits = np.array([width, height, width, height], dtype=np.float64)
        clipped = np.clip(boxes, 0.0, limits)
        outside = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
        if outside.any():
            raise ValueError(
                f"Box(es) {boxes[outside].tolist()} lie outside the image "
                f"(x in [0, {width}], y in [0, {height}])."
            )
        sx, sy = self.scale_xy
        return clipped * np.array([sx, sy, sx, sy])

    def mask_to_input(self, mask: np.ndarray) -> torch.Tensor:
        """A mask of the original image [H, W] -> float [S, S] in the input frame (bilinear;
        0 in the padding), e.g. to become a dense prompt (`prompts.dense_prompt`)."""
        mask = np.asarray(mask)
        if mask.shape != tuple(self.original_size):
            raise ValueError(
                f"The mask has shape {mask.shape}, the image {tuple(self.original_size)}."
            )
        tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
        content_h, content_w = self.content_size
        resized = F.interpolate(
            tensor, (content_h, content_w), mode="bilinear", align_corners=False
        )
        pad_h, pad_w = self.input_size - content_h, self.input_size - content_w
        return F.pad(resized, (0, pad_w, 0, pad_h))[0, 0]

    def logits_to_original(self, low_res_logits: torch.Tensor) -> torch.Tensor:
        """Decoder logits [..., L, L] -> logits at the original size [..., H, W]."""
        lead = low_res_logits.shape[:-2]
        logits = low_res_logits.reshape(-1, 1, *low_res_logits.shape[-2:]).float()
        if self.mode == "longest_side_pad":
            logits = F.interpolate(
                logits, (self.input_size,) * 2, mode="bilinear", align_corners=False
            )
            content_h, content_w = self.content_size
            logits = logits[..., :content_h, :content_w]
        logits = F.interpolate(logits, self.original_size, mode="bilinear", align_corners=False)
        return logits.reshape(*lead, *self.original_size)


def prepare_image(
    image: np.ndarray, input_size: int, mode: ResizeMode = "squash"
) -> tuple[torch.Tensor, InputFrame]:
    """uint8 RGB [H, W, 3] -> SAM-normalised input [3, S, S] (float32) and its frame.

    "squash" resizes to S x S bilinearly with antialiasing through PIL, as the authors
    trained; "longest_side_pad" is SAM's own transform (longest side to S, pad bottom-right).
    """
    validate_rgb(image)
    frame = InputFrame((image.shape[0], image.shape[1]), input_size, mode)
    if mode == "squash":
        resized = np.asarray(
            Image.fromarray(image).resize((input_size, input_size), Image.Resampling.BILINEAR)
        )
    elif mode == "longest_side_pad":
        content_h, content_w = frame.content_size
        resized = np.asarray(
            Image.fromarray(image).resize((content_w, content_h), Image.Resampling.BILINEAR)
        )
    else:
        raise ValueError(f"Unknown resize mode {mode!r}; use 'squash' or 'longest_side_pad'.")
    tensor = torch.from_numpy(np.array(resized, dtype=np.float32)).permute(2, 0, 1)
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    tensor = (tensor - mean) / std
    if mode == "longest_side_pad":
        pad_h, pad_w = input_size - tensor.shape[1], input_size - tensor.shape[2]
        tensor = F.pad(tensor, (0, pad_w, 0, pad_h))
    return tensor, frame
