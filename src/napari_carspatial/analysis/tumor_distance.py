"""The tumour boundary and the signed distance of every cell to it; CAR T infiltration profile.

The tumour boundary is derived from the tumour cells (:func:`tumor_distance`): tumour and all
cells are binned on a ``grid_um`` grid, both counts are Gaussian-smoothed (``smooth_um``), grid
squares where tumour cells are more than half of the (smoothed) cells are tumour, and the signed
Euclidean distance transform of that mask (negative inside the tumour, positive outside, in µm)
is interpolated at each cell. Grid squares farther than ``tissue_um`` from any cell are not
tissue and carry no area. :func:`infiltration_profile`: CAR T density against that distance.
Used by :func:`napari_carspatial.analysis.cart.region_metrics` and the batch's automatic regions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from napari_carspatial.analysis.regions import coords_um
from napari_carspatial.analysis.roles import role_masks

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anndata import AnnData

    from napari_carspatial.analysis.roles import RoleMapping

logger = logging.getLogger(__name__)

__all__ = ["TumorDistance", "infiltration_profile", "tumor_distance"]


@dataclass
class TumorDistance:
    """Signed distance to the tumour boundary derived from tumour cells.

    Attributes
    ----------
    cell_um
        ``(n_obs,)`` signed distance of every cell in µm (negative inside tumour); NaN when the
        sample has no tumour cell.
    field_um
        ``(ny, nx)`` signed distance of every grid square centre.
    tissue
        ``(ny, nx)`` bool, grid squares within ``tissue_um`` of a cell.
    nearest
        ``(ny, nx)`` int64, index of the nearest cell of each tissue square (-1 elsewhere), or
        ``None`` until :meth:`nearest_cells` computes it (only the infiltration profile needs it).
    origin_um
        (x0, y0) of the grid's corner in µm.
    grid_um
        The grid square side (µm).
    params
        The parameters used.
    xy_um
        ``(n_obs, 2)`` cell centroids (x, y) in µm.
    """

    cell_um: np.ndarray
    field_um: np.ndarray
    tissue: np.ndarray
    nearest: np.ndarray | None
    origin_um: tuple[float, float]
    grid_um: float
    params: dict[str, Any] = field(default_factory=dict)
    xy_um: np.ndarray | None = field(default=None, repr=False)

    def square_area_mm2(self) -> float:
        return self.grid_um * self.grid_um / 1e6

    def nearest_cells(self) -> np.ndarray:
        """:attr:`nearest`, computed on first use (one KD-tree query per tissue square)."""
        if self.nearest is None:
            from scipy.spatial import cKDTree

            ny, nx = self.tissue.shape
            nearest = np.full((ny, nx), -1, dtype=np.int64)
            xy = self.xy_um
            if xy is not None and xy.shape[0]:
                yy, xx = np.nonzero(self.tissue)
                g = self.grid_um
                x0, y0 = self.origin_um
                centers = np.column_stack([x0 + (xx + 0.5) * g, y0 + (yy + 0.5) * g])
                _, idx = cKDTree(xy).query(centers, k=1, workers=-1)
                nearest[yy, xx] = idx
            self.nearest = nearest
        return self.nearest


def tumor_distance(
    adata: AnnData,
    *,
    tumor_mask: np.ndarray | None = None,
    cell_type_key: str | None = None,
    roles: RoleMapping | Mapping[str, Any] | str | None = None,
    pixel_size_um: float | None = None,
    grid_um: float = 10.0,
    smooth_um: float = 15.0,
    tissue_um: float = 20.0,
) -> TumorDistance:
    """Signed distance (µm) of every cell to a tumour boundary derived from the tumour cells.

    Parameters
    ----------
    adata
        Table with ``obsm["spatial"]`` and the cell types.
    tumor_mask
        ``(n_obs,)`` bool, the tumour cells; default: the ``tumor`` role.
    cell_type_key
        Cell-type column; ``None``: found by
        :func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`.
    roles
        Role mapping (see :func:`~napari_carspatial.analysis.roles.resolve_roles`); the ``tumor``
        role gives the tumour cells.
    pixel_size_um
        µm per pixel (overrides the table's).
    grid_um
        Grid square side (µm).
    smooth_um
        Gaussian sigma of the smoothing (µm).
    tissue_um
        Grid squares farther than this from every cell are not tissue (µm).

    Returns
    -------
    TumorDistance
        Per-cell signed distance (µm; negative inside the tumour) and the boundary grid.
    """
    from scipy import ndimage

    xy, px = coords_um(adata, pixel_size_um=pixel_size_um)
    if tumor_mask is None:
        masks, _ = role_masks(adata, cell_type_key=cell_type_key, roles=roles)
        tumor_mask = masks["tumor"]
    tumor_mask = np.asarray(tumor_mask, dtype=bool)
    n = xy.shape[0]
    g = float(grid_um)
    pad = 3.0 * smooth_um + tissue_um + g
    lo = xy.min(axis=0) - pad if n else np.zeros(2)
    hi = xy.max(axis=0) + pad if n else np.ones(2)
    nx, ny = (np.ceil((hi - lo) / g).astype(np.int64) + 1)
    ij = np.floor((xy - lo) / g).astype(np.int64)
    flat = ij[:, 1] * nx + ij[:, 0]
    all_cnt = np.bincount(flat, minlength=nx * ny).reshape(ny, nx).astype(np.float64)
    tum_cnt = np.bincount(flat[tumor_mask], minlength=nx * ny).reshape(ny, nx).astype(np.float64)
    occupied = all_cnt > 0
    tissue = ndimage.distance_transform_edt(~occupied) * g <= tissue_um
    sigma = smooth_um / g
    a_s = ndimage.gaussian_filter(all_cnt, sigma)
    t_s = ndimage.gaussian_filter(tum_cnt, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(a_s > 1e-9, t_s / a_s, 0.0)
    tumor = (frac > 0.5) & tissue
    if tumor.any() and (~tumor).any():
        d_out = ndimage.distance_transform_edt(~tumor) * g - 0.5 * g
        d_in = ndimage.distance_transform_edt(tumor) * g - 0.5 * g
        fld = np.where(tumor, -d_in, d_out)
        coords = [(xy[:, 1] - lo[1]) / g - 0.5, (xy[:, 0] - lo[0]) / g - 0.5]
        cell = ndimage.map_coordinates(fld, coords, order=1, mode="nearest")
    else:
        fld = np.full((ny, nx), np.nan)
        cell = np.full(n, np.nan)
    return TumorDistance(cell, fld, tissue, None, (float(lo[0]), float(lo[1])), g,
                         {"grid_um": g, "smooth_um": smooth_um, "tissue_um": tissue_um, "pixel_size_um": px},
                         xy_um=xy)


def infiltration_profile(
    adata: AnnData,
    *,
    cell_type_key: str | None = None,
    roles: RoleMapping | Mapping[str, Any] | str | None = None,
    region: np.ndarray | None = None,
    pixel_size_um: float | None = None,
    bin_um: float = 25.0,
    range_um: tuple[float, float] = (-200.0, 300.0),
    distance: TumorDistance | None = None,
    grid_um: float = 10.0,
    smooth_um: float = 15.0,
) -> pd.DataFrame:
    """CAR T density against signed distance to the tumour boundary, in ``bin_um`` bins.

    Parameters
    ----------
    adata
        Table with cell types and ``obsm["spatial"]``.
    cell_type_key
        Cell-type column; ``None``: found by
        :func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`.
    roles
        Role mapping (see :func:`~napari_carspatial.analysis.roles.resolve_roles`); the ``tumor``
        role gives the tumour cells.
    pixel_size_um
        µm per pixel (overrides the table's).
    region
        ``(n_obs,)`` bool mask of the region's cells (default: all). A grid square belongs to the
        region when its nearest cell does.
    bin_um
        Bin width (µm).
    range_um
        The range of signed distance (µm; negative = inside tumour).
    distance
        A precomputed :func:`tumor_distance` (reused across regions).
    grid_um
        Grid square side (µm) of the boundary (see :func:`tumor_distance`).
    smooth_um
        Gaussian sigma (µm) of the smoothing (see :func:`tumor_distance`).

    Returns
    -------
    pandas.DataFrame
        ``bin_start_um, bin_end_um, car_t_count, area_mm2, density_per_mm2`` (density NaN where
        the bin has no tissue area).
    """
    masks, _ = role_masks(adata, cell_type_key=cell_type_key, roles=roles)
    if distance is None:
        distance = tumor_distance(adata, tumor_mask=masks["tumor"], pixel_size_um=pixel_size_um,
                                  grid_um=grid_um, smooth_um=smooth_um)
    region = np.ones(adata.n_obs, dtype=bool) if region is None else np.asarray(region, dtype=bool)
    lo, hi = float(range_um[0]), float(range_um[1])
    edges = np.arange(np.floor(lo / bin_um) * bin_um, hi + bin_um * 0.5, bin_um)
    if edges.size < 2:
        edges = np.array([lo, lo + bin_um])
    car = masks["car_t"] & region
    d = distance.cell_um[car]
    d = d[np.isfinite(d)]
    counts, _ = np.histogram(d, bins=edges)
    nearest = distance.nearest_cells()
    sq = distance.tissue & (nearest >= 0)
    sq_region = np.zeros_like(sq)
    sq_region[sq] = region[nearest[sq]]
    fd = distance.field_um[sq_region]
    fd = fd[np.isfinite(fd)]
    area, _ = np.histogram(fd, bins=edges)
    area_mm2 = area * distance.square_area_mm2()
    with np.errstate(invalid="ignore", divide="ignore"):
        dens = np.where(area_mm2 > 0, counts / np.where(area_mm2 > 0, area_mm2, 1.0), np.nan)
    return pd.DataFrame({
        "bin_start_um": edges[:-1], "bin_end_um": edges[1:], "car_t_count": counts.astype(np.int64),
        "area_mm2": area_mm2, "density_per_mm2": dens,
    })
