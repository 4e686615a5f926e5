"""Spatial neighbour graphs (Delaunay, radius, kNN), equal to squidpy's for the same parameters.

Units
-----
``obsm["spatial"]`` holds level-0 pixel coordinates (see :mod:`napari_carspatial.model.conventions`).
Distance *parameters* (``radius``, ``max_distance``) are in µm when a pixel size is known, taken
from the ``pixel_size_um`` argument or else from ``adata.uns["carspatial"]["pixel_size_um"]``;
they are divided by the pixel size to get pixels. When no pixel size is known (a bare coordinate
array, or a table without one) distances are in coordinate units, exactly like squidpy. The
returned ``distances`` matrix is always in coordinate units (pixels), like squidpy's
``obsp["spatial_distances"]``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from napari_carspatial.model.conventions import SPATIAL_KEY
from napari_carspatial.model.conventions import pixel_size_um as _table_pixel_size

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

GraphMethod = Literal["delaunay", "radius", "knn"]

__all__ = ["SpatialGraph", "spatial_graph", "store_graph", "get_coordinates", "resolve_pixel_size"]


@dataclass
class SpatialGraph:
    """A spatial neighbour graph.

    Attributes
    ----------
    connectivities
        ``(n, n)`` CSR, float32 ones, no self loops (unless ``set_diag``). Symmetric for
        ``delaunay`` and ``radius``; for ``knn`` row ``i`` holds the ``n_neighs`` nearest
        neighbours of ``i`` (directed, as squidpy) unless ``symmetrize=True``.
    distances
        ``(n, n)`` CSR, float64 Euclidean edge lengths in coordinate units (pixels). As in
        squidpy, zero-length edges (duplicate points) are not stored here.
    method
        ``"delaunay"``, ``"radius"`` or ``"knn"``.
    params
        The parameters, in coordinate units, for ``uns["spatial_neighbors"]["params"]``.
    pixel_size_um
        The pixel size used to convert µm parameters (``None``: parameters were in coordinate units).
    """

    connectivities: sp.csr_matrix
    distances: sp.csr_matrix
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    pixel_size_um: float | None = None

    @property
    def n_obs(self) -> int:
        return int(self.connectivities.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of stored (directed) entries of ``connectivities``."""
        return int(self.connectivities.nnz)


def get_coordinates(adata_or_coords: Any, *, spatial_key: str = SPATIAL_KEY) -> np.ndarray:
    """``(n, 2)`` float64 (x, y) coordinates from an AnnData (``obsm[spatial_key]``) or an array."""
    if hasattr(adata_or_coords, "obsm"):
        if spatial_key not in adata_or_coords.obsm:
            raise KeyError(
                f"the table has no obsm[{spatial_key!r}] with cell centroids; "
                f"found obsm keys {list(adata_or_coords.obsm.keys())}"
            )
        xy = np.asarray(adata_or_coords.obsm[spatial_key])
    else:
        xy = np.asarray(adata_or_coords)
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise ValueError(f"expected (n, 2) coordinates, got shape {xy.shape}")
    xy = np.ascontiguousarray(xy[:, :2], dtype=np.float64)
    if not np.isfinite(xy).all():
        bad = int((~np.isfinite(xy).all(axis=1)).sum())
        raise ValueError(f"{bad} cell(s) have NaN or infinite coordinates; drop or fix them first")
    return xy


def resolve_pixel_size(adata_or_coords: Any, pixel_size_um: float | None) -> float | None:
    """The pixel size to use: the argument, else the table's ``uns``, else ``None`` (no conversion)."""
    if pixel_size_um is not None:
        value = float(pixel_size_um)
        if not value > 0:
            raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um}")
        return value
    if hasattr(adata_or_coords, "uns"):
        return _table_pixel_size(adata_or_coords)
    return None


def _to_px(value, px: float | None):
    if value is None:
        return None
    if px is None:
        logger.warning("no pixel size known: distance %s is taken in pixels, not µm "
                       "(set uns['carspatial']['pixel_size_um'] or pass pixel_size_um)", value)
        return value
    if isinstance(value, tuple):
        return tuple(float(v) / px for v in value)
    return float(value) / px


