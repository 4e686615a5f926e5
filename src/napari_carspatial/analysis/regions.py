"""Regions for analysis: which cells belong to which region, the region's area, and cell roles.

A region is a boolean mask over the table's cells. Cells belong to a polygon region by the
centroid-in-polygon rule (even-odd, vectorised with :class:`matplotlib.path.Path`). Polygons are
in level-0 pixels, vertices as (y, x) rows (napari order, like :class:`~napari_carspatial.model.ROI`).

Roles map biological roles (tumour, CAR T, myeloid, ...) to cell-type categories so that the
CAR T measures (:mod:`napari_carspatial.analysis.cart`) do not hard-code a panel's type names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_carspatial.model.conventions import SPATIAL_KEY, spatial_to_yx
from napari_carspatial.model.geometry import points_in_polygon, polygon_area

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anndata import AnnData

    from napari_carspatial.model import ROI

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ROLES",
    "WHOLE",
    "Region",
    "cells_in_polygon",
    "polygon_area_px",
    "region_masks",
    "regions_from_rois",
    "role_masks",
    "tissue_area_mm2",
]

#: name of the whole-sample region
WHOLE = "whole"

#: the demo's role mapping (what :mod:`~napari_carspatial.analysis.roles` infers from its names);
#: ``None`` means derived (``pdl1_macrophage`` = myeloid & PD-L1 positive)
DEFAULT_ROLES: dict[str, list[str] | None] = {
    "tumor": ["Tumor", "Tumor (antigen-neg)"],
    "antigen_neg": ["Tumor (antigen-neg)"],
    "car_t": ["CAR T"],
    "myeloid": ["Macrophage", "MDSC"],
    "pdl1_macrophage": None,
}


@dataclass
class Region:
    """A named region: a cell mask and, when drawn as a polygon, its outline and area.

    Attributes
    ----------
    name
        Region name (unique within one analysis).
    mask
        ``(n_obs,)`` bool, the cells of the region.
    polygon_yx
        ``(m, 2)`` level-0 pixel (y, x) vertices, or ``None`` (whole sample / mask-only region).
    cls
        Region class (``"Tumor core"``, ``"Invasive margin"``, ...), free text.
    """

    name: str
    mask: np.ndarray
    polygon_yx: np.ndarray | None = None
    cls: str = ""

    @property
    def n_cells(self) -> int:
        return int(np.count_nonzero(self.mask))

    def area_mm2(self, pixel_size_um: float | None) -> float | None:
        """Polygon area in mm² (``None`` without a polygon or pixel size)."""
        if self.polygon_yx is None or pixel_size_um is None:
            return None
        return polygon_area_px(self.polygon_yx) * float(pixel_size_um) ** 2 / 1e6


def _xy(adata_or_coords: Any, spatial_key: str = SPATIAL_KEY) -> np.ndarray:
    if hasattr(adata_or_coords, "obsm"):
        return np.asarray(adata_or_coords.obsm[spatial_key], dtype=np.float64)[:, :2]
    return np.asarray(adata_or_coords, dtype=np.float64)[:, :2]


def cells_in_polygon(adata_or_coords: Any, polygon_yx: np.ndarray, *, spatial_key: str = SPATIAL_KEY) -> np.ndarray:
    """Cells whose centroid lies inside a polygon (even-odd rule), vectorised.

    Parameters
    ----------
    adata_or_coords
        AnnData with ``obsm[spatial_key]`` (x, y) or an ``(n, 2)`` array of (x, y) coordinates.
    polygon_yx
        ``(m, 2)`` vertices (y, x) in level-0 pixels (napari Shapes data order).
    spatial_key
        Key in ``obsm`` with the (x, y) centroids in level-0 pixels.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` bool.
    """
    poly = np.asarray(polygon_yx, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] < 2 or len(poly) < 3:
        raise ValueError(f"a polygon needs at least 3 (y, x) vertices, got shape {poly.shape}")
    xy = _xy(adata_or_coords, spatial_key)
    # coordinates are (x, y), the polygon (y, x): flip the points to (y, x)
    return points_in_polygon(xy[:, ::-1], poly)


def polygon_area_px(polygon_yx: np.ndarray) -> float:
    """Shoelace area of a polygon in square pixels."""
    return polygon_area(polygon_yx)


def regions_from_rois(adata: AnnData, rois: Iterable[ROI], *, spatial_key: str = SPATIAL_KEY, classes: list[str] | None = None) -> dict[str, Region]:
    """One :class:`Region` per ROI (``Sample.rois``); ROIs of the same name get a suffix.

    Parameters
    ----------
    adata
        The table.
    rois
        The regions (``Sample.rois``).
    spatial_key
        Key in ``obsm`` with the (x, y) centroids in level-0 pixels.
    classes
        Only ROIs of these classes (default all).

    Returns
    -------
    dict
        ``{name: Region}`` in ROI order.
    """
    out: dict[str, Region] = {}
    for roi in rois:
        if classes is not None and roi.cls not in classes:
            continue
        name = roi.name
        k = 2
        while name in out:
            name = f"{roi.name} ({k})"
            k += 1
        out[name] = Region(name, cells_in_polygon(adata, roi.polygon_yx, spatial_key=spatial_key),
                           np.asarray(roi.polygon_yx, float), getattr(roi, "cls", ""))
    return out


def region_masks(
    adata: AnnData,
    polygons: Mapping[str, np.ndarray] | None = None,
    *,
    include_whole: bool = False,
    spatial_key: str = SPATIAL_KEY,
) -> dict[str, np.ndarray]:
    """Boolean cell masks for named polygons (the input :func:`region_metrics` takes).

    Parameters
    ----------
    adata
        The table.
    polygons
        ``{name: (m, 2) (y, x) level-0 pixel vertices}``; several polygons under one name may be
        given as a list of arrays (their union).
    include_whole
        Add the whole sample as region ``"whole"``.
    spatial_key
        Key in ``obsm`` with the (x, y) centroids in level-0 pixels.

    Returns
    -------
    dict
        ``{name: (n_obs,) bool}``. With no polygons and ``include_whole=False``: ``{"whole": all}``.
    """
    out: dict[str, np.ndarray] = {}
    if include_whole or not polygons:
        out[WHOLE] = np.ones(adata.n_obs, dtype=bool)
    for name, poly in (polygons or {}).items():
        polys = poly if isinstance(poly, (list, tuple)) else [poly]
        m = np.zeros(adata.n_obs, dtype=bool)
        for p in polys:
            m |= cells_in_polygon(adata, p, spatial_key=spatial_key)
        out[str(name)] = m
    return out


def role_masks(
    adata: AnnData,
    *,
    cell_type_key: str | None = None,
    roles: Mapping[str, list[str] | None] | None = None,
    pdl1_marker: str = "PD-L1",
    pdl1_threshold: float | None = None,
    layer: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Boolean masks of cells in each role: :func:`napari_carspatial.analysis.roles.role_masks`.

    Kept here for callers of the earlier API. The roles are inferred from the type names (the
    demo's names give :data:`DEFAULT_ROLES`), merged with a mapping stored in the table and
    ``roles``; ``cell_type_key=None`` finds the column by name.

    Parameters
    ----------
    adata
        Table with the cell types.
    cell_type_key
        Cell-type column; ``None``: found by name.
    roles
        ``{role: [type names] or None}`` merged over the stored and inferred mappings.
    pdl1_marker
        Marker of PD-L1+ macrophages.
    pdl1_threshold
        Raw threshold of ``pdl1_marker`` (``None``: Otsu on asinh).
    layer
        Read marker values from ``adata.layers[layer]`` instead of ``X``.

    Returns
    -------
    masks : dict
        ``{role: (n_obs,) bool}``.
    info : dict
        The mapping used, thresholds and notes.
    """
    from napari_carspatial.analysis.roles import role_masks as _role_masks

    return _role_masks(adata, cell_type_key=cell_type_key, roles=roles, pdl1_marker=pdl1_marker,
                       pdl1_threshold=pdl1_threshold, layer=layer)


def tissue_area_mm2(xy_um: np.ndarray, *, grid_um: float = 20.0, close_px: int = 1) -> float:
    """Tissue area covered by a set of cells, in mm², from a coarse occupancy grid.

    The cells' (x, y) µm positions are binned on a ``grid_um`` grid; occupied squares are
    closed (``close_px`` squares) and holes filled; the area is the number of squares times
    ``grid_um²``. Used when a region has no polygon (the whole sample, a mask-only region).
    """
    from scipy import ndimage

    xy_um = np.asarray(xy_um, dtype=np.float64)
    if xy_um.shape[0] == 0:
        return 0.0
    lo = xy_um.min(axis=0)
    ij = np.floor((xy_um - lo) / grid_um).astype(np.int64) + close_px + 1
    shape = ij.max(axis=0) + close_px + 2
    occ = np.zeros((int(shape[1]), int(shape[0])), dtype=bool)
    occ[ij[:, 1], ij[:, 0]] = True
    if close_px > 0:
        occ = ndimage.binary_closing(occ, structure=np.ones((3, 3), bool), iterations=close_px)
    occ = ndimage.binary_fill_holes(occ)
    return float(occ.sum()) * grid_um * grid_um / 1e6


def coords_um(adata, *, pixel_size_um: float | None = None, spatial_key: str = SPATIAL_KEY) -> tuple[np.ndarray, float]:
    """(x, y) coordinates in µm and the pixel size used (1.0 with a warning when unknown)."""
    from napari_carspatial.analysis.graph import resolve_pixel_size

    px = resolve_pixel_size(adata, pixel_size_um)
    if px is None:
        logger.warning("no pixel size known: distances and areas are in pixels, not µm")
        px = 1.0
    return _xy(adata, spatial_key) * px, px


def yx_of(adata, *, spatial_key: str = SPATIAL_KEY) -> np.ndarray:
    """Centroids in napari (y, x) order."""
    return spatial_to_yx(_xy(adata, spatial_key))
