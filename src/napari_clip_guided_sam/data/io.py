"""Image and label file IO: TIFF/OME-TIFF/ImageJ via tifffile, PNG/JPEG/BMP via Pillow.

Images come back as :class:`ImageData`: the array, its axes letters (tifffile's, uppercase,
with the RGB samples axis ``S`` renamed ``C``), the physical pixel size and unit, and the
metadata worth keeping. Labels are written atomically as compressed TIFF or OME-TIFF
(the encoding and its metadata rules live in :mod:`.label_writer`).
"""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .._atomic import atomic_write
from .label_writer import MICROMETRE, smallest_label_dtype, write_label_tiff

__all__ = [
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "ImageData",
    "ImageReadError",
    "StemMatches",
    "image_stem",
    "is_supported",
    "list_images",
    "match_by_stem",
    "read_image",
    "read_image_lazy",
    "write_labels",
]

TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES

CHANNEL_AXES = "CS"
SPATIAL_AXES = "ZYX"

# Length units to micrometres, for resolution tags and unit spellings found in the wild.
_UNIT_ALIASES = {
    "um": MICROMETRE,
    "micron": MICROMETRE,
    "microns": MICROMETRE,
    "\\u00B5m": MICROMETRE,
    "μm": MICROMETRE,
    "µm": MICROMETRE,
}


class ImageReadError(ValueError):
    """A file could not be read as an image: corrupt, truncated or unsupported."""


