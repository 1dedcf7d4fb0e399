"""`clip-guided-sam segment`: images, stacks and folders to label TIFFs."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..data.formats import LABEL_SUFFIX, is_zarr, printable
from ..data.normalize import NORMALIZE_MODES
from ..inference.batch.options import OUTPUT_FORMATS
from ..inference.instances import INSTANCE_METHODS
from ..inference.tiles import TILING_MODES, TilingConfig
from ._cluster import add_cluster_arguments, check_cluster_arguments, run_on_cluster
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    UsageError,
    add_base_weights_arguments,
    add_compile_argument,
    add_embedding_cache_arguments,
    add_runtime_arguments,
    embedding_store_from_args,
    model_summary,
    predictor_from_args,
    preset_from_args,
)

_SEGMENT_EPILOG = """\
examples:
  clip-guided-sam segment cells.tif -c nucleus
      one image or stack -> segmented/cells_labels.tif next to it, plus a report
  clip-guided-sam segment images/ -c nucleus mitochondrion -o labels/ --checkpoint ft.safetensors
      every image in a folder; a second run skips finished files (--overwrite redoes them)
  clip-guided-sam segment nuclei.png -c nucleus --points clicks.csv --instances watershed
      steer with clicks (CSV columns x,y[,label][,slice][,file], or a napari Points export)
      and give every nucleus its own id
  clip-guided-sam segment movie.tif -c cell --instances watershed --link-slices
      one id per cell through a time series (Z stacks are linked unless --no-link-slices)
  clip-guided-sam segment embryo.ome.zarr -c nucleus --embedding-cache
      an OME-Zarr image, read chunk by chunk: labels into embryo.ome.zarr/labels/; slices
      precomputed with `clip-guided-sam precompute` need only the decoder

Outputs are label TIFFs (0 = background, k = the k-th class name; with --instances one id per
object) with the input's axes and pixel size, written only when complete. The report
(segment_report.csv/.json in the output folder) lists every file as done, skipped, failed or
unsupported, with the reason.

