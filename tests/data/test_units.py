"""Length units: one table for the spellings of files, ImageJ and napari."""

import pytest

from napari_clip_guided_sam.data.units import MICROMETRE, length_unit


@pytest.mark.parametrize("spelling", ["µm", "um", "micron", "Microns", "micrometer", " μm "])
def test_micrometre_spellings_are_one_unit(spelling):
    unit = length_unit(spelling)
    assert unit is not None and unit.symbol == MICROMETRE and unit.name == "micrometer"


def test_units_know_their_napari_name_and_size_and_refuse_non_lengths():
    assert length_unit("nanometer").symbol == "nm"
    assert length_unit("mm").centimetres == pytest.approx(0.1)
    assert length_unit("pixel") is None and length_unit(None) is None
