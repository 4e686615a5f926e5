"""The straightforward :func:`~napari_carspatial.analysis.cart.region_metrics` (before issue 16),
kept as the reference the fast implementation is tested and benchmarked against.

It builds a radius graph per region (numba grid), tests neighbours with one KD-tree per role and
maps cell types with string comparisons. Same inputs, same numbers as ``region_metrics`` wherever
the roles are mapped (where a role is not mapped this one reports 0 where the product says NaN
with a reason). Not part of the public API.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from napari_carspatial.analysis.cart import DEFAULT_MARKERS, UNITS, TumorDistance
from napari_carspatial.analysis.regions import WHOLE, coords_um, tissue_area_mm2

logger = logging.getLogger(__name__)

_DEFAULT_ROLES: dict[str, list[str] | None] = {
    "tumor": ["Tumor", "Tumor (antigen-neg)"],
    "antigen_neg": ["Tumor (antigen-neg)"],
    "car_t": ["CAR T"],
    "myeloid": ["Macrophage", "MDSC"],
    "pdl1_macrophage": None,
}


def _marker_metric(marker: str) -> str:
    return "frac_car_t_" + re.sub(r"[^a-z0-9]", "", marker.lower()) + "_pos"


def _role_masks_reference(
    adata,
    *,
    cell_type_key: str = "cell_type",
    roles: Mapping[str, list[str] | None] | None = None,
    pdl1_marker: str = "PD-L1",
    pdl1_threshold: float | None = None,
    layer: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Boolean masks of cells in each role, and how derived roles were decided.

    Parameters
    ----------
    adata
        Table with ``obs[cell_type_key]``.
    cell_type_key
        Cell-type column.
    roles
        ``{role: [cell types]}``, merged over :data:`_DEFAULT_ROLES` (a role given here replaces
        the default). ``pdl1_macrophage: None`` means *derived*: ``myeloid`` cells whose
        ``pdl1_marker`` value is above ``pdl1_threshold``; a list of types names them directly.
        Types absent from the column are ignored (logged).
    pdl1_marker, pdl1_threshold
        Marker (``var_names``) and raw threshold for the derived PD-L1+ role; ``None``: Otsu on
        asinh(x / 5) of all cells (:func:`~napari_carspatial.analysis.gating.suggest_threshold`).

    Returns
    -------
    masks, info
        ``{role: (n_obs,) bool}`` and ``{"pdl1_threshold": ..., "missing_types": {...}}``.
    """
    if cell_type_key not in adata.obs:
        raise KeyError(f"obs has no cell-type column {cell_type_key!r}; available: {list(adata.obs.columns)}")
    merged: dict[str, list[str] | None] = dict(_DEFAULT_ROLES)
    if roles:
        merged.update({str(k): (None if v is None else [str(t) for t in v]) for k, v in roles.items()})
    ct = adata.obs[cell_type_key].astype(str).to_numpy()
    present = set(np.unique(ct))
    masks: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"missing_types": {}, "pdl1_threshold": None, "pdl1_marker": None}
    for role, types in merged.items():
        if types is None:
            continue
        missing = [t for t in types if t not in present]
        if missing:
            info["missing_types"][role] = missing
            logger.debug("role %s: types %s not in obs[%r]", role, missing, cell_type_key)
        masks[role] = np.isin(ct, types)
    if merged.get("pdl1_macrophage") is None:
        myeloid = masks.get("myeloid", np.zeros(adata.n_obs, dtype=bool))
        if pdl1_marker in list(adata.var_names):
            from napari_carspatial.analysis.gating import marker_values, suggest_threshold

            vals = marker_values(adata, pdl1_marker, layer=layer)
            thr = pdl1_threshold
            if thr is None:
                try:
                    thr = suggest_threshold(vals, method="otsu", transform="asinh", cofactor=5.0)
                except ValueError:
                    thr = np.inf
            masks["pdl1_macrophage"] = myeloid & (vals > thr)
            info["pdl1_threshold"] = float(thr)
            info["pdl1_marker"] = pdl1_marker
        else:
            masks["pdl1_macrophage"] = np.zeros(adata.n_obs, dtype=bool)
            info["pdl1_marker"] = None
    return masks, info




