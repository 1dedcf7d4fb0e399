"""Reading images: TIFF/OME-TIFF/ImageJ via tifffile, PNG/JPEG/BMP via Pillow, OME-Zarr and
plain zarr arrays via zarr (`data.ome_zarr`).

Images come back as :class:`~.image.ImageData`: the array, its axes letters (tifffile's,
uppercase, with the RGB samples axis ``S`` renamed ``C``), the physical pixel size and unit,
and the metadata worth keeping. :func:`read_image_lazy` opens stacks larger than RAM.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .axes import PLANE_AXES, SPATIAL_AXES
from .formats import UNSUPPORTED, is_supported, is_tiff, is_zarr
from .image import ImageData, ImageReadError
from .ome_zarr import read_zarr_image
from .units import MICROMETRE, length_unit

__all__ = ["read_image", "read_image_lazy"]


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if is_zarr(path) and not path.is_dir():
        raise ImageReadError(f"cannot read {path}: a zarr store is a folder, this is a file")
    if not is_supported(path):
        raise ImageReadError(f"cannot read {path}: {UNSUPPORTED}")


def read_image(path: str | Path) -> ImageData:
    """Read an image or stack into memory.

    TIFF/OME-TIFF: series 0, axes from the series, pixel size from OME (PhysicalSizeX/Y/Z),
    ImageJ (resolution tags + ``spacing``/``unit``), our own shaped metadata, or resolution
    tags in centimetres as a fallback. PNG/JPEG/BMP: ``"YX"`` or ``"YXC"`` (RGBA keeps its 4
    channels), no calibration. OME-Zarr: the full-resolution level with its NGFF axes,
    scale and unit (`data.ome_zarr`); a plain zarr array: default axes, no calibration.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is corrupt, truncated or of an unsupported type.
    """
    path = Path(path)
    _check_readable(path)
    try:
        if is_zarr(path):
            return read_zarr_image(path, lazy=False)
        if is_tiff(path):
            return _read_tiff(path)
        return _read_pil(path)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile/Pillow raise many types for bad files
        raise ImageReadError(
            f"cannot read {path}: {type(exc).__name__}: {exc}; the file is corrupt, truncated "
            "or not an image: copy or export it again"
        ) from exc


class _DamageLog(logging.Handler):
    """Collects the errors tifffile logs (and works around) while it opens a file."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:  # another thread's file is not this one
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _refuse_damaged_tiff(path: Path):
    """tifffile reads around a damaged page table (a truncated stack opens as its first
    pages, silently); refuse such a file instead of segmenting part of it."""
    log = _DamageLog()
    logger = logging.getLogger("tifffile")
    logger.addHandler(log)
    try:
        yield
    finally:
        logger.removeHandler(log)
    if log.messages:
        raise ImageReadError(
            f"cannot read {path}: the file is damaged or truncated ({log.messages[0]}); copy "
            "or export it again"
        )


def _read_tiff(path: Path) -> ImageData:
    with _refuse_damaged_tiff(path), tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ImageReadError(f"cannot read {path}: the TIFF file holds no image series")
        series = tif.series[0]
        array = series.asarray()
        axes = _clean_axes(series.axes)
        pixel_size, unit, metadata = _tiff_calibration(tif, axes)
    metadata["dtype"] = str(array.dtype)
    return ImageData(array, axes, pixel_size, unit, path, metadata)


def read_image_lazy(path: str | Path) -> ImageData:
    """Open an image without reading its pixels: ``array`` is a dask array.

    TIFF stacks are read one page (2D slice, plus RGB samples) per chunk, from a memory map
    when the file is uncompressed and contiguous, so a stack larger than RAM can be processed
    slice by slice: ``np.asarray(image.array[z])`` reads one slice. Zarr stores are read chunk
    by chunk (the dask array has the store's chunks). Other formats are small and read
    eagerly (then wrapped in dask for a uniform interface).

    Raises:
        FileNotFoundError, ImageReadError: as :func:`read_image`.
    """
    import dask.array as da

    path = Path(path)
    _check_readable(path)
    if is_zarr(path):
        return read_zarr_image(path, lazy=True)
    if not is_tiff(path):
        return _eager_as_lazy(path)
    try:
        with _refuse_damaged_tiff(path), tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(f"cannot read {path}: the TIFF file holds no image series")
            series = tif.series[0]
            axes = _clean_axes(series.axes)
            pixel_size, unit, metadata = _tiff_calibration(tif, axes)
            store = _TiffPageStore(path, series)
            metadata["dtype"] = str(store.dtype)
        mapped = _try_memmap(path, store.shape)
        source: Any = store if mapped is None else mapped
        chunks = (1,) * (len(store.shape) - len(store.page_shape)) + store.page_shape
        name = f"tiff-{path.resolve()}-{path.stat().st_mtime_ns}"
        array = da.from_array(source, chunks=chunks, name=name, asarray=True, lock=False)
    except _NotPaged:  # an unusual layout (or a damaged file): read it whole, which says which
        return _eager_as_lazy(path)
    except (ImageReadError, FileNotFoundError):
        raise
    except Exception as exc:
        raise ImageReadError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    return ImageData(array, axes, pixel_size, unit, path, metadata)