@dataclass
class ImageData:
    """An image or stack with its axes and physical calibration.

    Attributes:
        array: the pixels, shape matching ``axes`` (a numpy array, or a dask array from
            :func:`read_image_lazy`).
        axes: one uppercase tifffile letter per array axis, e.g. ``"YX"``, ``"YXC"``,
            ``"ZYX"``, ``"TZCYX"``. ``C`` is the channel axis (RGB samples included).
        pixel_size: physical size of one pixel along each spatial axis present in ``axes``
            (Z, Y, X), in the order those axes appear in ``axes``; None if unknown.
        unit: unit of ``pixel_size`` (``"µm"`` for micrometres), None if unknown.
        path: the file it was read from, if any.
        metadata: anything else worth keeping (ImageJ metadata, OME-XML, source dtype).
    """

    array: Any
    axes: str
    pixel_size: tuple[float, ...] | None = None
    unit: str | None = None
    path: Path | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.axes = self.axes.upper()
        if len(self.axes) != self.array.ndim:
            raise ValueError(
                f"axes {self.axes!r} has {len(self.axes)} letters but the array has "
                f"{self.array.ndim} dimensions (shape {tuple(self.array.shape)})"
            )
        if len(set(self.axes)) != len(self.axes):
            raise ValueError(f"axes {self.axes!r} repeats a letter; each axis needs its own")
        if self.pixel_size is not None:
            self.pixel_size = tuple(float(s) for s in self.pixel_size)
            if len(self.pixel_size) != len(self.spatial_axes):
                raise ValueError(
                    f"pixel_size {self.pixel_size} needs one value per spatial axis "
                    f"{self.spatial_axes!r} of axes {self.axes!r}"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``array``."""
        return tuple(int(s) for s in self.array.shape)

    @property
    def spatial_axes(self) -> str:
        """The spatial axes (Z, Y, X) present, in array order, e.g. ``"ZYX"``."""
        return "".join(a for a in self.axes if a in SPATIAL_AXES)

    @property
    def channel_axis(self) -> int | None:
        """Index of the channel axis in ``array``, None if the image has no channel axis."""
        return self.axes.index("C") if "C" in self.axes else None

    @property
    def name(self) -> str:
        """A short name for messages: the file name, or ``"<array>"``."""
        return self.path.name if self.path is not None else "<array>"

    def pixel_size_of(self, axis: str) -> float | None:
        """The physical pixel size along ``axis`` (``"X"``, ``"Y"`` or ``"Z"``), or None."""
        if self.pixel_size is None or axis not in self.spatial_axes:
            return None
        return self.pixel_size[self.spatial_axes.index(axis)]


# --------------------------------------------------------------------------- reading


def is_supported(path: str | Path) -> bool:
    """True if the file name ends in one of :data:`SUPPORTED_SUFFIXES` (any case)."""
    return Path(path).name.lower().endswith(SUPPORTED_SUFFIXES)


def _is_tiff(path: Path) -> bool:
    return path.name.lower().endswith(TIFF_SUFFIXES)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not is_supported(path):
        raise ImageReadError(
            f"cannot read {path}: unsupported file type; expected one of "
            f"{', '.join(SUPPORTED_SUFFIXES)}"
        )


def read_image(path: str | Path) -> ImageData:
    """Read an image or stack into memory.

    TIFF/OME-TIFF: series 0, axes from the series, pixel size from OME (PhysicalSizeX/Y/Z),
    ImageJ (resolution tags + ``spacing``/``unit``), our own shaped metadata, or resolution
    tags in centimetres as a fallback. PNG/JPEG/BMP: ``"YX"`` or ``"YXC"`` (RGBA keeps its 4
    channels), no calibration.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is corrupt, truncated or of an unsupported type.
    """
    path = Path(path)
    _check_readable(path)
    try:
        if _is_tiff(path):
            return _read_tiff(path)
        return _read_pil(path)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile/Pillow raise many types for bad files
        raise ImageReadError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _read_tiff(path: Path) -> ImageData:
    with tifffile.TiffFile(path) as tif:
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
    slice by slice: ``np.asarray(image.array[z])`` reads one slice. Other formats are small and
    read eagerly (then wrapped in dask for a uniform interface).

    Raises:
        FileNotFoundError, ImageReadError: as :func:`read_image`.
    """
    import dask.array as da

    path = Path(path)
    _check_readable(path)
    if not _is_tiff(path):
        image = read_image(path)
        image.array = da.from_array(image.array, chunks=image.array.shape)
        return image
    try:
        with tifffile.TiffFile(path) as tif:
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
    except (ImageReadError, FileNotFoundError):
        raise
    except Exception as exc:
        raise ImageReadError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    return ImageData(array, axes, pixel_size, unit, path, metadata)


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
        self._file, self._offset = mapped.filename, mapped.offset
        self.shape, self.dtype, self.ndim = mapped.shape, mapped.dtype, mapped.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        mapped = np.memmap(self._file, self.dtype, "r", self._offset, self.shape)
        return np.array(mapped[key])


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
            raise ImageReadError(
                f"cannot open {path} lazily: series shape {self.shape} is not a stack of "
                f"{len(series)} pages of shape {self.page_shape}; use read_image instead"
            )

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        lead_key, page_key = key[: len(self.lead_shape)], key[len(self.lead_shape) :]
        lead_ranges = [
            range(n)[k] if isinstance(k, slice) else [int(k)]
            for k, n in zip(lead_key, self.lead_shape, strict=True)
        ]
        pages = [
            tifffile.imread(self.path, series=0, key=_flat_index(lead, self.lead_shape))[page_key]
            for lead in itertools.product(*lead_ranges)
        ]
        out_lead = [
            len(r) for r, k in zip(lead_ranges, lead_key, strict=True) if isinstance(k, slice)
        ]
        page_out = pages[0].shape if pages else ()
        return np.asarray(pages, dtype=self.dtype).reshape(tuple(out_lead) + page_out)


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
    if not spatial or any(a not in sizes for a in spatial if a in "YX"):
        return None, None, metadata
    # Z spacing is optional in many files: 1.0 is ImageJ's default too.
    pixel_size = tuple(sizes.get(a, 1.0) for a in spatial)
    return pixel_size, unit, metadata


def _normalize_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    unit = str(unit).strip()
    return _UNIT_ALIASES.get(unit, unit) or None


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


# --------------------------------------------------------------------------- writing


def write_labels(
    path: str | Path,
    labels: Any,
    like: ImageData | None = None,
    *,
    overwrite: bool = False,
    axes: str | None = None,
) -> Path:
    """Write a label image or stack as zlib-compressed TIFF (OME-TIFF for ``.ome.tif(f)``).

    Args:
        path: destination; ``.tif``/``.tiff`` or ``.ome.tif``/``.ome.tiff``.
        labels: integer or bool array, ``[Y, X]``, ``[Z, Y, X]``, ... (non-negative values).
            Stored with the smallest unsigned dtype that holds its maximum.
        like: the source image; its axes (channel axis dropped), pixel size and unit are
            written with the labels, whose shape must equal the image's without channels.
        overwrite: replace an existing file; otherwise refuse with FileExistsError.
        axes: axes of ``labels`` when ``like`` is None (default ``YX``/``ZYX``/``TZYX``).

    The file is written to a temporary file in the same folder and moved into place, so a
    failure never leaves a partial file.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: bad suffix, non-integer or negative labels, shape/axes mismatch.
        OSError: writing failed (read-only folder, disk full); the message names the path.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(TIFF_SUFFIXES):
        raise ValueError(f"labels are written as TIFF: {path} must end in .tif or .ome.tif")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it or choose another name"
        )
    data = _labels_to_unsigned(labels)
    label_axes = _label_axes(data, like, axes)
    pixel_size, unit = _label_calibration(like, label_axes)
    ome = name.endswith((".ome.tif", ".ome.tiff"))
    atomic_write(
        path,
        lambda temp: write_label_tiff(
            temp, data, axes=label_axes, sizes=pixel_size, unit=unit, ome=ome
        ),
        overwrite=overwrite,
    )
    return path


def _labels_to_unsigned(labels: Any) -> np.ndarray:
    data = np.asarray(labels)
    if data.dtype == bool:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"labels must be an integer or bool array, got dtype {data.dtype}")
    if data.size and data.min() < 0:
        raise ValueError(f"labels must be non-negative, got minimum {data.min()}")
    top = int(data.max()) if data.size else 0
    return data.astype(smallest_label_dtype(top), copy=False)


def _label_axes(data: np.ndarray, like: ImageData | None, axes: str | None) -> str:
    if like is not None:
        keep = [i for i, a in enumerate(like.axes) if a not in CHANNEL_AXES]
        expected = tuple(like.shape[i] for i in keep)
        if data.shape != expected:
            raise ValueError(
                f"labels shape {data.shape} does not match the image {like.name} shape "
                f"{like.shape} (axes {like.axes!r}) without channels: expected {expected}"
            )
        return "".join(like.axes[i] for i in keep)
    default = {2: "YX", 3: "ZYX", 4: "TZYX"}
    axes = (axes or default.get(data.ndim, "")).upper()
    if len(axes) != data.ndim:
        raise ValueError(
            f"labels with shape {data.shape} need axes with {data.ndim} letters, got {axes!r}"
        )
    return axes


def _label_calibration(
    like: ImageData | None, label_axes: str
) -> tuple[dict[str, float], str | None]:
    if like is None or like.pixel_size is None:
        return {}, None
    sizes = dict(zip(like.spatial_axes, like.pixel_size, strict=True))
    return {a: s for a, s in sizes.items() if a in label_axes}, like.unit


# --------------------------------------------------------------------------- folders


def image_stem(path: str | Path) -> str:
    """File name without its image suffix; ``a.ome.tif`` -> ``a``, ``a.png`` -> ``a``."""
    name = Path(path).name
    lower = name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def list_images(folder: str | Path) -> list[Path]:
    """Supported image files directly in ``folder``, sorted by name; hidden files skipped.

    Raises:
        NotADirectoryError: ``folder`` is not an existing directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and is_supported(p)
    )