def _tumor_distance_reference(
    adata,
    *,
    tumor_mask: np.ndarray | None = None,
    cell_type_key: str = "cell_type",
    roles: Mapping[str, list[str] | None] | None = None,
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
    grid_um, smooth_um, tissue_um
        Grid square side, Gaussian sigma of the smoothing, and tissue distance, in µm.

    Returns
    -------
    TumorDistance
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    xy, px = coords_um(adata, pixel_size_um=pixel_size_um)
    if tumor_mask is None:
        masks, _ = _role_masks_reference(adata, cell_type_key=cell_type_key, roles=roles)
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
    nearest = np.full((ny, nx), -1, dtype=np.int64)
    if n:
        yy, xx = np.nonzero(tissue)
        centers = np.column_stack([lo[0] + (xx + 0.5) * g, lo[1] + (yy + 0.5) * g])
        _, idx = cKDTree(xy).query(centers, k=1, workers=-1)
        nearest[yy, xx] = idx
    return TumorDistance(cell, fld, tissue, nearest, (float(lo[0]), float(lo[1])), g,
                         {"grid_um": g, "smooth_um": smooth_um, "tissue_um": tissue_um, "pixel_size_um": px})



def _has_neighbor(query_xy: np.ndarray, target_xy: np.ndarray, r: float) -> np.ndarray:
    """For each query point: is there a target point within ``r`` (other than itself)?"""
    from scipy.spatial import cKDTree

    if query_xy.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    if target_xy.shape[0] == 0:
        return np.zeros(query_xy.shape[0], dtype=bool)
    k = min(2, target_xy.shape[0])
    d, _ = cKDTree(target_xy).query(query_xy, k=k, distance_upper_bound=r)
    d = d.reshape(query_xy.shape[0], k)
    # a zero distance is the cell itself (roles overlap) unless a second target is there too
    ok = (d[:, 0] <= r) & (d[:, 0] > 0)
    if k > 1:
        ok |= (d[:, 0] == 0) & (d[:, 1] <= r)
    return ok


def _contact_has(graph, query: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rows ``query`` of a CSR graph: does the row hold an entry in ``target`` (bool mask)?"""
    sub = graph[np.flatnonzero(query)]
    return np.asarray(sub @ target.astype(np.float64)).ravel() > 0


def _log2_oe(adj, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Observed A->B entries, their expectation under random relabelling, log2((O+.5)/(E+.5))."""
    n = adj.shape[0]
    na, nb = int(a.sum()), int(b.sum())
    if n < 2 or na == 0 or nb == 0:
        return np.nan, np.nan, np.nan
    obs = float(adj[np.flatnonzero(a)][:, np.flatnonzero(b)].nnz)
    s0 = float(adj.nnz - adj.diagonal().astype(bool).sum())
    nab = float(np.count_nonzero(a & b))
    # E[# (i, j) entries, i != j, l_i in A, l_j in B] = s0 * (nA nB - nAB) / (n (n - 1))
    exp = s0 * (na * nb - nab) / (n * (n - 1.0))
    return obs, exp, float(np.log2((obs + 0.5) / (exp + 0.5)))


def region_metrics_reference(
    adata,
    *,
    cell_type_key: str = "cell_type",
    roles: dict | None = None,
    regions: dict[str, np.ndarray] | None = None,
    pixel_size_um: float | None = None,
    contact_radius_um: float = 12.0,
    near_radius_um: float = 30.0,
    markers: dict | None = None,
    seed: int = 0,
    region_areas_mm2: Mapping[str, float] | None = None,
    contact_graph=None,
    pdl1_marker: str = "PD-L1",
    pdl1_threshold: float | None = None,
    distance: TumorDistance | None = None,
) -> pd.DataFrame:
    """CAR T measures per region in tidy form (``region, metric, value, unit``).

    Parameters
    ----------
    adata
        Table with ``obs[cell_type_key]``, ``obsm["spatial"]`` (level-0 px) and the pixel size
        in ``uns["carspatial"]["pixel_size_um"]`` (or ``pixel_size_um``).
    cell_type_key
        Cell-type column.
    roles
        Role mapping merged over :data:`~napari_carspatial.analysis.regions.DEFAULT_ROLES`
        (``tumor``, ``antigen_neg``, ``car_t``, ``myeloid``, ``pdl1_macrophage``).
    regions
        ``{name: (n_obs,) bool}``; ``None``: one region ``"whole"``.
    pixel_size_um
        µm per pixel (overrides the table's).
    contact_radius_um
        Two cells are *in contact* when their centroids are at most this far apart (unless
        ``contact_graph`` is given); also the radius of the graph behind the O/E ratios and
        the antigen-negative clustering.
    near_radius_um
        ``r`` of ``frac_car_t_within_r_of_tumor``.
    markers
        ``{marker: raw threshold or None}`` for ``frac_car_t_<marker>_pos`` (None: Otsu on
        asinh(x/5) of all cells). Default :data:`DEFAULT_MARKERS`; markers absent from
        ``var_names`` are skipped.
    seed
        Accepted for API symmetry; every measure here is deterministic.
    region_areas_mm2
        ``{name: area}`` (e.g. polygon areas); regions without one get the tissue area of their
        cells (:func:`~napari_carspatial.analysis.regions.tissue_area_mm2`, 20 µm grid).
    contact_graph
        ``(n_obs, n_obs)`` sparse mask-contact graph (:func:`~napari_carspatial.analysis.contact.contact_graph`)
        used for the ``contact`` fractions instead of the centroid radius.
    pdl1_marker, pdl1_threshold
        How PD-L1+ macrophages are derived (see :func:`~napari_carspatial.analysis.regions.role_masks`).
    distance
        Precomputed :func:`tumor_distance`.

    Returns
    -------
    pandas.DataFrame
        Columns ``region, metric, value, unit``; ``df.attrs["params"]`` holds the parameters,
        thresholds and role sizes. Metrics are listed in ``docs/metrics.md``.
    """
    from napari_carspatial.analysis.graph import spatial_graph
    from napari_carspatial.analysis.nhood import graph_summary, join_count_moments

    xy, px = coords_um(adata, pixel_size_um=pixel_size_um)
    n = adata.n_obs
    masks, info = _role_masks_reference(adata, cell_type_key=cell_type_key, roles=roles,
                             pdl1_marker=pdl1_marker, pdl1_threshold=pdl1_threshold)
    if regions is None:
        regions = {WHOLE: np.ones(n, dtype=bool)}
    if distance is None:
        distance = _tumor_distance_reference(adata, tumor_mask=masks["tumor"], pixel_size_um=px)
    car, tum, neg = masks["car_t"], masks["tumor"], masks["antigen_neg"]
    mye, pdl1 = masks["myeloid"], masks["pdl1_macrophage"]

    # neighbour tests use every cell of the sample (no edge effect at the region's border)
    near_tumor = np.zeros(n, bool)
    near_tumor[car] = _has_neighbor(xy[car], xy[tum], near_radius_um)
    contact = {}
    for role, target in (("tumor", tum), ("myeloid", mye), ("pdl1_macrophage", pdl1)):
        c = np.zeros(n, bool)
        if contact_graph is not None:
            c[car] = _contact_has(contact_graph.tocsr(), car, target)
        else:
            c[car] = _has_neighbor(xy[car], xy[target], contact_radius_um)
        contact[role] = c

    # marker positivity (thresholds over all cells)
    mk = DEFAULT_MARKERS if markers is None else markers
    var = list(map(str, adata.var_names))
    thresholds: dict[str, float] = {}
    positive: dict[str, np.ndarray] = {}
    from napari_carspatial.analysis.gating import marker_values, suggest_threshold

    for m, thr in mk.items():
        if m not in var:
            continue
        vals = marker_values(adata, m)
        if thr is None:
            try:
                thr = suggest_threshold(vals, method="otsu", transform="asinh", cofactor=5.0)
            except ValueError:
                continue
        thresholds[m] = float(thr)
        positive[m] = vals > thr

    rows: list[tuple[str, str, float]] = []
    areas = dict(region_areas_mm2 or {})
    for name, rmask in regions.items():
        rmask = np.asarray(rmask, dtype=bool)
        if rmask.shape != (n,):
            raise ValueError(f"region {name!r}: mask has shape {rmask.shape}, expected ({n},)")
        area = areas.get(name)
        if area is None:
            area = tissue_area_mm2(xy[rmask])
        rc, rt, rm, rn = car & rmask, tum & rmask, mye & rmask, neg & rmask
        nc, nt, nm = int(rc.sum()), int(rt.sum()), int(rm.sum())
        nan = float("nan")

        def frac(x, of, nan=nan):
            k = int(of.sum())
            return float(x[of].sum()) / k if k else nan

        vals: dict[str, float] = {
            "n_cells": float(rmask.sum()), "n_car_t": float(nc), "n_tumor": float(nt), "n_myeloid": float(nm),
            "area_mm2": float(area),
            "car_t_density_per_mm2": nc / area if area > 0 else nan,
            "tumor_density_per_mm2": nt / area if area > 0 else nan,
            "myeloid_density_per_mm2": nm / area if area > 0 else nan,
            "frac_car_t_within_r_of_tumor": frac(near_tumor, rc),
            "frac_car_t_contact_tumor": frac(contact["tumor"], rc),
            "frac_car_t_contact_myeloid": frac(contact["myeloid"], rc),
            "frac_car_t_contact_pdl1_macrophage": frac(contact["pdl1_macrophage"], rc),
            "antigen_neg_fraction": float(rn.sum()) / nt if nt else nan,
        }
        # graph of the region's cells at the contact radius (µm coordinates)
        idx = np.flatnonzero(rmask)
        oe_ct = oe_cm = clus = clus_z = obs_ct = obs_cm = nan
        if idx.size >= 2:
            adj = spatial_graph(xy[idx], method="radius", radius=float(contact_radius_um),
                                pixel_size_um=1.0).connectivities   # xy is in µm already
            obs_ct, _, oe_ct = _log2_oe(adj, car[idx], tum[idx])
            obs_cm, _, oe_cm = _log2_oe(adj, car[idx], mye[idx])
            # antigen-negative clustering: join counts on the graph induced on tumour cells
            ti = np.flatnonzero(tum[idx])
            if ti.size >= 3:
                sub = adj[ti][:, ti].tocsr()
                lab = neg[idx][ti].astype(np.int64)
                k_neg = int(lab.sum())
                if 0 < k_neg < ti.size and sub.nnz:
                    obs = float(sub[np.flatnonzero(lab)][:, np.flatnonzero(lab)].nnz)
                    e, v = join_count_moments(np.bincount(lab, minlength=2), graph_summary(sub))
                    clus = obs / e[1, 1] if e[1, 1] > 0 else nan
                    clus_z = (obs - e[1, 1]) / np.sqrt(v[1, 1]) if v[1, 1] > 0 else nan
        vals["antigen_neg_clustering"] = float(clus)
        vals["antigen_neg_clustering_z"] = float(clus_z)
        vals["log2_oe_car_t_tumor"] = float(oe_ct)
        vals["log2_oe_car_t_myeloid"] = float(oe_cm)
        vals["n_contacts_car_t_tumor"] = float(obs_ct)
        vals["n_contacts_car_t_myeloid"] = float(obs_cm)
        d = distance.cell_um[rc]
        d = d[np.isfinite(d)]
        vals["infiltration_median_um"] = float(np.median(d)) if d.size else nan
        for m, pos in positive.items():
            vals[_marker_metric(m)] = frac(pos, rc)
        for k, v in vals.items():
            rows.append((str(name), k, float(v)))
    df = pd.DataFrame(rows, columns=["region", "metric", "value"])
    df["unit"] = [UNITS.get(m, "fraction" if m.startswith("frac_") else "") for m in df["metric"]]
    df.attrs["params"] = {
        "cell_type_key": cell_type_key, "contact_radius_um": float(contact_radius_um),
        "near_radius_um": float(near_radius_um), "pixel_size_um": float(px),
        "marker_thresholds": thresholds, "pdl1_threshold": info.get("pdl1_threshold"),
        "contact": "mask contact graph" if contact_graph is not None else "centroid distance",
        "roles": {k: int(v.sum()) for k, v in masks.items()}, "seed": int(seed),
    }
    logger.info("region_metrics: %d regions, %d cells", len(regions), n)
    return df