def _eager_as_lazy(path: Path) -> ImageData:
    """`read_image`, wrapped in one dask chunk for the lazy interface."""
    import dask.array as da

    image = read_image(path)
    image.array = da.from_array(image.array, chunks=image.array.shape)
    return image


class _NotPaged(ImageReadError):
    """A TIFF series that is not a plain stack of pages (read it whole instead)."""


def _try_memmap(path: Path, shape: tuple[int, ...]) -> _MappedPages | None:
    try:
        mapped = tifffile.memmap(path, series=0, mode="r")
    except Exception:  # compressed, tiled or not contiguous: read page by page instead
        return None
    return _MappedPages(mapped) if tuple(mapped.shape) == tuple(shape) else None


class _MappedPages:
    """A memory-mapped TIFF series as a plain array-like that maps the file per access.

    dask's ``from_array`` copies any input with a ``copy`` method (a memmap: the whole stack,
    into RAM), and a long-lived map keeps every page read resident; mapping per access and
    copying out only the requested part keeps memory flat over a long stack.
    """

    def __init__(self, mapped: np.memmap) -> None:
        if mapped.filename is None:
            raise ValueError("not a memory map of a file")
        self._file: str = mapped.filename
        self._offset = mapped.offset
        self.shape, self.dtype, self.ndim = mapped.shape, mapped.dtype, mapped.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            mapped = np.memmap(self._file, self.dtype, "r", self._offset, self.shape)
            return np.array(mapped[key])
        except (OSError, ValueError) as error:  # truncated or changed since it was opened
            raise _unreadable_pixels(self._file, error) from error


class _TiffPageStore:
    """Array-like over series 0 of a TIFF file that reads only the pages an index needs.

    The trailing axes are one page (``[Y, X]`` or ``[Y, X, S]``); the leading axes enumerate
    pages in row-major order. Each access reopens the file, so it is safe across threads.
    """

    def __init__(self, path: Path, series: tifffile.TiffPageSeries) -> None:
        self.path = path
        self.shape = tuple(int(s) for s in series.shape)
        self.dtype = np.dtype(series.dtype)
        self.ndim = len(self.shape)
        self.page_shape = tuple(int(s) for s in series.keyframe.shape)
        n_lead = self.ndim - len(self.page_shape)
        self.lead_shape = self.shape[:n_lead]
        if (
            n_lead < 0
            or self.shape[n_lead:] != self.page_shape
            or (math.prod(self.lead_shape) != len(series))
        ):
            raise _NotPaged(
                f"cannot open {path} lazily: series shape {self.shape} is not a stack of "
                f"{len(series)} pages of shape {self.page_shape}"
            )

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        lead_key, page_key = key[: len(self.lead_shape)], key[len(self.lead_shape) :]
        lead_ranges = [
            range(n)[k] if isinstance(k, slice) else [int(k)]
            for k, n in zip(lead_key, self.lead_shape, strict=True)
        ]
        try:
            pages = [
                tifffile.imread(self.path, series=0, key=_flat_index(lead, self.lead_shape))[
                    page_key
                ]
                for lead in itertools.product(*lead_ranges)
            ]
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"image file not found (moved or deleted?): {self.path}"
            ) from error
        except Exception as error:  # tifffile and its codecs raise many types for bad data
            raise _unreadable_pixels(self.path, error) from error
        out_lead = [
            len(r) for r, k in zip(lead_ranges, lead_key, strict=True) if isinstance(k, slice)
        ]
        page_out = pages[0].shape if pages else ()
        return np.asarray(pages, dtype=self.dtype).reshape(tuple(out_lead) + page_out)


def _unreadable_pixels(path: str | Path, error: BaseException) -> ImageReadError:
    """The error for pixels that cannot be read from a file whose header could be."""
    return ImageReadError(
        f"cannot read the pixels of {path}: {type(error).__name__}: {error}; the file is "
        "corrupt or truncated (e.g. an interrupted copy): copy or export it again"
    )


def _flat_index(index: tuple[int, ...], shape: tuple[int, ...]) -> int:
    """Row-major page number of a leading-axes index (0 for a single page)."""
    return int(np.ravel_multi_index(index, shape)) if shape else 0


def _clean_axes(axes: str) -> str:
    """tifffile axes with the RGB samples axis ``S`` renamed ``C`` when there is no ``C``."""
    axes = axes.upper()
    if "S" in axes and "C" not in axes:
        axes = axes.replace("S", "C")
    return axes


