"""`python -m napari_clip_guided_sam.cli` runs the command line."""

import sys

from . import main

sys.exit(main())
