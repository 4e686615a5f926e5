"""Regions of interest: named polygons with a class."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from .geometry import points_in_polygon, polygon_area

#: region classes offered to reviewers (QuPath-style names)
ROI_CLASSES = ("Tumor core", "Invasive margin", "Stroma", "TLS", "Exclude", "Other")


@dataclass
class ROI:
    """A polygon in level-0 pixel coordinates, vertices as (y, x) rows (napari order).

    Parameters
    ----------
    name
        Shown to the user.
    polygon_yx
        (n >= 3, 2) vertices as (y, x), finite.
    cls
        Region class (``Tumour``, ``Stroma``, ``Other``, ...).
    id
        Stable identifier; default a random 12-hex string.
    holes_yx
        Interior rings (holes), each an (m, 2) array of (y, x) vertices; cells in a hole are
        outside.

    Raises
    ------
    ValueError
        If the polygon has fewer than 3 vertices or non-finite coordinates.
    """

    name: str
    polygon_yx: np.ndarray
    cls: str = "Other"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: interior rings (holes), each an (m, 2) array of (y, x) vertices; cells in a hole are outside
    holes_yx: list = field(default_factory=list)

    def __post_init__(self):
        poly = np.asarray(self.polygon_yx, dtype=float)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            raise ValueError(f"ROI {self.name!r}: a polygon needs at least 3 (y, x) vertices, got shape {poly.shape}")
        if not np.all(np.isfinite(poly)):
            raise ValueError(f"ROI {self.name!r}: polygon has NaN or infinite coordinates")
        self.polygon_yx = poly
        self.holes_yx = [np.asarray(h, dtype=float) for h in (self.holes_yx or []) if len(h) >= 3]

    def contains(self, yx: np.ndarray) -> np.ndarray:
        """Vectorised point-in-polygon for (n, 2) (y, x) points; points inside a hole are outside."""
        return points_in_polygon(yx, self.polygon_yx, self.holes_yx)

    def area_px(self) -> float:
        """Area in level-0 pixels², holes subtracted."""
        return polygon_area(self.polygon_yx, self.holes_yx)
