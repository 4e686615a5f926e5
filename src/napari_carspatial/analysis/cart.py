"""CAR T measures per region, comparable across samples (densities per mm², fractions, log2 O/E).

The definitions and formulas are in ``docs/metrics.md``; the main entry points are
:func:`region_metrics` (one tidy table ``region, metric, value, unit``) and
:func:`infiltration_profile` (CAR T density against signed distance to the tumour boundary).

The tumour boundary, the signed distance to it and the infiltration profile are in
:mod:`napari_carspatial.analysis.tumor_distance` (re-exported here).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from napari_carspatial.analysis.regions import (
    WHOLE,
    coords_um,
    tissue_area_mm2,
)
from napari_carspatial.analysis.roles import role_masks
from napari_carspatial.analysis.tumor_distance import (  # the tumour boundary: analysis/tumor_distance.py
    TumorDistance,
    infiltration_profile,
    tumor_distance,
)

if TYPE_CHECKING:
    from typing import Any

    import scipy.sparse as sp
    from anndata import AnnData

    from napari_carspatial.analysis.roles import RoleMapping

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MARKERS",
    "TumorDistance",
    "infiltration_profile",
    "region_metrics",
    "tumor_distance",
]

#: exhaustion / activity markers reported for CAR T cells when present (threshold None = Otsu)
DEFAULT_MARKERS: dict[str, float | None] = {
    "PD-1": None, "LAG-3": None, "TIM-3": None, "Ki-67": None, "GZMB": None, "Granzyme B": None,
}

#: metric -> unit, in the order the table lists them
UNITS: dict[str, str] = {
    "n_cells": "cells",
    "n_car_t": "cells",
    "n_tumor": "cells",
    "n_myeloid": "cells",
    "area_mm2": "mm²",
    "car_t_density_per_mm2": "cells/mm²",
    "tumor_density_per_mm2": "cells/mm²",
    "myeloid_density_per_mm2": "cells/mm²",
    "frac_car_t_within_r_of_tumor": "fraction",
    "frac_car_t_contact_tumor": "fraction",
    "frac_car_t_contact_myeloid": "fraction",
    "frac_car_t_contact_pdl1_macrophage": "fraction",
    "antigen_neg_fraction": "fraction",
    "antigen_neg_clustering": "O/E ratio",
    "antigen_neg_clustering_z": "z",
    "log2_oe_car_t_tumor": "log2 ratio",
    "log2_oe_car_t_myeloid": "log2 ratio",
    "n_contacts_car_t_tumor": "edges",
    "n_contacts_car_t_myeloid": "edges",
    "infiltration_median_um": "µm",
}


def _marker_metric(marker: str) -> str:
    return "frac_car_t_" + re.sub(r"[^a-z0-9]", "", marker.lower()) + "_pos"


def _pairs_within(xy: np.ndarray, r: float) -> np.ndarray:
    """All pairs ``i < j`` with ``|xi - xj| <= r`` as an ``(m, 2)`` int64 array (scipy KD-tree)."""
    from scipy.spatial import cKDTree

    if xy.shape[0] < 2:
        return np.empty((0, 2), np.int64)
    tree = cKDTree(xy, balanced_tree=False, compact_nodes=False)
    return np.asarray(tree.query_pairs(float(r), output_type="ndarray"), dtype=np.int64).reshape(-1, 2)


def _within_of(xy: np.ndarray, query: np.ndarray, target: np.ndarray, r: float) -> np.ndarray:
    """``(n,)`` bool: query cells with a target cell other than themselves within ``r``."""
    from scipy.spatial import cKDTree

    out = np.zeros(xy.shape[0], dtype=bool)
    qi = np.flatnonzero(query)
    if qi.size == 0 or not target.any():
        return out
    tree = cKDTree(xy[target], balanced_tree=False, compact_nodes=False)
    cnt = np.asarray(tree.query_ball_point(xy[qi], float(r), return_length=True, workers=-1), dtype=np.int64)
    out[qi] = (cnt - target[qi]) > 0
    return out


def _pair_hits(p0: np.ndarray, p1: np.ndarray, n: int, query: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: query cells with a target neighbour among the pairs ``(p0, p1)``."""
    hit = np.zeros(n, dtype=bool)
    s = query[p0] & target[p1]
    hit[p0[s]] = True
    s = query[p1] & target[p0]
    hit[p1[s]] = True
    return hit


