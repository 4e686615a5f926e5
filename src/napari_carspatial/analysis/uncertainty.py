"""Intervals for region results, so a number is never shown without its uncertainty.

* **Fractions** (k of n cells): the Wilson score interval (:func:`wilson_interval`; equal to
  ``statsmodels.stats.proportion.proportion_confint(method="wilson")``). It treats the n cells as
  independent.
* **Counts per area** (densities): a spatial *block bootstrap* (:func:`block_bootstrap`): the
  region is cut into square tiles (``tile_um``, default 100 µm), tiles are drawn with
  replacement and the density of each resample is its cells over its tissue area (each tile's
  area = its occupied 20 µm squares, scaled so that all tiles add up to the region's area).
  Whole tiles move together, so clustering of the cells widens the interval, as it should. The
  reported interval is the wider of that and the exact (Garwood) Poisson interval of the count
  (:func:`poisson_interval`), so a region with no or few cells is never shown as certain (a
  bootstrap of zeros is ``[0, 0]``). With fewer than :data:`MIN_TILES` occupied tiles only the
  Poisson interval is given, and the method says so.
* **log2 observed / expected** neighbour counts (enrichment, CAR T contacts): the same block
  bootstrap over the tiles of the edges' first cells (observed edges, cells per type and graph
  entries are all sums over tiles, so a resample recomputes O and E exactly as the statistic
  does), widened by the exact Poisson interval of the observed count.
* **Region comparisons** are differences with intervals, by the MOVER method (Zou & Donner 2008,
  "method of variance estimates recovery") from the two regions' own intervals
  (:func:`mover_difference`): for two Wilson intervals this *is* Newcombe's hybrid score interval
  (``statsmodels.stats.proportion.confint_proportions_2indep(method="newcomb")``). It assumes
  the regions are independent (no shared cells; the comparison says when they overlap). z-scores
  are never subtracted: they grow with the number of cells.

Everything is vectorised numpy / scipy (no statsmodels at run time; the tests compare with it
and with ``scipy.stats.bootstrap``). No napari, no Qt.

One module (570 lines) because all intervals rest on the same tile block bootstrap (tile codes and
areas, resample sums, the Poisson widening), and the fraction, density and log2 O/E intervals must
use the same tiles and the same seeds to be comparable; the helpers are private to that shared
machinery.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_TILES",
    "TileBootstrap",
    "block_bootstrap",
    "bootstrap_indices",
    "cart_intervals",
    "compare_intervals",
    "mover_difference",
    "oe_intervals",
    "percentile_interval",
    "poisson_interval",
    "tile_areas",
    "tile_codes",
    "wilson_interval",
]

#: fewer occupied tiles than this: no bootstrap (the Poisson interval alone)
MIN_TILES = 5
#: default tile side of the block bootstrap (µm)
TILE_UM = 100.0
#: default number of bootstrap resamples
N_BOOT = 1000


def _z(confidence: float) -> float:
    from scipy.stats import norm

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2))


# --------------------------------------------------------------------------- closed forms
def wilson_interval(count, nobs, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``count / nobs`` (vectorised; NaN where ``nobs`` is 0).

    Equal to ``statsmodels.stats.proportion.proportion_confint(count, nobs, alpha=1 - confidence,
    method="wilson")``.
    """
    k = np.asarray(count, dtype=np.float64)
    n = np.asarray(nobs, dtype=np.float64)
    z = _z(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        den = 1.0 + z * z / n
        center = (p + z * z / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
        lo = np.where(n > 0, np.clip(center - half, 0.0, 1.0), np.nan)
        hi = np.where(n > 0, np.clip(center + half, 0.0, 1.0), np.nan)
    return lo, hi


def poisson_interval(count, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) interval of a Poisson mean from one observed ``count`` (vectorised).

    ``[chi2(a/2, 2k) / 2, chi2(1 - a/2, 2k + 2) / 2]`` with ``a = 1 - confidence`` (lower bound 0
    for ``k = 0``); equal to ``statsmodels.stats.rates.confint_poisson(k, 1, method="exact-c")``.
    Divide by the exposure (an area) for a rate.
    """
    from scipy.stats import chi2

    k = np.asarray(count, dtype=np.float64)
    a = 1.0 - confidence
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, chi2.ppf(a / 2, 2 * k) / 2, 0.0)
        hi = chi2.ppf(1 - a / 2, 2 * k + 2) / 2
    bad = ~np.isfinite(k) | (k < 0)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def mover_difference(est1, lo1, hi1, est2, lo2, hi2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference ``est1 - est2`` with the MOVER interval from each estimate's own interval.

    ``L = d - sqrt((est1 - lo1)^2 + (hi2 - est2)^2)``, ``U = d + sqrt((hi1 - est1)^2 + (est2 - lo2)^2)``
    (Zou & Donner 2008). With Wilson intervals this is Newcombe's hybrid score interval for a
    difference of proportions. NaN where an input is NaN.
    """
    e1, l1, h1 = (np.asarray(v, dtype=np.float64) for v in (est1, lo1, hi1))
    e2, l2, h2 = (np.asarray(v, dtype=np.float64) for v in (est2, lo2, hi2))
    d = e1 - e2
    lo = d - np.sqrt((e1 - l1) ** 2 + (h2 - e2) ** 2)
    hi = d + np.sqrt((h1 - e1) ** 2 + (e2 - l2) ** 2)
    return d, lo, hi


# --------------------------------------------------------------------------- block bootstrap
def tile_codes(xy_um: np.ndarray, tile_um: float = TILE_UM) -> np.ndarray:
    """Tile index ``0..T-1`` of each (x, y) position on a ``tile_um`` square grid (occupied tiles only)."""
    xy = np.asarray(xy_um, dtype=np.float64).reshape(-1, 2)
    if xy.shape[0] == 0:
        return np.zeros(0, np.int64)
    ij = np.floor((xy - xy.min(axis=0)) / float(tile_um)).astype(np.int64)
    key = ij[:, 0] * (int(ij[:, 1].max()) + 1) + ij[:, 1]
    _, codes = np.unique(key, return_inverse=True)
    return codes.astype(np.int64).ravel()


def tile_areas(xy_um: np.ndarray, codes: np.ndarray, *, total_area: float | None = None,
               grid_um: float = 20.0) -> np.ndarray:
    """Tissue area of each tile: its occupied ``grid_um`` squares (the tissue-area rule of
    :func:`~napari_carspatial.analysis.regions.tissue_area_mm2`), in mm², scaled to ``total_area``."""
    xy = np.asarray(xy_um, dtype=np.float64).reshape(-1, 2)
    T = int(codes.max()) + 1 if codes.size else 0
    if T == 0:
        return np.zeros(0)
    sq = np.floor((xy - xy.min(axis=0)) / grid_um).astype(np.int64)
    key = sq[:, 0] * (int(sq[:, 1].max()) + 1) + sq[:, 1]
    # one square belongs to the tile of its first cell (a tile boundary falls on a square boundary
    # when tile_um is a multiple of grid_um, the default)
    _, first = np.unique(key, return_index=True)
    area = np.bincount(codes[first], minlength=T).astype(np.float64) * grid_um * grid_um / 1e6
    if total_area is not None and area.sum() > 0 and np.isfinite(total_area) and total_area > 0:
        area *= float(total_area) / area.sum()
    return area


def bootstrap_indices(n_tiles: int, *, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_tiles)`` tile indices drawn with replacement, exactly as ``scipy.stats.bootstrap``
    draws them (``numpy.random.default_rng(seed).integers(0, n, (n_boot, n))``)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_tiles, (int(n_boot), int(n_tiles)))


def _resample_sums(tile_sums: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Sums over each resample's tiles: ``(B, *tile_sums.shape[1:])`` (as a weighted sum)."""
    B, T = idx.shape
    w = np.bincount((idx + np.arange(B)[:, None] * T).ravel(), minlength=B * T).reshape(B, T).astype(np.float64)
    flat = tile_sums.reshape(T, -1).astype(np.float64)
    return (w @ flat).reshape((B, *tile_sums.shape[1:]))


def percentile_interval(replicates: np.ndarray, *, confidence: float = 0.95, axis: int = 0,
                        min_finite: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates (``numpy.percentile``, linear, as scipy);
    NaN where fewer than ``min_finite`` of the replicates are finite."""
    r = np.asarray(replicates, dtype=np.float64)
    a = (1.0 - confidence) / 2
    ok = np.isfinite(r).mean(axis=axis) >= min_finite
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if np.isfinite(r).all():
            lo, hi = np.percentile(r, [100 * a, 100 * (1 - a)], axis=axis)
        else:
            lo, hi = np.nanpercentile(r, [100 * a, 100 * (1 - a)], axis=axis)
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)


@dataclass
class TileBootstrap:
    """A block bootstrap: the statistic, its replicates and the percentile interval."""

    estimate: np.ndarray
    replicates: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_tiles: int
    n_boot: int
    seed: int


def block_bootstrap(tile_sums: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *, n_boot: int = N_BOOT,
                    seed: int = 0, confidence: float = 0.95) -> TileBootstrap:
    """Percentile block bootstrap of a statistic of additive per-tile quantities.

    Parameters
    ----------
    tile_sums
        ``(T, ...)``: per tile, the quantities the statistic is a function of (counts, areas,
        edges), each a sum over the tile's cells.
    statistic
        Maps summed quantities ``(..., *tile_sums.shape[1:])`` to the statistic (vectorised
        over leading axes).
    n_boot, seed, confidence
        Resamples (tiles drawn with replacement, :func:`bootstrap_indices`), seed, level.

    Returns
    -------
    TileBootstrap
        Equal to ``scipy.stats.bootstrap((np.arange(T),), f, paired=True, method="percentile",
        n_resamples=n_boot, rng=np.random.default_rng(seed))`` for the same statistic.
    """
    ts = np.asarray(tile_sums, dtype=np.float64)
    T = ts.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.asarray(statistic(ts.sum(axis=0)))
        if T == 0:
            nan = np.full(est.shape, np.nan)
            return TileBootstrap(est, np.empty((0, *est.shape)), nan, nan, 0, int(n_boot), int(seed))
        rep = np.asarray(statistic(_resample_sums(ts, bootstrap_indices(T, n_boot=n_boot, seed=seed))))
    lo, hi = percentile_interval(rep, confidence=confidence)
    return TileBootstrap(est, rep, lo, hi, T, int(n_boot), int(seed))


# --------------------------------------------------------------------------- CAR T measures
#: fraction metric -> the count metric that is its denominator
FRACTION_DENOMINATORS = {
    "frac_car_t_within_r_of_tumor": "n_car_t",
    "frac_car_t_contact_tumor": "n_car_t",
    "frac_car_t_contact_myeloid": "n_car_t",
    "frac_car_t_contact_pdl1_macrophage": "n_car_t",
    "antigen_neg_fraction": "n_tumor",
}
#: density metric -> role counted
DENSITY_ROLES = {"car_t_density_per_mm2": "car_t", "tumor_density_per_mm2": "tumor",
                 "myeloid_density_per_mm2": "myeloid"}
#: log2 O/E metric -> (role A, role B)
OE_ROLES = {"log2_oe_car_t_tumor": ("car_t", "tumor"), "log2_oe_car_t_myeloid": ("car_t", "myeloid")}


def _denominator(metric: str) -> str | None:
    if metric in FRACTION_DENOMINATORS:
        return FRACTION_DENOMINATORS[metric]
    if metric.startswith("frac_car_t_") and metric.endswith("_pos"):
        return "n_car_t"
    return None


def _poisson_oe(obs: np.ndarray, exp: np.ndarray, confidence: float, diagonal: bool = False):
    """log2((O + 0.5) / (E + 0.5)) bounds from the exact Poisson interval of O (E fixed);
    on the diagonal every edge is counted twice, so the Poisson count is O / 2."""
    o = np.asarray(obs, float)
    lo, hi = poisson_interval(o / 2 if diagonal else o, confidence=confidence)
    if diagonal:
        lo, hi = 2 * lo, 2 * hi
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log2((lo + 0.5) / (exp + 0.5)), np.log2((hi + 0.5) / (exp + 0.5))


def _union(lo1, hi1, lo2, hi2):
    lo = np.where(np.isfinite(lo1), np.fmin(lo1, lo2), lo2)
    hi = np.where(np.isfinite(hi1), np.fmax(hi1, hi2), hi2)
    return lo, hi


def cart_intervals(
    adata,
    metrics: pd.DataFrame,
    *,
    regions: Mapping[str, np.ndarray],
    role_cells: Mapping[str, np.ndarray],
    pixel_size_um: float | None = None,
    contact_radius_um: float = 12.0,
    contact_graph=None,
    tile_um: float = TILE_UM,
    n_boot: int = N_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Intervals of the CAR T measures of :func:`~napari_carspatial.analysis.cart.region_metrics`.

    Parameters
    ----------
    adata
        The table the metrics were computed on.
    metrics
        ``region_metrics`` output (``region, metric, value, unit, note``).
    regions
        The same ``{name: (n_obs,) bool}`` masks.
    role_cells
        ``{role: (n_obs,) bool}`` (:func:`~napari_carspatial.analysis.roles.role_masks`), at least
        ``car_t``, ``tumor``, ``myeloid``.
    pixel_size_um, contact_radius_um, contact_graph
        As given to ``region_metrics`` (the graph of the log2 O/E ratios: centroid pairs within
        ``contact_radius_um`` among the region's cells, or the mask contact graph restricted to them).
    tile_um, n_boot, seed, confidence
        Block bootstrap tiles (µm; pixels without a pixel size), resamples, seed, level.

    Returns
    -------
    pandas.DataFrame
        ``region, metric, value, lo, hi, count, nobs, method, note``: fractions with ``count`` of
        ``nobs`` cells and the Wilson interval; densities with the count and the bootstrap ∪
        Poisson interval; log2 O/E with the observed edges in ``count``; counts and areas as they
        are (no interval). NaN values keep their ``note``.
    """
    from napari_carspatial.analysis.regions import coords_um

    xy, _ = coords_um(adata, pixel_size_um=pixel_size_um)
    w = metrics.pivot(index="metric", columns="region", values="value")
    notes = {(r, m): n for r, m, n in zip(metrics["region"], metrics["metric"], metrics["note"], strict=False)}
    rows: list[dict[str, Any]] = []
    pairs = None
    for ri, (name, rmask) in enumerate(regions.items()):
        rmask = np.asarray(rmask, bool)
        if name not in w.columns:
            continue
        col = w[name]
        idx = np.flatnonzero(rmask)
        codes = tile_codes(xy[idx], tile_um)
        T = int(codes.max()) + 1 if codes.size else 0
        area = float(col.get("area_mm2", np.nan))
        areas = tile_areas(xy[idx], codes, total_area=area) if T else np.zeros(0)
        seed_r = int(seed) + 7919 * ri
        for metric in metrics.loc[metrics["region"] == name, "metric"]:
            v = float(col[metric])
            note = notes.get((name, metric), "")
            row: dict[str, Any] = {"region": name, "metric": metric, "value": v, "lo": np.nan, "hi": np.nan,
                                   "count": np.nan, "nobs": np.nan, "method": "", "note": note}
            den = _denominator(metric)
            if den is not None:
                n = float(col.get(den, np.nan))
                if np.isfinite(v) and np.isfinite(n) and n > 0:
                    k = float(np.round(v * n))
                    lo, hi = wilson_interval(k, n, confidence=confidence)
                    row.update(count=k, nobs=n, lo=float(lo), hi=float(hi), method="Wilson score")
                elif np.isfinite(n):
                    row.update(nobs=n)
            elif metric in DENSITY_ROLES:
                cells = np.asarray(role_cells[DENSITY_ROLES[metric]], bool)[idx]
                c = float(cells.sum())
                row["count"] = c
                if np.isfinite(v) and area > 0:
                    plo, phi = poisson_interval(c, confidence=confidence)
                    plo, phi = float(plo) / area, float(phi) / area
                    if T >= MIN_TILES and c > 0:
                        ts = np.column_stack([np.bincount(codes, weights=cells.astype(float), minlength=T), areas])
                        bs = block_bootstrap(ts, lambda s: s[..., 0] / s[..., 1], n_boot=n_boot, seed=seed_r,
                                             confidence=confidence)
                        lo, hi = _union(float(bs.lo), float(bs.hi), plo, phi)
                        row.update(lo=float(lo), hi=float(hi),
                                   method=f"block bootstrap ({T} tiles of {tile_um:g} µm, {n_boot}) ∪ exact Poisson")
                    else:
                        why = "no cells" if c == 0 else f"{T} tiles"
                        row.update(lo=plo, hi=phi, method=f"exact Poisson ({why}: no bootstrap)")
            elif metric in OE_ROLES and np.isfinite(v):
                if pairs is None:
                    pairs = _graph_pairs(xy, contact_radius_um, contact_graph)
                a_role, b_role = OE_ROLES[metric]
                res = _oe_bootstrap(pairs, idx, codes, T, np.asarray(role_cells[a_role], bool),
                                    np.asarray(role_cells[b_role], bool), n_boot=n_boot, seed=seed_r,
                                    confidence=confidence)
                if res is not None:
                    est, lo, hi, o, method = res
                    if not np.isclose(est, v, atol=1e-9, equal_nan=True):
                        logger.warning("%s %s: log2 O/E %.6g from the tiles, %.6g from region_metrics", name, metric,
                                       est, v)
                    row.update(lo=lo, hi=hi, count=o, method=method)
            rows.append(row)
    return pd.DataFrame(rows, columns=["region", "metric", "value", "lo", "hi", "count", "nobs", "method", "note"])


def _graph_pairs(xy: np.ndarray, radius: float, contact_graph) -> np.ndarray:
    """Undirected pairs (i < j) of the graph behind the CAR T O/E ratios."""
    if contact_graph is not None:
        import scipy.sparse as sp

        g = sp.triu(sp.csr_matrix(contact_graph), k=1).tocoo()
        return np.column_stack([g.row, g.col]).astype(np.int64)
    from scipy.spatial import cKDTree

    return cKDTree(xy).query_pairs(float(radius), output_type="ndarray").astype(np.int64)


def _oe_bootstrap(pairs, idx, codes, T, a_cells, b_cells, *, n_boot, seed, confidence):
    """log2((O + .5) / (E + .5)) of A -> B entries of the graph induced on the region, its block
    bootstrap interval (tiles of each entry's first cell) ∪ the Poisson interval of O."""
    n_all = a_cells.size
    tile = np.full(n_all, -1, np.int64)
    tile[idx] = codes
    inr = (tile[pairs[:, 0]] >= 0) & (tile[pairs[:, 1]] >= 0) if pairs.size else np.zeros(0, bool)
    p = pairs[inr]
    i = np.r_[p[:, 0], p[:, 1]]   # directed entries, both ways
    j = np.r_[p[:, 1], p[:, 0]]
    ti = tile[i]
    o_t = np.bincount(ti, weights=(a_cells[i] & b_cells[j]).astype(float), minlength=T)
    s0_t = np.bincount(ti, minlength=T).astype(float)
    ar, br = a_cells[idx], b_cells[idx]
    ts = np.column_stack([o_t, s0_t, np.bincount(codes, minlength=T).astype(float),
                          np.bincount(codes, weights=ar.astype(float), minlength=T),
                          np.bincount(codes, weights=br.astype(float), minlength=T),
                          np.bincount(codes, weights=(ar & br).astype(float), minlength=T)])

    def expected(s):
        n = s[..., 2]
        return s[..., 1] * (s[..., 3] * s[..., 4] - s[..., 5]) / (n * (n - 1))

    def stat(s):
        return np.log2((s[..., 0] + 0.5) / (expected(s) + 0.5))

    tot = ts.sum(axis=0)
    if tot[2] < 2:
        return None
    e = float(expected(tot))
    plo, phi = _poisson_oe(tot[0], e, confidence)
    if T >= MIN_TILES and tot[3] > 0 and tot[4] > 0:
        bs = block_bootstrap(ts, stat, n_boot=n_boot, seed=seed, confidence=confidence)
        lo, hi = _union(float(bs.lo), float(bs.hi), float(plo), float(phi))
        return float(bs.estimate), float(lo), float(hi), float(tot[0]), \
            f"block bootstrap ({T} tiles, {n_boot}) ∪ exact Poisson on O"
    with np.errstate(divide="ignore", invalid="ignore"):
        est = float(stat(tot))
    return est, float(plo), float(phi), float(tot[0]), f"exact Poisson on O ({T} tiles: no bootstrap)"


# --------------------------------------------------------------------------- neighbourhood O/E
def oe_intervals(
    codes: np.ndarray,
    categories: list,
    adj,
    xy_um: np.ndarray,
    *,
    region: str = "whole",
    tile_um: float = TILE_UM,
    n_boot: int = N_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """log2 observed / expected neighbour counts between every pair of types, with intervals.

    ``O[a, b]`` = entries ``(i, j)`` of the region's graph ``adj`` with ``i`` of type ``a`` and
    ``j`` of type ``b`` (squidpy's count, :func:`~napari_carspatial.analysis.nhood.nhood_enrichment`);
    ``E[a, b]`` = its mean under random relabelling, ``S0 n_a n_b / (n (n - 1))`` (``n_a (n_a - 1)``
    on the diagonal). ``log2_oe = log2((O + 0.5) / (E + 0.5))``: comparable across regions of
    different sizes, unlike the z-score. Interval: block bootstrap over tiles of ``i`` ∪ the
    exact Poisson interval of ``O``.

    Parameters
    ----------
    codes
        ``(n,)`` type code of each cell of the region (``-1``: none).
    categories
        The ``K`` type names.
    adj
        ``(n, n)`` sparse graph over the region's cells.
    xy_um
        ``(n, 2)`` positions (µm).

    Returns
    -------
    pandas.DataFrame
        ``region, row, col, observed, expected, log2_oe, lo, hi, n_row, n_col, method``.
    """
    import scipy.sparse as sp

    K = len(categories)
    g = sp.csr_matrix(adj)
    codes = np.asarray(codes, np.int64)
    tiles = tile_codes(xy_um, tile_um)
    T = int(tiles.max()) + 1 if tiles.size else 0
    r = np.repeat(np.arange(g.shape[0]), np.diff(g.indptr))
    c = g.indices
    ok = (codes[r] >= 0) & (codes[c] >= 0)
    r, c = r[ok], c[ok]
    o_t = np.zeros((T, K, K))
    np.add.at(o_t, (tiles[r], codes[r], codes[c]), 1.0)
    s0_t = np.bincount(tiles[np.repeat(np.arange(g.shape[0]), np.diff(g.indptr))], minlength=T).astype(float)
    good = codes >= 0
    n_t = np.zeros((T, K))
    np.add.at(n_t, (tiles[good], codes[good]), 1.0)
    ts = np.concatenate([o_t.reshape(T, K * K), s0_t[:, None], n_t], axis=1)
    eye = np.eye(K, dtype=bool)

    def expected(s):
        S0 = s[..., K * K]
        na = s[..., K * K + 1:]
        n = na.sum(axis=-1)
        outer = na[..., :, None] * na[..., None, :] - np.where(eye, na[..., :, None], 0.0)
        return S0[..., None, None] * outer / (n * (n - 1))[..., None, None]

    def stat(s):
        o = s[..., :K * K].reshape((*s.shape[:-1], K, K))
        return np.log2((o + 0.5) / (expected(s) + 0.5))

    tot = ts.sum(axis=0)
    obs_m = tot[:K * K].reshape(K, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        E = expected(tot)
        est = stat(tot)
    nk = tot[K * K + 1:]
    present = (nk[:, None] > 0) & (nk[None, :] > 0) & ((nk[:, None] > 1) | ~eye)
    plo = np.full((K, K), np.nan)
    phi = np.full((K, K), np.nan)
    for diag in (False, True):
        sel = eye if diag else ~eye
        lo_, hi_ = _poisson_oe(obs_m[sel], E[sel], confidence, diagonal=diag)
        plo[sel], phi[sel] = lo_, hi_
    if T >= MIN_TILES:
        bs = block_bootstrap(ts, stat, n_boot=n_boot, seed=seed, confidence=confidence)
        lo, hi = _union(bs.lo, bs.hi, plo, phi)
        method = f"block bootstrap ({T} tiles of {tile_um:g} µm, {n_boot}) ∪ exact Poisson on O"
    else:
        lo, hi = plo, phi
        method = f"exact Poisson on O ({T} tiles: no bootstrap)"
    est = np.where(present, est, np.nan)
    lo, hi = np.where(present, lo, np.nan), np.where(present, hi, np.nan)
    cats = [str(x) for x in categories]
    ii, jj = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
    return pd.DataFrame({
        "region": region, "row": np.array(cats)[ii.ravel()], "col": np.array(cats)[jj.ravel()],
        "observed": obs_m.ravel(), "expected": np.asarray(E).ravel(), "log2_oe": est.ravel(), "lo": lo.ravel(),
        "hi": hi.ravel(), "n_row": nk[ii.ravel()], "n_col": nk[jj.ravel()], "method": method})


# --------------------------------------------------------------------------- comparisons
def compare_intervals(table: pd.DataFrame, region_a: str, region_b: str, *, keys=("metric",), value: str = "value",
                      overlap: int = 0) -> pd.DataFrame:
    """Differences ``region_a - region_b`` of every estimate with its MOVER interval.

    ``table`` has ``region``, the ``keys`` columns, ``value`` and ``lo`` / ``hi`` (the output of
    :func:`cart_intervals` or :func:`oe_intervals`). ``overlap`` = cells the two regions share (the
    interval assumes independent regions; the note says so).

    Returns ``*keys, a, a_lo, a_hi, b, b_lo, b_hi, difference, lo, hi, note``.
    """
    keys = list(keys)
    a = table[table["region"] == region_a].set_index(keys)
    b = table[table["region"] == region_b].set_index(keys)
    common = [k for k in a.index if k in b.index]
    a, b = a.loc[common], b.loc[common]
    d, lo, hi = mover_difference(a[value], a["lo"], a["hi"], b[value], b["lo"], b["hi"])
    out = pd.DataFrame({"a": a[value].to_numpy(float), "a_lo": a["lo"].to_numpy(float),
                        "a_hi": a["hi"].to_numpy(float), "b": b[value].to_numpy(float),
                        "b_lo": b["lo"].to_numpy(float), "b_hi": b["hi"].to_numpy(float),
                        "difference": np.asarray(d), "lo": np.asarray(lo), "hi": np.asarray(hi)},
                       index=a.index).reset_index()
    note = np.where(np.isfinite(out["lo"]), "", "no interval in one region")
    if overlap:
        note = np.where(note == "", f"regions share {overlap} cells: the interval assumes independent regions",
                        note)
    out["note"] = note
    out.insert(0, "region_b", region_b)
    out.insert(0, "region_a", region_a)
    return out
