"""CLIP-Guided SAM for napari: text-prompted, trainable segmentation of scientific images."""

__version__ = "0.1.0"
