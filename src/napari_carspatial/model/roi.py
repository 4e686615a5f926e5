"""Regions of interest: named polygons with a class."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

#: region classes offered to reviewers (QuPath-style names)
ROI_CLASSES = ("Tumor core", "Invasive margin", "Stroma", "TLS", "Exclude", "Other")


@dataclass
class ROI:
    """A polygon in level-0 pixel coordinates, vertices as (y, x) rows (napari order)."""

    name: str
    polygon_yx: np.ndarray
    cls: str = "Other"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self):
        poly = np.asarray(self.polygon_yx, dtype=float)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            raise ValueError(f"ROI {self.name!r}: a polygon needs at least 3 (y, x) vertices, got shape {poly.shape}")
        if not np.all(np.isfinite(poly)):
            raise ValueError(f"ROI {self.name!r}: polygon has NaN or infinite coordinates")
        self.polygon_yx = poly

    def contains(self, yx: np.ndarray) -> np.ndarray:
        """Vectorised point-in-polygon (even-odd rule) for (n, 2) (y, x) points."""
        from matplotlib.path import Path

        return Path(self.polygon_yx[:, ::-1]).contains_points(np.asarray(yx)[:, ::-1])

    def area_px(self) -> float:
        y, x = self.polygon_yx[:, 0], self.polygon_yx[:, 1]
        return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)
