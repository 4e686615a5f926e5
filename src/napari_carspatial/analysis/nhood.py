"""Neighbourhood enrichment: exact (closed-form) and permutation z-scores.

Count definition (squidpy's)
----------------------------
For a connectivity matrix ``W`` (CSR) and a labelling ``l``, the count for the ordered pair of
categories ``(A, B)`` is the number of *stored entries* ``(i, j)`` of ``W`` with ``l[i] == A``
and ``l[j] == B`` (weights are ignored, every stored entry counts 1)::

    count[A, B] = sum_ij [W_ij stored] [l_i = A] [l_j = B]

For a symmetric graph without self loops (squidpy's Delaunay and radius graphs) this is the
number of A-B edges for ``A != B`` and *twice* the number of A-A edges on the diagonal. For
squidpy's kNN graph (directed) ``count[A, B]`` is the number of (A cell, B neighbour) pairs and
need not equal ``count[B, A]``. Self loops (``set_diag=True``) add one to ``count[A, A]`` per A
cell.

Null model
----------
Random relabelling: the multiset of labels is kept and randomly permuted over the fixed graph
(sampling without replacement), which is what squidpy's permutation test does. Under this
model the mean and variance of ``count[A, B]`` have closed forms (join-count statistics, Cliff
& Ord); see :func:`join_count_moments` and ``docs/statistics.md`` for the derivation. The exact
z-score is ``(count - E) / sqrt(Var)``; squidpy's is ``(count - mean_perm) / std_perm`` over
1000 permutations, an estimate of the same quantity.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData

    from napari_carspatial.analysis.graph import SpatialGraph

logger = logging.getLogger(__name__)

__all__ = ["NhoodEnrichmentResult", "GraphSummary", "nhood_enrichment", "join_count_moments"]


@dataclass
class NhoodEnrichmentResult:
    """Result of :func:`nhood_enrichment`.

    Attributes
    ----------
    zscore
        ``(K, K)`` z-scores; NaN where the count cannot vary under relabelling (absent
        category, a single cell on the diagonal, a single category), like squidpy's 0/0.
    count
        ``(K, K)`` observed counts (squidpy's ``count``).
    expected
        ``(K, K)`` mean of the count under random relabelling (exact, or permutation mean).
    std
        ``(K, K)`` standard deviation under random relabelling (exact, or permutation std).
    categories
        The ``K`` categories (all categories of the column, used or not, in order).
    method
        ``"exact"`` or ``"permutation"``.
    n_perms
        Number of permutations (``None`` for ``"exact"``).
    seed
        Permutation seed (``None`` for ``"exact"``).
    pvalue_enriched
        Permutation only: ``(1 + #{perm >= obs}) / (n_perms + 1)``.
    pvalue_depleted
        Permutation only: ``(1 + #{perm <= obs}) / (n_perms + 1)``.
    extras
        Method details (``graph_summary`` for ``"exact"``).
    """

    zscore: np.ndarray
    count: np.ndarray
    expected: np.ndarray
    std: np.ndarray
    categories: list
    method: str
    n_perms: int | None = None
    seed: int | None = None
    pvalue_enriched: np.ndarray | None = None
    pvalue_depleted: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def to_frame(self, what: str = "zscore") -> pd.DataFrame:
        """One matrix (``"zscore"``, ``"count"``, ``"expected"``, ``"std"``) as a labelled DataFrame."""
        return pd.DataFrame(getattr(self, what), index=self.categories, columns=self.categories)


@dataclass(frozen=True)
class GraphSummary:
    """Graph scalars that the join-count moments depend on (binary structure of ``W``).

    With ``m`` the off-diagonal part of ``W`` (0/1), ``r_i`` / ``c_i`` its row / column sums
    (out / in degree) and ``d_i`` the diagonal (0/1):

    ``n`` nodes; ``s0 = sum m``; ``s_t = sum_ij m_ij m_ji``; ``r2 = sum r_i^2``;
    ``c2 = sum c_i^2``; ``x = sum r_i c_i``; ``d = sum d_i``; ``y = sum d_i (r_i + c_i)``.
    For a symmetric graph without loops: ``s_t = s0 = 2 |E|`` and ``r2 = c2 = x = sum deg^2``.

    Attributes
    ----------
    n
        Nodes.
    s0
        ``sum m``.
    s_t
        ``sum_ij m_ij m_ji``.
    r2
        ``sum r_i^2``.
    c2
        ``sum c_i^2``.
    x
        ``sum r_i c_i``.
    d
        ``sum d_i``.
    y
        ``sum d_i (r_i + c_i)``.
    """

    n: int
    s0: float
    s_t: float
    r2: float
    c2: float
    x: float
    d: float
    y: float


@numba.njit(parallel=True, cache=True)
def _summary_kernel(indptr, indices, n):  # pragma: no cover - numba
    r = np.zeros(n, dtype=np.int64)
    dg = np.zeros(n, dtype=np.int64)
    sym = np.zeros(n, dtype=np.int64)
    for i in numba.prange(n):
        ri = 0
        si = 0
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if j == i:
                dg[i] += 1
                continue
            ri += 1
            # is (j, i) stored? rows have sorted indices: binary search row j
            lo = indptr[j]
            hi = indptr[j + 1]
            while lo < hi:
                mid = (lo + hi) // 2
                if indices[mid] < i:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < indptr[j + 1] and indices[lo] == i:
                si += 1
        r[i] = ri
        sym[i] = si
    c = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if j != i:
                c[j] += 1
    return r, c, dg, sym


def _canonical_csr(adj) -> sp.csr_matrix:
    adj = sp.csr_matrix(adj) if not sp.isspmatrix_csr(adj) else adj
    if adj.shape[0] != adj.shape[1]:
        raise ValueError(f"connectivities must be square, got shape {adj.shape}")
    if not adj.has_canonical_format:
        adj = adj.copy()
        adj.sum_duplicates()
    return adj


def graph_summary(adj: sp.spmatrix | SpatialGraph) -> GraphSummary:
    """Compute the :class:`GraphSummary` of the stored structure of ``adj``.

    Parameters
    ----------
    adj
        The connectivities (CSR or a :class:`~napari_carspatial.analysis.graph.SpatialGraph`).

    Returns
    -------
    GraphSummary
        The scalars :func:`join_count_moments` needs.
    """
    adj = _canonical_csr(adj)
    n = adj.shape[0]
    r, c, d, sym = _summary_kernel(adj.indptr.astype(np.int64), adj.indices.astype(np.int64), n)
    r = r.astype(np.float64)
    c = c.astype(np.float64)
    d = d.astype(np.float64)
    return GraphSummary(
        n=int(n),
        s0=float(r.sum()),
        s_t=float(sym.sum()),
        r2=float(r @ r),
        c2=float(c @ c),
        x=float(r @ c),
        d=float(d.sum()),
        y=float(d @ (r + c)),
    )


def _ff(x, k: int):
    """Falling factorial ``x (x-1) ... (x-k+1)`` (elementwise, float64)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.ones_like(x)
    for i in range(k):
        out = out * (x - i)
    return out


def _ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)


def join_count_moments(n_per_category: np.ndarray, g: GraphSummary) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and variance of ``count[A, B]`` under uniform random relabelling.

    Parameters
    ----------
    n_per_category
        ``(K,)`` number of cells of each category (``sum == g.n``).
    g
        Graph scalars from :func:`graph_summary`.

    Returns
    -------
    mean, var
        ``(K, K)`` arrays.

    Notes
    -----
    Write ``count = sum_i d_i a_i b_i + sum_{i != j} m_ij a_i b_j`` with indicators
    ``a_i = [l_i = A]``, ``b_j = [l_j = B]``. For ``s`` distinct vertices that must carry
    ``u`` A's and ``v`` B's the probability is ``(a)_u (b)_v / (n)_s`` (falling factorials;
    ``(a)_{u+v} / (n)_s`` when ``A == B``). Expanding ``E[count^2]`` over pairs of entries
    ``(i, j), (k, l)`` by which of ``k, l`` coincide with ``i, j`` gives seven patterns with
    weights ``P1 = s0`` (k=i, l=j), ``P2 = s_t`` (k=j, l=i), ``P3 = r2 - s0`` (k=i),
    ``P4 = c2 - s0`` (l=j), ``P5 = P6 = x - s_t`` (k=j / l=i), ``P7 = s0^2 - P1 - ... - P6``
    (all distinct). With ``q2 = ab/(n)_2``, ``q3B = a(b)_2/(n)_3``, ``q3A = (a)_2 b/(n)_3``,
    ``q4 = (a)_2 (b)_2/(n)_4`` for ``A != B`` (patterns 2, 5, 6 are impossible: one vertex
    would need both labels)::

        E = s0 q2
        Var = s0^2 (q4 - q2^2) + P1 (q2 - q4) + P3 (q3B - q4) + P4 (q3A - q4) - (P2 + P5 + P6) q4

    and for ``A == B`` with ``p1 = a/n``, ``p2 = (a)_2/(n)_2``, ``p3``, ``p4`` likewise::

        E = d p1 + s0 p2
        Var = d (p1 - p2) + d^2 (p2 - p1^2) + 2 y (p2 - p3) + 2 d s0 (p3 - p1 p2)
              + (P1 + P2)(p2 - p4) + (P3 + P4 + P5 + P6)(p3 - p4) + s0^2 (p4 - p2^2)

    The differences of products that cancel (``q4 - q2^2`` etc.) are computed from their
    exact factored numerators so the variance keeps full precision at 10^6 cells.
    """
    nk = np.asarray(n_per_category, dtype=np.float64)
    n = float(g.n)
    K = nk.size
    a = nk[:, None] * np.ones((1, K))
    b = nk[None, :] * np.ones((K, 1))
    n2, n3, n4 = _ff(n, 2), _ff(n, 3), _ff(n, 4)
    s0, st, r2, c2, x, d, y = g.s0, g.s_t, g.r2, g.c2, g.x, g.d, g.y
    P1, P2 = s0, st
    P3, P4 = r2 - s0, c2 - s0
    P5 = P6 = x - st

    # ---- A != B
    q2 = _ratio(a * b, n2)
    q3B = _ratio(a * _ff(b, 2), n3)
    q3A = _ratio(_ff(a, 2) * b, n3)
    q4 = _ratio(_ff(a, 2) * _ff(b, 2), n4)
    if n >= 4:
        # q4 - q2^2 = q2 * [ab(4n-6) - (a+b-1) n (n-1)] / (n)_4, numerator in exact integers
        ai = nk.astype(np.int64)
        ni = int(g.n)
        num = np.empty((K, K), dtype=np.float64)
        for u in range(K):
            for v in range(K):
                A_, B_ = int(ai[u]), int(ai[v])
                num[u, v] = float(A_ * B_ * (4 * ni - 6) - (A_ + B_ - 1) * ni * (ni - 1))
        d4 = q2 * num / n4
    else:
        d4 = q4 - q2 * q2
    mean_ab = s0 * q2
    var_ab = s0 * s0 * d4 + P1 * (q2 - q4) + P3 * (q3B - q4) + P4 * (q3A - q4) - (P2 + P5 + P6) * q4

    # ---- A == B
    p1 = _ratio(nk, n)
    p2 = _ratio(_ff(nk, 2), n2)
    p3 = _ratio(_ff(nk, 3), n3)
    p4 = _ratio(_ff(nk, 4), n4)
    e21 = _ratio(nk * (nk - n), n * n * (n - 1)) if n >= 2 else p2 - p1 * p1  # p2 - p1^2
    e32 = p2 * _ratio(2.0 * (nk - n), n * (n - 2)) if n >= 3 else p3 - p1 * p2  # p3 - p1 p2
    # p4 - p2^2
    e42 = p2 * (n - nk) * (6.0 * (n + nk - 1.0) - 4.0 * nk * n) / n4 if n >= 4 else p4 - p2 * p2
    mean_aa = d * p1 + s0 * p2
    var_aa = (
        d * (p1 - p2)
        + d * d * e21
        + 2.0 * y * (p2 - p3)
        + 2.0 * d * s0 * e32
        + (P1 + P2) * (p2 - p4)
        + (P3 + P4 + P5 + P6) * (p3 - p4)
        + s0 * s0 * e42
    )

    mean = mean_ab.copy()
    var = var_ab.copy()
    idx = np.arange(K)
    mean[idx, idx] = mean_aa
    var[idx, idx] = var_aa
    # round-off can leave -1e-12 where the variance is exactly 0
    scale = np.maximum(np.abs(mean), 1.0)
    var = np.where(var < 1e-9 * scale, 0.0, var)
    return mean, var


@numba.njit(parallel=True, cache=True)
def _count_kernel(indptr, indices, labels, K, n_chunks):  # pragma: no cover - numba
    n = indptr.shape[0] - 1
    acc = np.zeros((n_chunks, K, K), dtype=np.int64)
    step = (n + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        s = c * step
        e = min(n, s + step)
        for i in range(s, e):
            li = labels[i]
            for p in range(indptr[i], indptr[i + 1]):
                acc[c, li, labels[indices[p]]] += 1
    return acc.sum(axis=0)


@numba.njit(cache=True)
def _count_serial(indptr, indices, labels, K):  # pragma: no cover - numba
    n = indptr.shape[0] - 1
    out = np.zeros((K, K), dtype=np.int64)
    for i in range(n):
        li = labels[i]
        for p in range(indptr[i], indptr[i + 1]):
            out[li, labels[indices[p]]] += 1
    return out


@numba.njit(parallel=True, cache=True)
def _perm_counts(er, ec, diag, sym, labels, K, n_perms, seed, seg_order, seg_start):  # pragma: no cover
    """Counts for ``n_perms`` relabellings. ``er, ec``: entries (only ``i < j`` when ``sym``,
    each then counted in both directions); ``diag``: rows with a stored diagonal entry."""
    n_seg = seg_start.shape[0] - 1
    out = np.zeros((n_perms, K, K), dtype=np.int64)
    for p in numba.prange(n_perms):
        # per-permutation seeding: results do not depend on the thread schedule
        np.random.seed(seed + p)
        lab = labels.copy()
        for g in range(n_seg):  # Fisher-Yates within each library
            s = seg_start[g]
            for k in range(seg_start[g + 1] - 1, s, -1):
                j = s + np.random.randint(0, k - s + 1)
                a = seg_order[k]
                b = seg_order[j]
                t = lab[a]
                lab[a] = lab[b]
                lab[b] = t
        c = np.zeros((K, K), dtype=np.int64)
        if sym:
            for e in range(er.shape[0]):
                a = lab[er[e]]
                b = lab[ec[e]]
                c[a, b] += 1
                c[b, a] += 1
        else:
            for e in range(er.shape[0]):
                c[lab[er[e]], lab[ec[e]]] += 1
        for d in range(diag.shape[0]):
            a = lab[diag[d]]
            c[a, a] += 1
        out[p] = c
    return out


def _perm_kernel(indptr, indices, labels, K, n_perms, seed, groups=None):
    """``(n_perms, K, K)`` counts under random relabelling (within ``groups`` if given)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    n = labels.shape[0]
    if groups is None:
        seg_order = np.arange(n, dtype=np.int64)
        seg_start = np.array([0, n], dtype=np.int64)
    else:
        seg_order = np.argsort(groups, kind="stable").astype(np.int64)
        seg_start = np.searchsorted(groups[seg_order], np.arange(int(groups.max()) + 2)).astype(np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    _, _, _, sym_count = _summary_kernel(indptr, indices, n)
    off = rows != indices
    sym = bool(sym_count.sum() == off.sum())  # every off-diagonal (i, j) has its (j, i)
    if sym:  # half the label look-ups: count i < j once in both directions
        keep = rows < indices
        er, ec = rows[keep], indices[keep]
    else:
        er, ec = rows[off], indices[off]
    diag = rows[~off]
    lab_dtype = np.int16 if K < 2**15 else np.int32  # small label array stays in cache
    return _perm_counts(er, ec, diag, sym, labels.astype(lab_dtype), K, int(n_perms), int(seed),
                        seg_order, seg_start)


def _get_labels(adata, cluster_key: str) -> tuple[np.ndarray, list]:
    if cluster_key not in adata.obs:
        raise KeyError(f"obs has no column {cluster_key!r}; available: {list(adata.obs.columns)}")
    col = adata.obs[cluster_key]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype("category")
    codes = np.asarray(col.cat.codes, dtype=np.int64)
    if (codes < 0).any():
        raise ValueError(
            f"{int((codes < 0).sum())} cell(s) have no value in obs[{cluster_key!r}] (NaN); "
            "assign a category (e.g. 'unassigned') or subset the table first"
        )
    return codes, list(col.cat.categories)


def _get_connectivities(adata, connectivity_key: str, connectivities) -> sp.csr_matrix:
    if connectivities is not None:
        adj = getattr(connectivities, "connectivities", connectivities)
    else:
        key = connectivity_key if connectivity_key.endswith("_connectivities") else f"{connectivity_key}_connectivities"
        if key not in adata.obsp:
            raise KeyError(
                f"obsp has no {key!r}: build a graph first with "
                "napari_carspatial.analysis.store_graph(adata, method=...) or squidpy's spatial_neighbors"
            )
        adj = adata.obsp[key]
    adj = _canonical_csr(adj)
    if adj.shape[0] != adata.n_obs:
        raise ValueError(f"graph has {adj.shape[0]} nodes but the table has {adata.n_obs} cells")
    return adj


def nhood_enrichment(
    adata: AnnData,
    *,
    cluster_key: str,
    method: Literal["exact", "permutation"] = "exact",
    n_perms: int = 1000,
    seed: int = 0,
    connectivity_key: str = "spatial",
    connectivities: sp.spmatrix | SpatialGraph | None = None,
    library_key: str | None = None,
    copy: bool = True,
) -> NhoodEnrichmentResult:
    """Neighbourhood enrichment z-scores of every pair of categories.

    Parameters
    ----------
    adata
        AnnData with categorical ``obs[cluster_key]`` and a graph in
        ``obsp[f"{connectivity_key}_connectivities"]`` (or pass ``connectivities``).
    cluster_key
        Column of ``obs`` with the cell types (made categorical if it is not). All categories
        appear in the result, used or not (like squidpy).
    method
        ``"exact"``: closed-form mean and variance of the count under random relabelling
        (no permutations; see :func:`join_count_moments`). ``"permutation"``: ``n_perms``
        random relabellings (numba, parallel), squidpy's z-score ``(count - mean) / std``
        (``std`` with ``ddof=0``), plus empirical p-values.
    n_perms
        Number of permutations (``"permutation"`` only).
    seed
        Random seed (``"permutation"`` only); permutation ``p`` uses ``seed + p``, so results
        do not depend on the number of threads.
    connectivity_key
        squidpy's ``connectivity_key`` (``"spatial"`` -> ``obsp["spatial_connectivities"]``).
    connectivities
        A CSR matrix or :class:`~napari_carspatial.analysis.graph.SpatialGraph` to use instead
        of ``obsp``.
    library_key
        Column of ``obs`` with the library (image / section): labels are permuted within each
        library, as squidpy's ``library_key``. The exact moments are then sums over libraries
        (independent relabellings), which needs a graph without edges between libraries
        (``spatial_graph(..., library_key=...)`` builds one).
    copy
        If ``True`` (default) ``adata`` is not modified. If ``False`` the result is also
        stored like squidpy: ``uns[f"{cluster_key}_nhood_enrichment"] = {"zscore", "count"}``.

    Returns
    -------
    NhoodEnrichmentResult
        z-scores, counts, expected counts and standard deviations (``K x K``).

    Notes
    -----
    The count is squidpy's: the number of stored entries ``(i, j)`` of the connectivity matrix
    with ``l_i = A`` and ``l_j = B`` (see the module docstring): undirected A-B edges off the
    diagonal, twice the A-A edges on it, for a symmetric loop-free graph. Where the variance
    is zero (category absent, one cell on the diagonal, one category) the z-score is NaN,
    matching squidpy's ``0 / 0``; squidpy itself refuses a single category.
    """
    t0 = time.perf_counter()
    labels, categories = _get_labels(adata, cluster_key)
    adj = _get_connectivities(adata, connectivity_key, connectivities)
    K = len(categories)
    indptr = adj.indptr.astype(np.int64)
    indices = adj.indices.astype(np.int64)
    n_threads = numba.get_num_threads()
    if adj.nnz > 200_000:
        count = _count_kernel(indptr, indices, labels, K, 4 * n_threads)
    else:
        count = _count_serial(indptr, indices, labels, K)

    groups = None
    if library_key is not None:
        groups, _libs = _get_labels(adata, library_key)

    pe = pdp = None
    if method == "exact":
        if groups is None:
            summary = graph_summary(adj)
            expected, var = join_count_moments(np.bincount(labels, minlength=K), summary)
            extras: dict[str, Any] = {"graph_summary": summary}
        else:
            rows = np.repeat(np.arange(adj.shape[0]), np.diff(adj.indptr))
            if np.any(groups[rows] != groups[adj.indices]):
                raise ValueError(
                    "the graph has edges between libraries; build it per library "
                    "(spatial_graph(..., library_key=...)) to use library_key with method='exact'"
                )
            expected = np.zeros((K, K))
            var = np.zeros((K, K))
            for g in np.unique(groups):
                idx = np.flatnonzero(groups == g)
                sub = adj[idx][:, idx]
                e_g, v_g = join_count_moments(np.bincount(labels[idx], minlength=K), graph_summary(sub))
                expected += e_g
                var += v_g
            extras = {}
        std = np.sqrt(var)
        n_perms_out = seed_out = None
    elif method == "permutation":
        if int(n_perms) < 1:
            raise ValueError(f"n_perms must be >= 1, got {n_perms}")
        perms = _perm_kernel(indptr, indices, labels, K, int(n_perms), int(seed), groups)
        expected = perms.mean(axis=0)
        std = perms.std(axis=0)
        pe = (1.0 + (perms >= count).sum(axis=0)) / (n_perms + 1.0)
        pdp = (1.0 + (perms <= count).sum(axis=0)) / (n_perms + 1.0)
        extras = {}
        n_perms_out, seed_out = int(n_perms), int(seed)
    else:
        raise ValueError(f"method must be 'exact' or 'permutation', got {method!r}")

    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > 0, (count - expected) / np.where(std > 0, std, 1.0), np.nan)
    res = NhoodEnrichmentResult(
        zscore=z,
        count=count,
        expected=expected,
        std=std,
        categories=categories,
        method=method,
        n_perms=n_perms_out,
        seed=seed_out,
        pvalue_enriched=pe,
        pvalue_depleted=pdp,
        extras=extras,
    )
    logger.info(
        "nhood_enrichment(%s): %d cells, %d categories, %d entries in %.3f s",
        method, adata.n_obs, K, adj.nnz, time.perf_counter() - t0,
    )
    if not copy:
        adata.uns[f"{cluster_key}_nhood_enrichment"] = {"zscore": z, "count": count}
    return res
