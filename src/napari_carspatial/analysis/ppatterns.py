"""Point-pattern statistics per cell type: Ripley's L, G and F, nearest-neighbour distances
between types, and group centrality scores on a spatial graph.

Distances are in µm when a pixel size is known (argument or ``uns["carspatial"]``), else pixels.

Ripley (standard estimators, no edge correction; ``docs/metrics.md``)
---------------------------------------------------------------------
For the ``n_A`` cells of type A in a window of area ``|W|`` (default: the convex hull of all
cells, as squidpy):

* ``K_A(t) = |W| / (n_A (n_A - 1)) * #{ordered pairs i != j of A : d_ij < t}``,
  ``L_A(t) = sqrt(K_A(t) / pi)`` (``L(t) = t`` under complete spatial randomness, CSR);
* ``G_A(t)`` = fraction of A cells whose nearest other A cell is at ``d <= t``;
* ``F_A(t)`` = fraction of ``n_observations`` uniform random points in the window whose nearest
  A cell is at ``d <= t``.

squidpy's ``ripley`` uses the *total* number of cells ``N`` in ``K`` (``K_sq = 2 P |W| / N^2``),
so its L is ``L_A * sqrt(n_A (n_A - 1)) / N``; the tests check that relation. Its G and F use
the two nearest neighbours and other-type cells, which is a different statistic. A CSR envelope
(``n_simulations`` uniform patterns of ``n_A`` points in the window, seeded) and a Monte Carlo
p-value come with every curve.

How it is computed (``_ppatterns_kernels``; ``docs/statistics.md`` §4)
----------------------------------------------------------------------
The observed statistics come from counting, not from a distance matrix: pairs per distance bin
(float64, bins exact, so ``L`` equals squidpy's to rounding; on a uniform grid for a local
support, pair by pair when the support spans the window), nearest neighbours by grid ring search. Each simulation is *one* pattern of ``max(n_A)`` independent
uniform points in the window (a fan of hull triangles picked by area, no rejection); type A
uses its first ``n_A`` points, which are exactly a uniform pattern of ``n_A`` points, so every
type gets the null of its own size while one pair pass per simulation serves all types (pairs
are binned by the larger prefix they belong to). Simulations run in parallel threads.

Centrality (squidpy's ``centrality_scores`` definitions, computed with sparse matrices)
---------------------------------------------------------------------------------------
For the set ``C`` of cells of one type in an undirected graph:
``degree_centrality = |N(C) \\ C| / (n - |C|)``; ``closeness_centrality = (n - |C|) /
sum_{v not in C} d(C, v)`` (hop distance to the nearest C cell; unreachable cells excluded, as
networkx); ``average_clustering`` = mean local clustering coefficient of the C cells.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from napari_carspatial.analysis.nhood import _get_labels

if TYPE_CHECKING:
    from anndata import AnnData

    from napari_carspatial.analysis.graph import SpatialGraph

logger = logging.getLogger(__name__)

__all__ = ["RipleyResult", "ripley", "nn_distances", "centrality_scores"]


@dataclass
class RipleyResult:
    """Result of :func:`ripley`.

    Attributes
    ----------
    stat
        Long table ``cluster, bins, stats, csr_lo, csr_hi, csr_mean``; ``bins`` in µm.
    mode
        ``"L"``, ``"G"`` or ``"F"``.
    support
        The distances (µm) at which the statistic is evaluated.
    area
        Window area (µm²).
    pixel_size_um
        µm per pixel used, or ``None``.
    """

    stat: pd.DataFrame
    mode: str
    support: np.ndarray
    area: float
    pixel_size_um: float | None = None

    def wide(self) -> pd.DataFrame:
        return self.stat.pivot(index="bins", columns="cluster", values="stats")


def _coords(adata, pixel_size_um):
    from napari_carspatial.analysis.graph import get_coordinates, resolve_pixel_size

    xy = get_coordinates(adata)
    px = resolve_pixel_size(adata, pixel_size_um)
    return (xy * px if px is not None else xy), px


class _HullSampler:
    """Uniform points in a convex polygon: a fan of triangles chosen by area (no rejection)."""

    def __init__(self, hull):
        v = hull.points[hull.vertices]
        self.a = v[0]
        self.e1 = v[1:-1] - v[0]
        self.e2 = v[2:] - v[0]
        area = 0.5 * np.abs(self.e1[:, 0] * self.e2[:, 1] - self.e1[:, 1] * self.e2[:, 0])
        self.cum = np.cumsum(area) / area.sum()

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        from napari_carspatial.analysis._ppatterns_kernels import hull_points

        u = rng.random((*shape, 3))
        x, y = hull_points(u.reshape(-1, 3), np.ascontiguousarray(self.a, np.float64),
                           np.ascontiguousarray(self.e1, np.float64), np.ascontiguousarray(self.e2, np.float64),
                           np.ascontiguousarray(self.cum, np.float64))
        return x.reshape(shape), y.reshape(shape)


_MODES = {"L": 0, "G": 1, "F": 2}


def _curves(mode: str, hist: np.ndarray, sizes: np.ndarray, area: float, n_obs: int) -> np.ndarray:
    """Statistic curves ``(..., len(sizes), n_steps)`` from kernel histograms ``(..., len(sizes), n_steps + 1)``."""
    n = sizes.astype(np.float64)
    h = hist[..., :-1].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if mode == "L":
            pairs = np.cumsum(np.cumsum(h, axis=-2), axis=-1)  # prefix b holds buckets 0..b
            k = area * 2.0 * pairs / (n * (n - 1.0))[:, None]
            out = np.sqrt(k / np.pi)
            out[..., n < 2, :] = np.nan
        elif mode == "G":
            out = np.cumsum(h, axis=-1) / n[:, None]
            out[..., n < 2, :] = np.nan
        else:
            out = np.cumsum(h, axis=-1) / float(n_obs)
            out[..., n < 1, :] = np.nan
    return out


def ripley(
    adata: AnnData,
    *,
    cluster_key: str,
    mode: Literal["L", "G", "F"] = "L",
    max_dist: float | None = None,
    n_steps: int = 50,
    n_simulations: int = 100,
    n_observations: int = 1000,
    seed: int = 0,
    pixel_size_um: float | None = None,
    categories: list | None = None,
) -> RipleyResult:
    """Ripley's L, G or F per cell type, with a CSR envelope (module docstring).

    Parameters
    ----------
    adata
        Table with ``obs[cluster_key]`` and ``obsm["spatial"]``.
    cluster_key
        Cell-type column.
    mode
        ``"L"``, ``"G"`` or ``"F"``.
    max_dist
        Largest distance (µm) of the support; default ``sqrt(area / 2)`` (squidpy), capped at
        300 µm.
    n_steps
        Support ``linspace(0, max_dist, n_steps)`` in µm; default ``max_dist`` = ``sqrt(area / 2)``
        (squidpy), capped at 300 µm.
    n_simulations
        Simulated complete-spatial-randomness patterns for the envelope (min / max / mean and a
        Monte Carlo p-value); 0 for none. Default 100, squidpy's number. Each simulation is one
        pattern of ``max(n_A)`` independent uniform points in the window; type A uses its first
        ``n_A`` points, i.e. a uniform pattern of exactly its own size (``docs/statistics.md``).
    n_observations
        Random points in the window for ``F`` (the same points for the observed and the
        simulated patterns).
    seed
        Seed of the random points (results are deterministic for a seed).
    pixel_size_um
        µm per pixel (overrides the table's).
    categories
        Only these types (default all with at least one cell).

    Returns
    -------
    RipleyResult
        ``stat`` columns ``cluster, bins, stats, csr_lo, csr_hi, csr_mean, pvalue``; ``pvalue``
        is the two-sided Monte Carlo p-value of the observed value among the simulations,
        ``min(1, 2 min(#{sim >= obs} + 1, #{sim <= obs} + 1) / (n_simulations + 1))``.
    """
    from scipy.spatial import ConvexHull

    from napari_carspatial.analysis import _ppatterns_kernels as kern

    if mode not in _MODES:
        raise ValueError(f"mode must be 'L', 'G' or 'F', got {mode!r}")
    labels, cats = _get_labels(adata, cluster_key)
    xy, px = _coords(adata, pixel_size_um)
    if xy.shape[0] < 3:
        raise ValueError("Ripley's statistics need at least 3 cells")
    hull = ConvexHull(xy)
    area = float(hull.volume)
    if max_dist is None:
        max_dist = min((area / 2) ** 0.5, 300.0)
    support = np.linspace(0.0, float(max_dist), int(n_steps))
    if support.size < 2 or not support[-1] > 0:
        raise ValueError(f"need max_dist > 0 and n_steps >= 2, got {max_dist!r}, {n_steps!r}")
    rng = np.random.default_rng(seed)
    sampler = _HullSampler(hull)
    qx, qy = sampler.sample(rng, (int(n_observations),)) if mode == "F" else (np.zeros(0), np.zeros(0))
    m = _MODES[mode]

    chosen = [k for k, c in enumerate(cats) if (categories is None or c in categories) and np.any(labels == k)]
    all_pairs = kern.spans_window(support, area)  # every pair rather than the grid (equal counts)

    def observed(k):
        xa = xy[labels == k]
        one = np.array([xa.shape[0]], np.int64)
        x, y = np.ascontiguousarray(xa[:, 0]), np.ascontiguousarray(xa[:, 1])
        if m == 0:
            h = (kern.pair_hist_all if all_pairs else kern.pair_hist)(
                x, y, np.zeros(xa.shape[0], np.int64), 1, support, xa.shape[0], kern.pair_params(support, np.float64))
        elif m == 1:
            h = kern.nn_hist(x, y, one, support)
        else:
            h = kern.empty_space_hist(x, y, one, qx, qy, support)
        return _curves(mode, h, one, area, int(n_observations))[0]

    from concurrent.futures import ThreadPoolExecutor

    import numba

    with ThreadPoolExecutor(max_workers=max(1, numba.get_num_threads())) as ex:  # kernels release the GIL
        obs_curves = dict(zip(chosen, ex.map(observed, chosen), strict=True))

    sizes_by_type = {k: int(np.sum(labels == k)) for k in chosen}
    sizes = np.array(sorted(set(sizes_by_type.values())), np.int64)
    n_sim = int(n_simulations)
    sims = None
    if n_sim > 0 and sizes.size:
        n_max = int(sizes[-1])
        bucket = np.searchsorted(sizes, np.arange(n_max), side="right").astype(np.int64)
        batch = max(1, min(n_sim, int(2e7 // max(1, 3 * n_max))))  # <= ~480 MB of random numbers
        parts = []
        for s0 in range(0, n_sim, batch):
            b = min(batch, n_sim - s0)
            xs, ys = sampler.sample(rng, (b, n_max))
            if m == 0:  # pair counting: float32 (see _ppatterns_kernels.pair_hist)
                xs, ys = xs.astype(np.float32), ys.astype(np.float32)
            parts.append(kern.simulate(m, xs, ys, bucket, sizes, support, qx, qy, all_pairs=all_pairs))
        sims = _curves(mode, np.concatenate(parts, axis=0), sizes, area, int(n_observations))  # (S, B, T)

    frames = []
    nan = np.full(support.size, np.nan)
    for k in chosen:
        obs = obs_curves[k]
        if sims is not None:
            sim = sims[:, int(np.searchsorted(sizes, sizes_by_type[k])), :]
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, hi, mean = np.nanmin(sim, 0), np.nanmax(sim, 0), np.nanmean(sim, 0)
            ge = (sim >= obs[None]).sum(0)
            le = (sim <= obs[None]).sum(0)
            pval = np.minimum(1.0, 2.0 * (np.minimum(ge, le) + 1) / (n_sim + 1))
            pval[~np.isfinite(obs)] = np.nan
        else:
            lo = hi = mean = pval = nan
        frames.append(pd.DataFrame({"cluster": cats[k], "bins": support, "stats": obs,
                                    "csr_lo": lo, "csr_hi": hi, "csr_mean": mean, "pvalue": pval}))
    stat = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["cluster", "bins", "stats", "csr_lo", "csr_hi", "csr_mean", "pvalue"])
    return RipleyResult(stat, mode, support, area, px)


def nn_distances(adata: AnnData, *, cluster_key: str, pixel_size_um: float | None = None,
                 statistic: Literal["median", "mean"] = "median") -> pd.DataFrame:
    """Distance from each cell of type A (rows) to the nearest *other* cell of type B (columns).

    The ``statistic`` over the A cells (µm), NaN where A or B has no cell (or B = A has
    one cell).

    Parameters
    ----------
    adata
        Table with ``obs[cluster_key]`` and ``obsm["spatial"]``.
    cluster_key
        Cell-type column.
    pixel_size_um
        µm per pixel (overrides the table's).
    statistic
        ``"median"`` or ``"mean"`` over the A cells.

    Returns
    -------
    pandas.DataFrame
        Types x types (rows A, columns B), in µm.
    """
    from scipy.spatial import cKDTree

    labels, cats = _get_labels(adata, cluster_key)
    xy, _ = _coords(adata, pixel_size_um)
    K = len(cats)
    out = np.full((K, K), np.nan)
    agg = np.median if statistic == "median" else np.mean
    for b in range(K):
        pb = xy[labels == b]
        if pb.shape[0] == 0:
            continue
        tree = cKDTree(pb)
        for a in range(K):
            pa = xy[labels == a]
            if pa.shape[0] == 0:
                continue
            if a == b:
                if pb.shape[0] < 2:
                    continue
                d, _ = tree.query(pa, k=2)
                d = d[:, 1]
            else:
                d, _ = tree.query(pa, k=1)
            out[a, b] = agg(d)
    return pd.DataFrame(out, index=cats, columns=cats)


def centrality_scores(adata: AnnData, *, cluster_key: str, graph: SpatialGraph | sp.spmatrix | None = None, connectivity_key: str = "spatial") -> pd.DataFrame:
    """Group degree, closeness and average clustering per cell type (squidpy's definitions).

    Parameters
    ----------
    adata
        Table with ``obs[cluster_key]``.
    cluster_key
        Cell-type column.
    graph
        SpatialGraph or CSR (made undirected); default ``obsp[f"{connectivity_key}_connectivities"]``.
    connectivity_key
        squidpy's ``connectivity_key``: the graph is ``obsp[f"{connectivity_key}_connectivities"]``
        when ``graph`` is ``None``.

    Returns
    -------
    pandas.DataFrame
        Index = categories; columns ``degree_centrality``, ``average_clustering``,
        ``closeness_centrality`` (equal to ``squidpy.gr.centrality_scores``).
    """
    from scipy.sparse.csgraph import dijkstra

    labels, cats = _get_labels(adata, cluster_key)
    if graph is None:
        graph = adata.obsp[f"{connectivity_key}_connectivities"]
    A = sp.csr_matrix(getattr(graph, "connectivities", graph), dtype=np.float64)
    A = ((A + A.T) > 0).astype(np.float64).tocsr()
    A.setdiag(0)
    A.eliminate_zeros()
    n = A.shape[0]
    deg = np.asarray(A.sum(axis=1)).ravel()
    tri = np.asarray((A @ A).multiply(A).sum(axis=1)).ravel() / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        local_cc = np.where(deg > 1, 2.0 * tri / (deg * (deg - 1.0)), 0.0)
    rows = []
    for k, _c in enumerate(cats):
        members = labels == k
        m = int(members.sum())
        if m == 0:
            rows.append((np.nan, np.nan, np.nan))
            continue
        nb = np.asarray(A[np.flatnonzero(members)].sum(axis=0)).ravel() > 0
        degc = float((nb & ~members).sum()) / (n - m) if n > m else np.nan
        if n > m:
            d = dijkstra(A, directed=False, indices=np.flatnonzero(members), unweighted=True, min_only=True)
            d = d[~members]
            d = d[np.isfinite(d)]
            clo = (n - m) / d.sum() if d.sum() > 0 else 0.0
        else:
            clo = np.nan
        rows.append((degc, float(local_cc[members].mean()), float(clo)))
    return pd.DataFrame(rows, index=cats, columns=["degree_centrality", "average_clustering", "closeness_centrality"])
