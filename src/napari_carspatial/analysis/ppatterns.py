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
(``n_simulations`` uniform patterns of ``n_A`` points in the window, seeded) comes with every
curve.

Centrality (squidpy's ``centrality_scores`` definitions, computed with sparse matrices)
---------------------------------------------------------------------------------------
For the set ``C`` of cells of one type in an undirected graph:
``degree_centrality = |N(C) \\ C| / (n - |C|)``; ``closeness_centrality = (n - |C|) /
sum_{v not in C} d(C, v)`` (hop distance to the nearest C cell; unreachable cells excluded, as
networkx); ``average_clustering`` = mean local clustering coefficient of the C cells.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from napari_carspatial.analysis.nhood import _get_labels

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


def _uniform_in_hull(hull, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform points in a convex hull (rejection from the bounding box, vectorised)."""
    from matplotlib.path import Path

    verts = hull.points[hull.vertices]
    path = Path(verts)
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    frac = max(hull.volume / float(np.prod(hi - lo)), 1e-3)
    out = np.empty((0, 2))
    while out.shape[0] < n:
        m = int((n - out.shape[0]) / frac * 1.2) + 16
        p = lo + rng.random((m, 2)) * (hi - lo)
        out = np.vstack([out, p[path.contains_points(p)]])
    return out[:n]


def _pair_counts_below(xy: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Ordered pairs i != j with d < t for each t (KD-tree, no n^2 matrix)."""
    from scipy.spatial import cKDTree

    if xy.shape[0] < 2:
        return np.zeros(support.size)
    tree = cKDTree(xy)
    # count_neighbors counts pairs with d <= r, including i == j; shift r down to get d < r
    r = np.nextafter(support, -np.inf)
    r = np.maximum(r, 0)
    c = tree.count_neighbors(tree, r).astype(np.float64) - xy.shape[0]
    c[support <= 0] = 0
    return c


def _stat(mode, xy_a, support, area, hull, rng, n_obs):
    from scipy.spatial import cKDTree

    n = xy_a.shape[0]
    if mode == "L":
        if n < 2:
            return np.full(support.size, np.nan)
        k = area * _pair_counts_below(xy_a, support) / (n * (n - 1.0))
        return np.sqrt(k / np.pi)
    if mode == "G":
        if n < 2:
            return np.full(support.size, np.nan)
        d, _ = cKDTree(xy_a).query(xy_a, k=2)
        nn = np.sort(d[:, 1])
        return np.searchsorted(nn, support, side="right") / n
    if mode == "F":
        if n < 1:
            return np.full(support.size, np.nan)
        pts = _uniform_in_hull(hull, n_obs, rng)
        d, _ = cKDTree(xy_a).query(pts, k=1)
        d = np.sort(d)
        return np.searchsorted(d, support, side="right") / d.size
    raise ValueError(f"mode must be 'L', 'G' or 'F', got {mode!r}")


def ripley(
    adata,
    *,
    cluster_key: str,
    mode: Literal["L", "G", "F"] = "L",
    max_dist: float | None = None,
    n_steps: int = 50,
    n_simulations: int = 20,
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
    max_dist, n_steps
        Support ``linspace(0, max_dist, n_steps)`` in µm; default ``max_dist`` = ``sqrt(area / 2)``
        (squidpy), capped at 300 µm.
    n_simulations
        Uniform patterns per type for the envelope (min / max / mean); 0 for none.
    n_observations
        Random points for ``F``.
    seed
        Seed of the random points (results are deterministic for a seed).
    categories
        Only these types (default all with at least one cell).

    Returns
    -------
    RipleyResult
    """
    from scipy.spatial import ConvexHull

    if mode not in ("L", "G", "F"):
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
    rng = np.random.default_rng(seed)
    frames = []
    for k, c in enumerate(cats):
        if categories is not None and c not in categories:
            continue
        xa = xy[labels == k]
        if xa.shape[0] == 0:
            continue
        obs = _stat(mode, xa, support, area, hull, rng, n_observations)
        if n_simulations > 0:
            sims = np.array([
                _stat(mode, _uniform_in_hull(hull, xa.shape[0], rng), support, area, hull, rng, n_observations)
                for _ in range(int(n_simulations))
            ])
            lo, hi, mean = np.nanmin(sims, 0), np.nanmax(sims, 0), np.nanmean(sims, 0)
        else:
            lo = hi = mean = np.full(support.size, np.nan)
        frames.append(pd.DataFrame({"cluster": c, "bins": support, "stats": obs,
                                    "csr_lo": lo, "csr_hi": hi, "csr_mean": mean}))
    stat = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["cluster", "bins", "stats", "csr_lo", "csr_hi", "csr_mean"])
    return RipleyResult(stat, mode, support, area, px)


def nn_distances(adata, *, cluster_key: str, pixel_size_um: float | None = None,
                 statistic: Literal["median", "mean"] = "median") -> pd.DataFrame:
    """Distance from each cell of type A (rows) to the nearest *other* cell of type B (columns).

    Returns the ``statistic`` over the A cells (µm), NaN where A or B has no cell (or B = A has
    one cell).
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


def centrality_scores(adata, *, cluster_key: str, graph=None, connectivity_key: str = "spatial") -> pd.DataFrame:
    """Group degree, closeness and average clustering per cell type (squidpy's definitions).

    Parameters
    ----------
    adata
        Table with ``obs[cluster_key]``.
    graph
        SpatialGraph or CSR (made undirected); default ``obsp[f"{connectivity_key}_connectivities"]``.

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