def _ordered_weights(p0, p1, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with an ordered entry from A to B: their positions and entry counts (1 or 2)."""
    w = (a[p0] & b[p1]).astype(np.int64) + (a[p1] & b[p0])
    idx = np.flatnonzero(w)
    return idx, w[idx]


def _region_bits(regions: list[np.ndarray], n: int) -> list[tuple[np.ndarray, list[int]]]:
    """Region membership packed 8 regions per uint8: ``[(bits (n,), [region index, ...]), ...]``."""
    out = []
    for start in range(0, len(regions), 8):
        bits = np.zeros(n, dtype=np.uint8)
        members = list(range(start, min(start + 8, len(regions))))
        for k, i in enumerate(members):
            bits |= regions[i].astype(np.uint8) << np.uint8(k)
        out.append((bits, members))
    return out


def _per_region(bits_list, i0: np.ndarray, i1: np.ndarray, n_regions: int) -> list[np.ndarray]:
    """For each region: bool mask over the pairs ``(i0, i1)`` with both cells in it."""
    out: list[np.ndarray] = [np.zeros(0, bool)] * n_regions
    for bits, members in bits_list:
        both = bits[i0] & bits[i1]
        for k, i in enumerate(members):
            out[i] = (both & np.uint8(1 << k)) != 0
    return out


def _oe(obs: float, s0: float, n: int, na: int, nb: int, nab: int) -> float:
    """log2((O + .5) / (E + .5)), E = S0 (nA nB - nAB) / (n (n - 1)) under random relabelling."""
    if n < 2 or na == 0 or nb == 0:
        return np.nan
    exp = s0 * (na * nb - nab) / (n * (n - 1.0))
    return float(np.log2((obs + 0.5) / (exp + 0.5)))


def _not_mapped(roles: list[str], info: dict) -> str:
    from napari_carspatial.analysis.roles import ROLE_TITLES

    titles = [ROLE_TITLES.get(r, r) for r in roles]
    parts = []
    plain = [t for r, t in zip(roles, titles, strict=True) if r != "pdl1_macrophage"]
    if plain:
        parts.append(f"{' and '.join(plain)} role{'s' if len(plain) > 1 else ''} not mapped to any cell type "
                     "(see roles.json; map with roles= / --roles)")
    if "pdl1_macrophage" in roles:
        parts.append("no PD-L1+ macrophages: no type is named so and " +
                     ("no myeloid type is mapped" if not info["mapped"].get("myeloid") else
                      f"the panel has no {info.get('pdl1_marker_asked', 'PD-L1')} marker"))
    return "; ".join(parts)


def region_metrics(
    adata: AnnData,
    *,
    cell_type_key: str | None = None,
    roles: RoleMapping | Mapping[str, Any] | str | None = None,
    regions: dict[str, np.ndarray] | None = None,
    pixel_size_um: float | None = None,
    contact_radius_um: float = 12.0,
    near_radius_um: float = 30.0,
    markers: dict | None = None,
    seed: int = 0,
    region_areas_mm2: Mapping[str, float] | None = None,
    contact_graph: sp.spmatrix | None = None,
    pdl1_marker: str = "PD-L1",
    pdl1_threshold: float | None = None,
    distance: TumorDistance | None = None,
) -> pd.DataFrame:
    """CAR T measures per region in tidy form (``region, metric, value, unit, note``).

    Parameters
    ----------
    adata
        Table with the cell types, ``obsm["spatial"]`` (level-0 px) and the pixel size in
        ``uns["carspatial"]["pixel_size_um"]`` (or ``pixel_size_um``).
    cell_type_key
        Cell-type column; ``None``: found by
        :func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`.
    roles
        Role mapping (:func:`~napari_carspatial.analysis.roles.parse_roles` format or a
        :class:`~napari_carspatial.analysis.roles.RoleMapping`), merged over the mapping stored
        in the table and the one inferred from the type names
        (:func:`~napari_carspatial.analysis.roles.resolve_roles`).
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
    pdl1_marker
        Marker of PD-L1+ macrophages (see :func:`~napari_carspatial.analysis.roles.role_masks`).
    pdl1_threshold
        Raw threshold of ``pdl1_marker`` (``None``: Otsu, see
        :func:`~napari_carspatial.analysis.roles.role_masks`).
    distance
        Precomputed :func:`tumor_distance`.

    Returns
    -------
    pandas.DataFrame
        Columns ``region, metric, value, unit, note``. A value is NaN, with the reason in
        ``note``, when a role it needs is not mapped to any cell type (never a silent 0) or when
        its denominator is empty in the region; a true 0 (a mapped role with no cells in the
        region) keeps a note too. ``df.attrs["params"]`` holds the parameters, thresholds, the
        role mapping and role sizes. Metrics are listed in ``docs/metrics.md``.

    Notes
    -----
    One KD-tree pass finds every pair of cells within ``contact_radius_um`` (scipy
    ``cKDTree.query_pairs``); the graph of a region is the pairs with both cells in it (the
    radius graph of a subset is the induced subgraph), so the regions share one pass and no
    per-region graph is built. Equal to the earlier per-region implementation
    (``analysis._cart_reference``), tested and benchmarked in ``benchmarks/bench_region_metrics.py``.
    """
    from napari_carspatial.analysis.graph import resolve_pixel_size
    from napari_carspatial.analysis.nhood import GraphSummary, join_count_moments
    from napari_carspatial.model.cell_types import resolve_cell_type_key

    key = resolve_cell_type_key(adata, cell_type_key).key
    px_known = resolve_pixel_size(adata, pixel_size_um) is not None
    xy, px = coords_um(adata, pixel_size_um=pixel_size_um)
    n = adata.n_obs
    masks, info = role_masks(adata, cell_type_key=key, roles=roles, pdl1_marker=pdl1_marker,
                             pdl1_threshold=pdl1_threshold)
    info["pdl1_marker_asked"] = pdl1_marker
    mapped = info["mapped"]
    if regions is None:
        regions = {WHOLE: np.ones(n, dtype=bool)}
    if distance is None:
        distance = tumor_distance(adata, tumor_mask=masks["tumor"], pixel_size_um=px)
    car, tum, neg = masks["car_t"], masks["tumor"], masks["antigen_neg"]
    mye, pdl1 = masks["myeloid"], masks["pdl1_macrophage"]

    # every pair within the contact radius, once for all regions
    pairs = _pairs_within(xy, contact_radius_um)
    a0, a1 = pairs[:, 0], pairs[:, 1]
    cp = np.flatnonzero(car[a0] | car[a1])  # pairs with a CAR T cell
    c0, c1 = a0[cp], a1[cp]
    # neighbour tests use every cell of the sample (no edge effect at the region's border)
    near_tumor = _within_of(xy, car, tum, near_radius_um)
    contact = {}
    for role, target in (("tumor", tum), ("myeloid", mye), ("pdl1_macrophage", pdl1)):
        if contact_graph is not None:
            g = contact_graph.tocsr()
            c = np.zeros(n, bool)
            c[car] = np.asarray(g[np.flatnonzero(car)] @ target.astype(np.float64)).ravel() > 0
        else:
            c = _pair_hits(c0, c1, n, car, target)
        contact[role] = c & car
    ct_idx, ct_w = _ordered_weights(c0, c1, car, tum)
    cm_idx, cm_w = _ordered_weights(c0, c1, car, mye)
    # tumour-tumour pairs: the graph of the antigen-negative clustering
    tt = np.flatnonzero(tum[a0] & tum[a1])
    t0, t1 = a0[tt], a1[tt]
    nn_pair = neg[t0] & neg[t1]
    # which pairs lie in which region (8 regions per pass)
    names = list(regions)
    rmasks = [np.asarray(regions[k], dtype=bool) for k in names]
    for name, rmask in zip(names, rmasks, strict=True):
        if rmask.shape != (n,):
            raise ValueError(f"region {name!r}: mask has shape {rmask.shape}, expected ({n},)")
    bits = _region_bits(rmasks, n)
    in_all = _per_region(bits, a0, a1, len(names))
    in_ct = _per_region(bits, c0[ct_idx], c1[ct_idx], len(names))
    in_cm = _per_region(bits, c0[cm_idx], c1[cm_idx], len(names))
    in_tt = _per_region(bits, t0, t1, len(names))

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

    need = {  # metric -> roles it needs mapped
        "n_car_t": ("car_t",), "n_tumor": ("tumor",), "n_myeloid": ("myeloid",),
        "car_t_density_per_mm2": ("car_t",), "tumor_density_per_mm2": ("tumor",),
        "myeloid_density_per_mm2": ("myeloid",), "frac_car_t_within_r_of_tumor": ("car_t", "tumor"),
        "frac_car_t_contact_tumor": ("car_t", "tumor"), "frac_car_t_contact_myeloid": ("car_t", "myeloid"),
        "frac_car_t_contact_pdl1_macrophage": ("car_t", "pdl1_macrophage"),
        "antigen_neg_fraction": ("tumor", "antigen_neg"), "antigen_neg_clustering": ("tumor", "antigen_neg"),
        "antigen_neg_clustering_z": ("tumor", "antigen_neg"), "log2_oe_car_t_tumor": ("car_t", "tumor"),
        "log2_oe_car_t_myeloid": ("car_t", "myeloid"), "infiltration_median_um": ("car_t", "tumor"),
        "n_contacts_car_t_tumor": ("car_t", "tumor"), "n_contacts_car_t_myeloid": ("car_t", "myeloid"),
    }
    for m in positive:
        need[_marker_metric(m)] = ("car_t",)
    unmapped_note = {}
    for metric, rs in need.items():
        miss = [r for r in rs if not mapped.get(r)]
        if miss:
            unmapped_note[metric] = _not_mapped(miss, info)
    totals = {"car_t": int(car.sum()), "tumor": int(tum.sum()), "myeloid": int(mye.sum()),
              "pdl1_macrophage": int(pdl1.sum())}

    rows: list[tuple[str, str, float, str]] = []
    areas = dict(region_areas_mm2 or {})
    nan = float("nan")
    for ri, (name, rmask) in enumerate(zip(names, rmasks, strict=True)):
        area = areas.get(name)
        if area is None:
            area = tissue_area_mm2(xy[rmask])
        rc, rt, rm, rn = car & rmask, tum & rmask, mye & rmask, neg & rmask
        nc, nt, nm = int(rc.sum()), int(rt.sum()), int(rm.sum())
        notes: dict[str, str] = {}

        def frac(x, of, what, nan=nan, notes=notes, metric=None):
            k = int(of.sum())
            if not k:
                notes[metric] = f"no {what} cells in this region"
                return nan
            return float(x[of].sum()) / k

        def dens(count, what, metric, area=area, notes=notes):
            if not area > 0:
                notes[metric] = "the region has no tissue area"
                return nan
            if count == 0:
                notes[metric] = f"no {what} cells in this region"
            return count / area

        vals: dict[str, float] = {
            "n_cells": float(rmask.sum()), "n_car_t": float(nc), "n_tumor": float(nt), "n_myeloid": float(nm),
            "area_mm2": float(area),
            "car_t_density_per_mm2": dens(nc, "CAR T", "car_t_density_per_mm2"),
            "tumor_density_per_mm2": dens(nt, "tumour", "tumor_density_per_mm2"),
            "myeloid_density_per_mm2": dens(nm, "myeloid", "myeloid_density_per_mm2"),
            "frac_car_t_within_r_of_tumor": frac(near_tumor, rc, "CAR T", metric="frac_car_t_within_r_of_tumor"),
            "frac_car_t_contact_tumor": frac(contact["tumor"], rc, "CAR T", metric="frac_car_t_contact_tumor"),
            "frac_car_t_contact_myeloid": frac(contact["myeloid"], rc, "CAR T", metric="frac_car_t_contact_myeloid"),
            "frac_car_t_contact_pdl1_macrophage": frac(contact["pdl1_macrophage"], rc, "CAR T",
                                                       metric="frac_car_t_contact_pdl1_macrophage"),
            "antigen_neg_fraction": frac(rn, rt, "tumour", metric="antigen_neg_fraction"),
        }
        for metric, role in (("frac_car_t_within_r_of_tumor", "tumor"), ("frac_car_t_contact_tumor", "tumor"),
                             ("frac_car_t_contact_myeloid", "myeloid"),
                             ("frac_car_t_contact_pdl1_macrophage", "pdl1_macrophage")):
            if metric not in notes and totals[role] == 0:
                notes[metric] = f"the sample has no {role.replace('_', ' ')} cells"
        # the region's graph = the pairs with both cells in the region
        nr = int(rmask.sum())
        obs_ct = obs_cm = nan
        if nr >= 2:
            s0 = 2.0 * float(np.count_nonzero(in_all[ri]))
            o_ct, o_cm = float(np.dot(ct_w, in_ct[ri])), float(np.dot(cm_w, in_cm[ri]))
            oe_ct = _oe(o_ct, s0, nr, nc, nt, int(np.count_nonzero(rc & tum)))
            oe_cm = _oe(o_cm, s0, nr, nc, nm, int(np.count_nonzero(rc & mye)))
            # observed CAR T -> tumour / myeloid edges behind the O/E ratios (0: "no contacts")
            obs_ct = o_ct if np.isfinite(oe_ct) else nan
            obs_cm = o_cm if np.isfinite(oe_cm) else nan
            for metric, v, what in (("log2_oe_car_t_tumor", oe_ct, "tumour"),
                                    ("log2_oe_car_t_myeloid", oe_cm, "myeloid"),
                                    ("n_contacts_car_t_tumor", obs_ct, "tumour"),
                                    ("n_contacts_car_t_myeloid", obs_cm, "myeloid")):
                if not np.isfinite(v):
                    notes[metric] = f"needs CAR T and {what} cells in this region"
        else:
            oe_ct = oe_cm = nan
            for metric in ("log2_oe_car_t_tumor", "log2_oe_car_t_myeloid", "n_contacts_car_t_tumor",
                           "n_contacts_car_t_myeloid"):
                notes[metric] = "fewer than 2 cells in this region"
        # antigen-negative clustering: join counts on the graph induced on the region's tumour cells
        clus = clus_z = nan
        if nt >= 3:
            sel = in_tt[ri]
            m_edges = int(np.count_nonzero(sel))
            k_neg = int(rn.sum())
            if 0 < k_neg < nt and m_edges:
                deg = np.bincount(t0[sel], minlength=n) + np.bincount(t1[sel], minlength=n)
                deg = deg[rt].astype(np.float64)
                s0t = 2.0 * m_edges
                r2 = float(deg @ deg)
                g = GraphSummary(n=nt, s0=s0t, s_t=s0t, r2=r2, c2=r2, x=r2, d=0.0, y=0.0)
                obs = 2.0 * float(np.count_nonzero(nn_pair & sel))
                e, v = join_count_moments(np.array([nt - k_neg, k_neg]), g)
                clus = obs / e[1, 1] if e[1, 1] > 0 else nan
                clus_z = (obs - e[1, 1]) / np.sqrt(v[1, 1]) if v[1, 1] > 0 else nan
            else:
                why = ("no antigen-negative tumour cells in this region" if k_neg == 0 else
                       "every tumour cell in this region is antigen-negative" if k_neg == nt else
                       f"no two tumour cells within {contact_radius_um:g} µm in this region")
                notes["antigen_neg_clustering"] = notes["antigen_neg_clustering_z"] = why
        else:
            notes["antigen_neg_clustering"] = notes["antigen_neg_clustering_z"] = "fewer than 3 tumour cells in this region"
        vals["antigen_neg_clustering"] = float(clus)
        vals["antigen_neg_clustering_z"] = float(clus_z)
        vals["log2_oe_car_t_tumor"] = float(oe_ct)
        vals["log2_oe_car_t_myeloid"] = float(oe_cm)
        # observed edges behind the O/E ratios: 0 means "no contacts" (the ratio is then the pseudo-count floor)
        vals["n_contacts_car_t_tumor"] = float(obs_ct)
        vals["n_contacts_car_t_myeloid"] = float(obs_cm)
        d = distance.cell_um[rc]
        d = d[np.isfinite(d)]
        vals["infiltration_median_um"] = float(np.median(d)) if d.size else nan
        if not d.size:
            notes["infiltration_median_um"] = ("no CAR T cells in this region" if nc == 0 else
                                               "no tumour boundary (no tumour region in the sample)")
        for m, pos in positive.items():
            vals[_marker_metric(m)] = frac(pos, rc, "CAR T", metric=_marker_metric(m))
        for k, v in vals.items():
            note = notes.get(k, "")
            if k in unmapped_note:
                v, note = nan, unmapped_note[k]
            rows.append((str(name), k, float(v), note))
    df = pd.DataFrame(rows, columns=["region", "metric", "value", "note"])
    df.insert(3, "unit", [UNITS.get(m, "fraction" if m.startswith("frac_") else "") for m in df["metric"]])
    if not px_known:
        # no pixel size: lengths are pixels and areas million square pixels; say so in the units
        df["unit"] = df["unit"].replace({"µm": "px", "mm²": "Mpx²", "cells/mm²": "cells/Mpx²"})
    mapping = info["mapping"]
    df.attrs["params"] = {
        "cell_type_key": key, "contact_radius_um": float(contact_radius_um),
        "near_radius_um": float(near_radius_um), "pixel_size_um": float(px) if px_known else None,
        "marker_thresholds": thresholds, "pdl1_threshold": info.get("pdl1_threshold"),
        "contact": "mask contact graph" if contact_graph is not None else "centroid distance",
        "roles": {k: int(v.sum()) for k, v in masks.items()}, "role_mapping": mapping.to_dict(),
        "rule_thresholds": info.get("rule_thresholds", {}), "seed": int(seed),
    }
    logger.info("region_metrics: %d regions, %d cells", len(names), n)
    return df