exit codes: 0 every file done or skipped, 1 some file failed (see the report) or the job
could not start, 2 bad command line, 130 interrupted (finished outputs are kept).
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment images, stacks or folders by class name; writes label TIFFs",
        description="Segment an image, a Z/T stack (read slice by slice, any size) or every\n"
        "image of a folder with CLIP-Guided SAM, by class name.",
        epilog=_SEGMENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="an image/stack file or a folder of images")
    parser.add_argument(
        "-c",
        "--classes",
        nargs="+",
        default=[],
        metavar="NAME",
        help="class names, e.g. -c nucleus 'cell membrane' (default: the classes the "
        "checkpoint was trained on)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FOLDER",
        help="output folder (default: a 'segmented' folder inside the input's folder)",
    )
    parser.add_argument("--checkpoint", default=None, help="fine-tuned checkpoint (.safetensors)")
    parser.add_argument(
        "--preset",
        default=None,
        help="model preset (default: the checkpoint's, else paper); 'tiny' needs no weights. "
        "Without --checkpoint the model runs zero-shot (no fine-tuned adapters)",
    )
    add_base_weights_arguments(parser)
    add_runtime_arguments(parser)
    add_compile_argument(parser)
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="mask probability above which a pixel is labelled (default 0.5)",
    )
    parser.add_argument("--points", default=None, metavar="CSV", help="clicks to steer the model")
    parser.add_argument(
        "--instances",
        choices=INSTANCE_METHODS,
        default=None,
        help="one id per object: connected components, or a watershed that also splits "
        "touching objects (nuclei)",
    )
    parser.add_argument(
        "--link-slices",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --instances: link each slice's objects to the previous slice's by overlap, "
        "so an object keeps one id through the stack (default: on for Z stacks, off for time "
        "series)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        nargs="+",
        default=None,
        metavar="INDEX",
        help="1-3 channel indices to use as RGB (needed for more than 3 channels)",
    )
    parser.add_argument(
        "--normalize",
        choices=NORMALIZE_MODES,
        default="slice",
        help="intensity percentiles per slice (default) or once per stack",
    )
    parser.add_argument(
        "--tiling",
        choices=tuple(TILING_MODES),
        default="auto",
        help="segment large images in overlapping windows of the model's input size "
        "(auto: when a side exceeds 1.5 times the input size; off: squash to the input)",
    )
    parser.add_argument(
        "--tile-shape",
        type=int,
        nargs="+",
        default=None,
        metavar="PX",
        help="tile height [width] in pixels (default: the model's input size minus 2 halos)",
    )
    parser.add_argument(
        "--halo",
        type=int,
        nargs="+",
        default=None,
        metavar="PX",
        help="context added on each side of a tile, height [width] (default: 1/8 of the input)",
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        default="auto",
        help="output format (default: OME-TIFF for OME-TIFF input, the image's own labels "
        "group for OME-Zarr input, else TIFF; ome.zarr: a standalone OME-Zarr store)",
    )
    parser.add_argument("--suffix", default=LABEL_SUFFIX, help="added to output names")
    parser.add_argument("--overwrite", action="store_true", help="redo files already done")
    parser.add_argument(
        "--allow-same-folder",
        action="store_true",
        help="allow the output folder to be the input folder",
    )
    add_embedding_cache_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_cluster_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.normalize import NormalizeConfig
    from ..inference import batch
    from ..inference.instances import InstanceConfig
    from ..inference.points import read_points_csv
    from ..model.guide import validate_class_names

    if args.link_slices and not args.instances:
        raise UsageError("--link-slices links instances: add --instances connected|watershed")
    check_cluster_arguments(args)
    source = Path(args.input)
    if not source.exists():
        raise CommandError(f"input not found: {printable(source)}")
    if args.points and not Path(args.points).is_file():
        raise UsageError(f"--points: file not found: {printable(args.points)}")
    if args.classes:
        try:
            validate_class_names(args.classes)
        except ValueError as error:
            raise UsageError(f"-c/--classes: {error}") from None
    folder = source if source.is_dir() and not is_zarr(source) else source.parent
    output = Path(args.output) if args.output else folder / "segmented"
    try:
        options = batch.SegmentOptions(
            class_names=tuple(args.classes),
            threshold=args.threshold,
            instances=InstanceConfig(args.instances) if args.instances else None,
            link_slices=args.link_slices,
            normalize=NormalizeConfig(
                mode=args.normalize, channels=tuple(args.channels) if args.channels else None
            ),
            tiling=TilingConfig(
                enabled=TILING_MODES[args.tiling],
                tile_shape=tuple(args.tile_shape) if args.tile_shape else None,
                halo=tuple(args.halo) if args.halo else None,
            ),
            output_format=args.output_format,
            suffix=args.suffix,
            overwrite=args.overwrite,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.points:
        options = dataclasses.replace(options, points=read_points_csv(args.points))
    store = embedding_store_from_args(args)
    preset = preset_from_args(args)
    if args.workers or args.scheduler:  # on a dask cluster: each worker loads the model
        return run_on_cluster(args, source, output, options, preset, report_outcome)
    predictor = predictor_from_args(args, preset)
    predictor.use_embedding_store(store)
    for line in model_summary(predictor.model, args.checkpoint, predictor.closed_set_classes):
        print(printable(line))
    settings = {"preset": preset, "checkpoint": args.checkpoint, "device": str(predictor.device)}
    events = batch.segment_batch(
        predictor,
        source,
        output,
        options,
        allow_same_folder=args.allow_same_folder,
        settings=settings,
    )
    bar, finished = None, None
    try:
        for event in events:
            if isinstance(event, batch.FileStarted):
                if bar is not None:
                    bar.close()
                bar = tqdm(
                    total=event.n_slices,
                    unit="slice",
                    disable=args.no_progress,
                    desc=f"[{event.file_index + 1}/{event.n_files}] "
                    f"{printable(Path(event.path).name)}",
                )
            elif isinstance(event, batch.SliceDone) and bar is not None:
                bar.update(1)
            elif isinstance(event, batch.FileDone):
                tqdm.write(f"done {printable(Path(event.path).name)} -> {printable(event.output)}")
            elif isinstance(event, batch.FileSkipped):
                tqdm.write(f"skipped {printable(event.path.name)}: {event.reason}")
            elif isinstance(event, batch.FileFailed):
                tqdm.write(f"FAILED {printable(event.path.name)}: {event.reason}", file=sys.stderr)
            elif isinstance(event, batch.BatchFinished):
                finished = event
    finally:
        if bar is not None:
            bar.close()
        events.close()
    return report_outcome(finished)


def report_outcome(finished) -> int:
    """Print how a batch ended (a `BatchFinished`); the exit code."""
    counts = f"{finished.n_done} done, {finished.n_skipped} skipped, {finished.n_failed} failed"
    report = printable(finished.report_path.with_suffix(".csv"))
    print(counts if finished.report_error else f"{counts}; report: {report}")
    if finished.stopped:
        print(f"error: stopped early: {finished.stopped}", file=sys.stderr)
    if finished.report_error:
        print(
            f"error: {finished.report_error}; the result of every file is listed above",
            file=sys.stderr,
        )
    failed = finished.n_failed or finished.stopped or finished.report_error
    return EXIT_FAILED if failed else EXIT_OK
