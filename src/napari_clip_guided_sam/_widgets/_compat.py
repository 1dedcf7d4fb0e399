"""Guard against a crash between triton's bundled LLVM and Mesa's software OpenGL.

napari draws through OpenGL; with Mesa's software renderer (llvmpipe/swrast: virtual
machines, remote desktops, Xvfb) the process already holds the system libLLVM when the
plugin loads. Importing triton afterwards (torchvision -> torch._dynamo does, to probe
for it) then segfaults inside triton's own LLVM, taking the viewer down. The plugin never
uses triton (no torch.compile), so in exactly that situation torch is told that triton is
absent; everywhere else nothing changes.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)


def _system_llvm_loaded() -> bool:
    """Whether a system libLLVM (e.g. Mesa's) is mapped into this process (Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libLLVM" in line and "triton" not in line for line in maps)
    except OSError:
        return False


def avoid_triton_llvm_clash() -> None:
    """Hide triton from torch if loading it now would clash with an LLVM already loaded."""
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return
    if _system_llvm_loaded():
        sys.modules["triton"] = None  # `import triton` now raises ImportError
        log.info("Software OpenGL holds libLLVM: triton disabled to avoid a crash.")
