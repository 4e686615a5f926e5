"""Bundled datasets: a synthetic, deterministic CAR T-cell therapy demo (generated, never downloaded).

Headless: no napari, Qt or magicgui imports.

The public API is what ``__all__`` lists (documented in the API reference, ``mkdocs.yml``); import it
from this package. Submodules are implementation details: ``_name`` modules always, the others
may move without notice.
"""

from ._cells import CELL_TYPE_COLORS, CELL_TYPES, CHANNELS, COMPARTMENTS
from .demo import TIMEPOINTS, demo_pair, demo_sample, write_demo

__all__ = ["CELL_TYPES", "CELL_TYPE_COLORS", "CHANNELS", "COMPARTMENTS", "TIMEPOINTS", "demo_pair", "demo_sample",
           "write_demo"]