class StemMatches(list):
    """``list[tuple[image_path, label_path]]`` plus the files that found no partner.

    Attributes:
        unmatched_images: images with no label file of the same stem.
        unmatched_labels: label files with no image of the same stem.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        unmatched_images: Sequence[Path] = (),
        unmatched_labels: Sequence[Path] = (),
    ) -> None:
        super().__init__(pairs)
        self.unmatched_images = list(unmatched_images)
        self.unmatched_labels = list(unmatched_labels)

    @property
    def unmatched(self) -> list[Path]:
        """All files without a partner, images first."""
        return self.unmatched_images + self.unmatched_labels


def _by_stem(folder: Path, label_suffix: str = "") -> dict[str, Path]:
    files = list_images(folder)
    if not files:
        raise ValueError(
            f"no images in {folder}: expected files ending in {', '.join(SUPPORTED_SUFFIXES)}"
        )
    stems: dict[str, Path] = {}
    for file in files:
        stem = image_stem(file)
        if label_suffix and stem.endswith(label_suffix):
            stem = stem[: -len(label_suffix)]
        if stem in stems:
            raise ValueError(
                f"ambiguous files in {folder}: {stems[stem].name} and {file.name} have the "
                f"same stem {stem!r}; keep one per image"
            )
        stems[stem] = file
    return stems


def match_by_stem(
    image_dir: str | Path, label_dir: str | Path, *, label_suffix: str = ""
) -> StemMatches:
    """Pair images and label files with the same stem (``.ome`` ignored).

    Args:
        image_dir: folder of images.
        label_dir: folder of label images.
        label_suffix: extra end of label stems, e.g. ``"_labels"`` for ``a_labels.tif``.

    Returns:
        :class:`StemMatches`: sorted (image, labels) pairs, with ``unmatched_images`` and
        ``unmatched_labels``.

    Raises:
        NotADirectoryError: a folder does not exist.
        ValueError: a folder holds no supported image, two files share a stem, or no stem
            matches.
    """
    images = _by_stem(Path(image_dir))
    labels = _by_stem(Path(label_dir), label_suffix)
    common = sorted(images.keys() & labels.keys())
    if not common:
        raise ValueError(
            f"no image in {image_dir} has a label file of the same name in {label_dir} "
            f"(image stems e.g. {sorted(images)[:3]}, label stems e.g. {sorted(labels)[:3]})"
        )
    return StemMatches(
        [(images[s], labels[s]) for s in common],
        [images[s] for s in sorted(images.keys() - labels.keys())],
        [labels[s] for s in sorted(labels.keys() - images.keys())],
    )
