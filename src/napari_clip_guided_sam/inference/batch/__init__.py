"""Batch segmentation of stacks and folders: generators of progress events (no Qt).

One code path serves the CLI (`clip-guided-sam segment`, driven with tqdm) and the plugin's
menu commands (driven in a napari worker, cancelled at the next yield):

- :mod:`.stack`: :func:`segment_stack` segments every 2D slice of one image or stack into a
  label TIFF written only when complete (:func:`segment_stack_to_array`: into memory);
- :mod:`.folder`: :func:`segment_batch` runs it over a file or a folder, skipping finished
  files and recording failures;
- :mod:`.report`: the CSV + JSON report rewritten after each file;
- :mod:`.options`: :class:`SegmentOptions` and :class:`SlicePredictor`, what a run needs of
  a predictor.
"""

from .folder import (
    BatchEvent,
    BatchFinished,
    BatchSummary,
    FileDone,
    FileFailed,
    FileSkipped,
    FileStarted,
    collect_inputs,
    output_path_for,
    segment_batch,
)
from .options import OUTPUT_FORMATS, SegmentOptions, SlicePredictor, resolve_class_names
from .report import REPORT_NAME
from .stack import SliceDone, iter_slice_labels, segment_stack, segment_stack_to_array

__all__ = [
    "OUTPUT_FORMATS",
    "REPORT_NAME",
    "BatchEvent",
    "BatchFinished",
    "BatchSummary",
    "FileDone",
    "FileFailed",
    "FileSkipped",
    "FileStarted",
    "SegmentOptions",
    "SliceDone",
    "SlicePredictor",
    "collect_inputs",
    "iter_slice_labels",
    "output_path_for",
    "resolve_class_names",
    "segment_batch",
    "segment_stack",
    "segment_stack_to_array",
]
