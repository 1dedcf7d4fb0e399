"""Fixtures for the data tests: the bundled DSB2018 pairs and small synthetic stacks."""

from pathlib import Path

import numpy as np
import pytest

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


@pytest.fixture
def dsb_dir() -> Path:
    """Folder with ``images/`` (RGBA PNG) and ``labels/`` (uint16 TIFF) of 3 DSB2018 pairs."""
    return RESOURCES / "dsb2018"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