def _finish(
    n: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    dist: np.ndarray,
    *,
    interval: tuple[float, float] | None,
    set_diag: bool,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Prune to ``interval`` (squidpy: drop ``d < min`` or ``d > max``), build adj / dst CSR."""
    if interval is not None:
        lo, hi = interval
        keep = ~((dist < lo) | (dist > hi))
        if not keep.all():
            rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))[keep]
            indices = indices[keep]
            dist = dist[keep]
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    idx_dtype = np.int32 if max(n, indices.size) < np.iinfo(np.int32).max else np.int64
    indptr = indptr.astype(idx_dtype, copy=False)
    indices = indices.astype(idx_dtype, copy=False)
    adj = sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(n, n))
    # copies: adj and dst must not share index arrays (sort_indices works in place)
    dst = sp.csr_matrix((dist.astype(np.float64), indices.copy(), indptr.copy()), shape=(n, n))
    dst.eliminate_zeros()  # squidpy: zero-length edges are kept in adj but not in dst
    if set_diag:
        adj = (adj + sp.identity(n, dtype=np.float32, format="csr")).tocsr()
        adj.data[:] = 1.0
    adj.has_sorted_indices = False
    adj.sort_indices()
    dst.sort_indices()
    return adj, dst


def _delaunay_csr(xy: np.ndarray, backend: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.spatial import Delaunay

    n = xy.shape[0]
    if backend == "auto" and n >= 4:
        from napari_carspatial.analysis._delaunay import delaunay_edges_certified

        fast = delaunay_edges_certified(xy)
        if fast is not None:
            indptr, indices = fast
            rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
            d = np.linalg.norm(xy[rows] - xy[indices], axis=1)
            return indptr, indices, d
        logger.info("Delaunay: input not certified for the fast path (degenerate points); using qhull")
    elif backend not in ("auto", "qhull"):
        raise ValueError(f"delaunay_backend must be 'auto' or 'qhull', got {backend!r}")
    if n < 3:
        # qhull needs 3 points; squidpy fails here too. With < 3 points, connect all pairs.
        rows, cols = np.nonzero(~np.eye(n, dtype=bool))
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        d = np.sqrt(((xy[rows] - xy[cols]) ** 2).sum(axis=1))
        return indptr, cols.astype(np.int64), d
    tri = Delaunay(xy)
    indptr, indices = tri.vertex_neighbor_vertices
    indptr = indptr.astype(np.int64)
    indices = indices.astype(np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    d = np.linalg.norm(xy[rows] - xy[indices], axis=1)
    return indptr, indices, d


def _knn_csr(xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    from napari_carspatial.analysis._grid import knn_grid

    n = xy.shape[0]
    if k >= n:
        raise ValueError(f"n_neighs={k} must be smaller than the number of cells ({n})")
    if n > 5000:
        # numba uniform grid, parallel; ties broken by the smaller index. The query point
        # itself is excluded (duplicates of it are ordinary neighbours at distance 0).
        ind, dist = knn_grid(xy, k)
        o = np.argsort(ind, axis=1, kind="stable")
        ind = np.take_along_axis(ind, o, axis=1).ravel()
        dist = np.take_along_axis(dist, o, axis=1).ravel()
        return np.arange(0, n * k + 1, k, dtype=np.int64), ind, dist
    tree = cKDTree(xy, balanced_tree=False, compact_nodes=False)
    dist, ind = tree.query(xy, k=k + 1, workers=-1)
    ind = ind.astype(np.int64, copy=False)
    # drop the point itself; if duplicates pushed it out of the first k+1, drop the last
    # (scikit-learn's rule for ``kneighbors()`` without a query, which squidpy uses)
    is_self = ind == np.arange(n)[:, None]
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True
    keep = ~is_self
    ind = ind[keep].reshape(n, k)
    dist = dist[keep].reshape(n, k)
    # canonical CSR: sort each row by column
    o = np.argsort(ind, axis=1, kind="stable")
    ind = np.take_along_axis(ind, o, axis=1).ravel()
    dist = np.take_along_axis(dist, o, axis=1).ravel()
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    return indptr, ind, dist


def spatial_graph(
    adata_or_coords: Any,
    *,
    method: GraphMethod = "delaunay",
    radius: float | tuple[float, float] | None = None,
    n_neighs: int = 6,
    max_distance: float | None = None,
    spatial_key: str = SPATIAL_KEY,
    pixel_size_um: float | None = None,
    set_diag: bool = False,
    symmetrize: bool = False,
    delaunay_backend: Literal["auto", "qhull"] = "auto",
    library_key: str | None = None,
) -> SpatialGraph:
    """Build a spatial neighbour graph, equal to squidpy's for the same parameters.

    Parameters
    ----------
    adata_or_coords
        AnnData with ``obsm[spatial_key]`` or an ``(n, 2)`` array of (x, y) coordinates.
    method
        ``"delaunay"``: edges of the Delaunay triangulation (scipy / qhull, exactly the call
        squidpy makes), optionally pruned by length. Equal to
        ``sq.gr.spatial_neighbors_delaunay(adata, radius=...)``.
        ``"radius"``: every pair at distance ``<= radius`` (``d^2 <= r^2`` in float64, as
        scikit-learn's KDTree). Equal to ``sq.gr.spatial_neighbors(coord_type="generic",
        radius=...)``. ``"knn"``: each cell to its ``n_neighs`` nearest other cells (self
        excluded). Equal to ``sq.gr.spatial_neighbors(coord_type="generic", n_neighs=...)``,
        i.e. directed (not symmetric) unless ``symmetrize=True``.
    radius
        For ``"radius"``: the radius, or a ``(min, max)`` tuple (build with ``max``, then keep
        edges with ``min <= d <= max``, as squidpy). For ``"delaunay"``: a length filter with
        squidpy's ``spatial_neighbors_delaunay`` semantics (scalar ``r`` means ``(0, r)``).
        Note that the legacy ``sq.gr.spatial_neighbors(delaunay=True, radius=r)`` *ignores*
        a scalar ``r``.
    n_neighs
        Number of neighbours for ``"knn"``.
    max_distance
        Drop edges longer than this (any method); for ``"delaunay"`` the same as ``radius=r``.
    spatial_key
        Key in ``obsm`` with the coordinates.
    pixel_size_um
        µm per coordinate unit. If given (or stored in ``adata.uns["carspatial"]``), ``radius``
        and ``max_distance`` are in µm; otherwise in coordinate units.
    set_diag
        Put ones on the diagonal of ``connectivities`` (squidpy's ``set_diag``).
    symmetrize
        ``"knn"`` only: return the union of ``i -> j`` and ``j -> i`` (not squidpy's graph).
    delaunay_backend
        ``"auto"``: a numba sweep-hull triangulation, used only when it is *certified* to be
        the unique Delaunay triangulation (every triangle strictly oriented, every interior
        edge strictly locally Delaunay beyond a rounding-error margin, Euler count, no
        duplicate points), which then has exactly qhull's edges; otherwise (duplicates,
        co-circular lattice points, collinear input) scipy's qhull, the call squidpy makes.
        ``"qhull"``: always qhull.
    library_key
        Column of ``obs`` (AnnData input): build one graph per library (image / section) and
        combine them block-diagonally, with no edges between libraries (squidpy's
        ``library_key``).

    Returns
    -------
    SpatialGraph
        CSR ``connectivities`` (float32 ones) and ``distances`` (float64, coordinate units).

    Notes
    -----
    Timings for 1,000,000 cells are in ``docs/statistics.md`` (``benchmarks/bench_stats.py``):
    radius uses a numba uniform grid; kNN a numba grid ring search (above 5,000 cells, else
    scipy's ``cKDTree``); Delaunay the certified sweep-hull (qhull alone takes about 10 s per
    million points).
    """
    t0 = time.perf_counter()
    if library_key is not None:
        return _per_library(
            adata_or_coords, library_key, method=method, radius=radius, n_neighs=n_neighs,
            max_distance=max_distance, spatial_key=spatial_key, pixel_size_um=pixel_size_um,
            set_diag=set_diag, symmetrize=symmetrize, delaunay_backend=delaunay_backend,
        )
    xy = get_coordinates(adata_or_coords, spatial_key=spatial_key)
    n = xy.shape[0]
    px = resolve_pixel_size(adata_or_coords, pixel_size_um)
    radius_px = _to_px(radius, px)
    maxd_px = _to_px(max_distance, px)
    params: dict[str, Any] = {"coord_type": "generic", "transform": None}
    interval: tuple[float, float] | None = None

    if method == "delaunay":
        if radius_px is not None:
            interval = tuple(sorted(radius_px)) if isinstance(radius_px, tuple) else (0.0, float(radius_px))
        if maxd_px is not None:
            interval = (interval[0] if interval else 0.0, min(float(maxd_px), interval[1] if interval else np.inf))
        indptr, indices, dist = _delaunay_csr(xy, delaunay_backend)
        params.update({"radius": interval, "delaunay": True})
    elif method == "radius":
        if radius_px is None:
            raise ValueError("method='radius' needs `radius`")
        if isinstance(radius_px, tuple):
            interval = tuple(sorted(radius_px))
            r = interval[1]
        else:
            r = float(radius_px)
        if maxd_px is not None:
            interval = (interval[0] if interval else 0.0, min(float(maxd_px), interval[1] if interval else np.inf))
        if not r >= 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        from napari_carspatial.analysis._grid import radius_pairs_csr

        indptr, indices, dist = radius_pairs_csr(xy, r)
        params.update({"radius": radius_px})
    elif method == "knn":
        if int(n_neighs) < 1:
            raise ValueError(f"n_neighs must be >= 1, got {n_neighs}")
        indptr, indices, dist = _knn_csr(xy, int(n_neighs))
        if maxd_px is not None:
            interval = (0.0, float(maxd_px))
        params.update({"n_neighbors": int(n_neighs)})
    else:
        raise ValueError(f"method must be 'delaunay', 'radius' or 'knn', got {method!r}")

    adj, dst = _finish(n, indptr, indices, dist, interval=interval, set_diag=set_diag)
    if method == "knn" and symmetrize:
        adj = adj.maximum(adj.T).tocsr()
        dst = dst.maximum(dst.T).tocsr()
        params["symmetrize"] = True
    logger.info(
        "spatial_graph(%s): %d cells, %d edges in %.2f s", method, n, adj.nnz, time.perf_counter() - t0
    )
    return SpatialGraph(adj, dst, method, params, px)


def _per_library(adata, library_key: str, *, spatial_key: str, pixel_size_um, **kw) -> SpatialGraph:
    if not hasattr(adata, "obs") or library_key not in adata.obs:
        raise KeyError(f"library_key {library_key!r} needs an AnnData with that obs column")
    xy = get_coordinates(adata, spatial_key=spatial_key)
    px = resolve_pixel_size(adata, pixel_size_um)
    codes = np.asarray(adata.obs[library_key].astype("category").cat.codes, dtype=np.int64)
    if (codes < 0).any():
        raise ValueError(f"{int((codes < 0).sum())} cell(s) have no value in obs[{library_key!r}]")
    n = xy.shape[0]
    parts_a, parts_d = [], []
    params: dict[str, Any] = {}
    method = kw["method"]
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        if method == "knn" and idx.size <= kw["n_neighs"]:
            raise ValueError(f"library {c} has {idx.size} cells, not more than n_neighs={kw['n_neighs']}")
        # coordinates of one library, already resolved units: pass the pixel size explicitly
        g = spatial_graph(xy[idx], pixel_size_um=px, **kw)
        params = g.params
        for mat, parts in ((g.connectivities, parts_a), (g.distances, parts_d)):
            coo = mat.tocoo()
            parts.append((idx[coo.row], idx[coo.col], coo.data))

    def assemble(parts, dtype):
        if not parts:
            return sp.csr_matrix((n, n), dtype=dtype)
        r = np.concatenate([p[0] for p in parts])
        c = np.concatenate([p[1] for p in parts])
        d = np.concatenate([p[2] for p in parts]).astype(dtype)
        m = sp.csr_matrix((d, (r, c)), shape=(n, n))
        m.sort_indices()
        return m

    params = {**params, "library_key": library_key}
    return SpatialGraph(assemble(parts_a, np.float32), assemble(parts_d, np.float64), method, params, px)


def store_graph(
    adata: AnnData,
    graph: SpatialGraph | None = None,
    *,
    key_added: str = "spatial",
    **kwargs: Any,
) -> SpatialGraph:
    """Write a graph into ``adata`` the way squidpy does (mutates ``adata``).

    Writes ``obsp[f"{key_added}_connectivities"]``, ``obsp[f"{key_added}_distances"]`` and
    ``uns[f"{key_added}_neighbors"] = {"connectivities_key", "distances_key", "params"}``.

    Parameters
    ----------
    adata
        The table.
    graph
        A graph from :func:`spatial_graph`; if ``None`` it is built with ``**kwargs``.
    key_added
        Prefix of the keys (squidpy's ``key_added``).
    **kwargs
        Passed to :func:`spatial_graph` when ``graph`` is ``None``.

    Returns
    -------
    SpatialGraph
        The stored graph.
    """
    if graph is None:
        graph = spatial_graph(adata, **kwargs)
    if graph.n_obs != adata.n_obs:
        raise ValueError(f"graph has {graph.n_obs} nodes but the table has {adata.n_obs} cells")
    conns_key = f"{key_added}_connectivities"
    dists_key = f"{key_added}_distances"
    adata.obsp[conns_key] = graph.connectivities
    adata.obsp[dists_key] = graph.distances
    # h5ad-writable: no None, tuples as float lists
    params = {k: (list(map(float, v)) if isinstance(v, tuple) else v)
              for k, v in graph.params.items() if v is not None}
    params["method"] = graph.method
    if graph.pixel_size_um is not None:
        params["pixel_size_um"] = graph.pixel_size_um
    adata.uns[f"{key_added}_neighbors"] = {
        "connectivities_key": conns_key,
        "distances_key": dists_key,
        "params": params,
    }
    return graph
