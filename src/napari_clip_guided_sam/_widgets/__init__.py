"""_widgets package."""