def _tiff_calibration(
    tif: tifffile.TiffFile, axes: str
) -> tuple[tuple[float, ...] | None, str | None, dict]:
    """Pixel size (per spatial axis of ``axes``), unit and metadata of an open TIFF file."""
    metadata: dict[str, Any] = {}
    sizes: dict[str, float] = {}
    unit: str | None = None
    if tif.is_ome and tif.ome_metadata:
        metadata["ome"] = tif.ome_metadata
        sizes, unit = _ome_sizes(tif.ome_metadata)
    elif tif.is_imagej and tif.imagej_metadata:
        metadata["imagej"] = dict(tif.imagej_metadata)
        sizes, unit = _imagej_sizes(tif)
    elif tif.is_shaped and tif.shaped_metadata:
        shaped = dict(tif.shaped_metadata[0])
        metadata["shaped"] = shaped
        sizes, unit = _shaped_sizes(shaped)
    if not sizes:
        sizes, unit = _resolution_sizes(tif.pages.first)
    spatial = "".join(a for a in axes if a in SPATIAL_AXES)
    if not spatial or any(a not in sizes for a in spatial if a in PLANE_AXES):
        return None, None, metadata
    # Z spacing is optional in many files: 1.0 is ImageJ's default too.
    pixel_size = tuple(sizes.get(a, 1.0) for a in spatial)
    return pixel_size, unit, metadata


def _normalize_unit(unit: str | None) -> str | None:
    """A unit as this plugin reports it: a known length unit's symbol, else as written."""
    if unit is None:
        return None
    known = length_unit(unit)
    return known.symbol if known is not None else str(unit).strip() or None


def _ome_sizes(ome_xml: str) -> tuple[dict[str, float], str | None]:
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return {}, None
    pixels = root.find(".//{*}Image/{*}Pixels")
    if pixels is None:
        return {}, None
    sizes, unit = {}, None
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        if value is not None:
            sizes[axis] = float(value)
            unit = unit or _normalize_unit(pixels.get(f"PhysicalSize{axis}Unit", MICROMETRE))
    return sizes, unit


def _imagej_sizes(tif: tifffile.TiffFile) -> tuple[dict[str, float], str | None]:
    meta = tif.imagej_metadata or {}
    unit = _normalize_unit(meta.get("unit"))
    if unit in (None, "pixel", "pixels"):  # ImageJ's "uncalibrated"
        return {}, None
    sizes, _ = _resolution_sizes(tif.pages.first, any_unit=True)
    if "spacing" in meta:
        sizes["Z"] = float(meta["spacing"])
    return sizes, unit if sizes else None


def _shaped_sizes(shaped: dict) -> tuple[dict[str, float], str | None]:
    axes, pixel_size = shaped.get("axes"), shaped.get("pixel_size")
    if not axes or not pixel_size:
        return {}, None
    spatial = "".join(a for a in str(axes).upper() if a in SPATIAL_AXES)
    if len(spatial) != len(pixel_size):
        return {}, None
    return dict(zip(spatial, map(float, pixel_size), strict=True)), _normalize_unit(
        shaped.get("unit")
    )


def _resolution_sizes(page: Any, any_unit: bool = False) -> tuple[dict[str, float], str | None]:
    """X/Y pixel size from resolution tags: centimetres (converted to µm), or any unit
    when ``any_unit`` (ImageJ stores its own unit in the description). Inch-based tags are
    screen DPI in practice, not a microscope calibration, so they are ignored."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return {}, None
    res_unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    x_res, y_res = (_ratio(tags[name].value) for name in ("XResolution", "YResolution"))
    if not x_res or not y_res:
        return {}, None
    if res_unit == 3:  # centimetre
        return {"X": 1e4 / x_res, "Y": 1e4 / y_res}, MICROMETRE
    if any_unit:
        return {"X": 1.0 / x_res, "Y": 1.0 / y_res}, None
    return {}, None


def _ratio(value: Any) -> float:
    if isinstance(value, tuple):
        return value[0] / value[1] if value[1] else 0.0
    return float(value)


def _read_pil(path: Path) -> ImageData:
    from PIL import Image

    with Image.open(path) as img:
        img.load()  # forces decoding: truncated/corrupt files fail here
        img = _pil_to_array_mode(img)
        array = np.asarray(img)
    if array.ndim not in (2, 3):
        raise ImageReadError(f"cannot read {path}: unexpected decoded shape {array.shape}")
    axes = "YX" if array.ndim == 2 else "YXC"
    return ImageData(array, axes, None, None, path, {"dtype": str(array.dtype)})


def _pil_to_array_mode(img: Any) -> Any:
    """Convert Pillow modes numpy cannot express directly (palette, 1-bit, CMYK)."""
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    return img
