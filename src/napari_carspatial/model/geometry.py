"""Plane geometry on (y, x) level-0 pixel coordinates (napari order): point-in-polygon, area.

The one implementation behind :meth:`ROI.contains <napari_carspatial.model.roi.ROI.contains>`,
:func:`~napari_carspatial.model.curation.roi_contains`, the colouring's polygon selection and
:func:`~napari_carspatial.analysis.regions.cells_in_polygon`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["points_in_polygon", "polygon_area"]


def _ring(polygon_yx) -> np.ndarray:
    """``(m, 2)`` float (y, x) vertices: the last two columns (napari shapes may carry more axes)."""
    return np.asarray(polygon_yx, dtype=np.float64)[:, -2:]


def points_in_polygon(yx: np.ndarray, polygon_yx: np.ndarray, holes: Iterable[np.ndarray] = ()) -> np.ndarray:
    """Which points lie inside a polygon and outside all of its holes (even-odd rule), vectorised.

    Parameters
    ----------
    yx
        ``(n, 2)`` points as (y, x) rows.
    polygon_yx
        ``(m, 2)`` outer ring as (y, x) vertices (only the last two columns are used).
    holes
        Interior rings, each ``(k, 2)`` (y, x) vertices; points in a hole are outside.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` bool. All ``False`` for a polygon of fewer than 3 vertices.

    Only points in the polygon's bounding box are passed to :class:`matplotlib.path.Path`.
    """
    from matplotlib.path import Path

    pts = np.asarray(yx, dtype=np.float64)
    out = np.zeros(len(pts), dtype=bool)
    poly = _ring(polygon_yx)
    if len(pts) == 0 or len(poly) < 3:
        return out
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    y, x = pts[:, 0], pts[:, 1]
    idx = np.flatnonzero((y >= lo[0]) & (y <= hi[0]) & (x >= lo[1]) & (x <= hi[1]))
    if idx.size:
        xy = pts[idx][:, 1::-1]
        inside = Path(poly[:, ::-1]).contains_points(xy)
        for hole in holes or ():
            inside &= ~Path(_ring(hole)[:, ::-1]).contains_points(xy)
        out[idx] = inside
    return out


def _shoelace(ring: np.ndarray) -> float:
    y, x = ring[:, 0], ring[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def polygon_area(polygon_yx: np.ndarray, holes: Iterable[np.ndarray] = ()) -> float:
    """Shoelace area (square pixels) of a polygon of (y, x) vertices, minus its holes' areas."""
    return _shoelace(_ring(polygon_yx)) - sum(_shoelace(_ring(h)) for h in (holes or ()))
