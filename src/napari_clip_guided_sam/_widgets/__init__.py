"""napari widgets of the plugin (the only package that imports Qt, magicgui or napari.qt)."""

from ._compat import avoid_triton_llvm_clash

avoid_triton_llvm_clash()  # before torch is imported below

from ._segment import SegmentWidget  # noqa: E402

__all__ = ["SegmentWidget"]
