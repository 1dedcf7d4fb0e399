"""Image folders: the images a folder holds, and images paired with label files by stem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .formats import SUPPORTED_SUFFIXES, image_stem, is_image_path

__all__ = ["StemMatches", "list_images", "match_by_stem"]


def list_images(folder: str | Path) -> list[Path]:
    """Supported image files (and zarr stores, which are folders) directly in ``folder``,
    sorted by name; hidden files skipped.

    Raises:
        NotADirectoryError: ``folder`` is not an existing directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and is_image_path(p))


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
    image_dir: str | Path,
    label_dir: str | Path,
    *,
    label_suffix: str = "",
    image_suffix: str = "",
) -> StemMatches:
    """Pair images and label files with the same stem (``.ome`` ignored).

    Args:
        image_dir: folder of images.
        label_dir: folder of label images.
        label_suffix: extra end of label stems, e.g. ``"_labels"`` for ``a_labels.tif``.
        image_suffix: the same for the first folder's stems (e.g. when it holds labels too).

    Returns:
        :class:`StemMatches`: sorted (image, labels) pairs, with ``unmatched_images`` and
        ``unmatched_labels``.

    Raises:
        NotADirectoryError: a folder does not exist.
        ValueError: a folder holds no supported image, two files share a stem, or no stem
            matches.
    """
    images = _by_stem(Path(image_dir), image_suffix)
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
