"""Length units of pixel sizes: one table for the spellings found in files and in napari.

Files write micrometres as ``µm``, ``um``, ``micron`` (ImageJ) or ``micrometer``; napari
(through pint) writes ``micrometer``; TIFF resolution tags count pixels per centimetre.
:func:`length_unit` maps any of these to one :class:`LengthUnit`, whose ``symbol`` is what
this plugin stores and reports.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IMAGEJ_MICROMETRE", "LENGTH_UNITS", "MICROMETRE", "LengthUnit", "length_unit"]

MICROMETRE = "µm"
IMAGEJ_MICROMETRE = "micron"  # how ImageJ's metadata spells µm


@dataclass(frozen=True)
class LengthUnit:
    """One unit of length and its names."""

    symbol: str  # what this plugin stores and reports, e.g. "µm"
    name: str  # napari's (pint's) name, e.g. "micrometer"
    centimetres: float  # length of one unit in cm (TIFF resolution tags count per cm)
    spellings: tuple[str, ...] = ()  # other names found in files


LENGTH_UNITS = (
    LengthUnit("nm", "nanometer", 1e-7, ("nanometre",)),
    LengthUnit(
        MICROMETRE,
        "micrometer",
        1e-4,
        ("micrometre", IMAGEJ_MICROMETRE, "microns", "um", "μm", "\\u00b5m"),
    ),
    LengthUnit("mm", "millimeter", 0.1, ("millimetre",)),
    LengthUnit("cm", "centimeter", 1.0, ("centimetre",)),
    LengthUnit("m", "meter", 100.0, ("metre",)),
)

_BY_SPELLING = {
    spelling.lower(): unit
    for unit in LENGTH_UNITS
    for spelling in (unit.symbol, unit.name, *unit.spellings)
}


def length_unit(text: object) -> LengthUnit | None:
    """The unit spelled ``text`` (any case, surrounding blanks ignored), or None."""
    if text is None:
        return None
    return _BY_SPELLING.get(str(text).strip().lower())
