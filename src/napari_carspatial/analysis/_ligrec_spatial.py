"""The neighbour-restricted ligand-receptor test (:func:`spatial_ligrec`) with its exact
permutation moments. Re-exported by :mod:`.ligrec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._ligrec_cluster import _fdr, _prepare
from ._ligrec_pairs import PROTEIN_ALIASES, SOURCE, TARGET

if TYPE_CHECKING:
    from anndata import AnnData
    from numpy.typing import ArrayLike


# --------------------------------------------------------------------------- spatial (neighbour) test
@dataclass
class SpatialLigrecResult:
    """Neighbour-restricted ligand-receptor scores, one row per (pair, sender type, receiver type).

    Attributes
    ----------
    table
        ``region, ligand, receptor, source, target, sender, receiver, n_edges, n_senders,
        n_receivers, score, expected, std, z, pvalue, pvalue_adj`` (and ``pvalue_mc`` with
        ``n_perms``). ``score`` = mean over sender -> receiver edges of ``(L[sender] +
        R[receiver]) / 2``; ``expected`` / ``std`` its exact mean and standard deviation when
        expression profiles are permuted within each cell type; ``pvalue`` one-sided
        (enrichment at contacts), normal. NaN (with ``reason``) where not tested.
    params
        JSON-able parameters.
    """

    table: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)


def _linear_perm_moments(w: np.ndarray, y_sum: np.ndarray, y_sq: np.ndarray, n: int):
    """Mean and variance of ``sum_i w_i y_pi(i)`` over uniform permutations of ``n`` items.

    ``w`` (m, n) weights per test row; ``y_sum``, ``y_sq`` (m,) the sum and sum of squares of
    the permuted values. E = mean(w) * sum(y); Var = sum((w - mean w)^2) * sum((y - mean y)^2) / (n - 1).
    """
    wbar = w.mean(axis=1)
    ss_w = ((w - wbar[:, None]) ** 2).sum(axis=1)
    ss_y = y_sq - y_sum**2 / n
    e = wbar * y_sum
    v = ss_w * np.maximum(ss_y, 0.0) / max(n - 1, 1)
    return e, v


def spatial_ligrec(
    adata: AnnData,
    cluster_key: str,
    *,
    graph: Any = None,
    pairs: Any = "cart",
    layer: str | None = None,
    threshold: float = 0.01,
    min_edges: int = 5,
    method: str = "delaunay",
    max_distance_um: float | None = 30.0,
    radius_um: float | None = None,
    n_neighs: int = 6,
    labels: ArrayLike | None = None,
    expand_px: int = 2,
    pixel_size_um: float | None = None,
    mask: np.ndarray | None = None,
    region: str = "whole",
    n_perms: int | None = None,
    seed: int = 0,
    complex_policy: str = "min",
    corr_method: str | None = "fdr_bh",
    alpha: float = 0.05,
    aliases: Mapping[str, Sequence[str]] | None = PROTEIN_ALIASES,
) -> SpatialLigrecResult:
    """Ligand-receptor co-expression between neighbouring cells, with an exact permutation null.

    Parameters
    ----------
    adata
        Cell table with ``obsm["spatial"]`` (level-0 pixels).
    cluster_key
        Cell-type column.
    graph
        A :class:`~napari_carspatial.analysis.graph.SpatialGraph` or ``(n, n)`` sparse adjacency
        over ``adata``'s cells; built when ``None`` (``method``: ``"delaunay"`` with
        ``max_distance_um``, ``"radius"`` with ``radius_um``, ``"knn"`` with ``n_neighs``, or
        ``"contact"`` from the mask ``labels`` with ``expand_px``).
    pairs
        As :func:`ligrec`: ``"cart"``, a liana resource, a CSV path, a DataFrame or tuples.
    layer
        Expression from this layer instead of ``X``.
    threshold
        Minimum fraction of expressing cells: of the sender type for L, of the receiver type for R.
    min_edges
        Sender -> receiver combinations with fewer edges are not tested.
    method
        Graph built when ``graph`` is ``None``: ``"delaunay"``, ``"radius"``, ``"knn"`` or ``"contact"``.
    max_distance_um
        Longest Delaunay edge kept (µm; ``None``: all).
    radius_um
        Radius of ``method="radius"`` (µm).
    n_neighs
        Neighbours of ``method="knn"``.
    labels
        The mask, for ``method="contact"``.
    expand_px
        Pixels each cell is grown by before contacts are counted (``method="contact"``).
    pixel_size_um
        µm per pixel (default: the table's).
    mask
        Restrict to a region's cells (the graph is restricted to them too).
    region
        Name of that region in the result.
    n_perms
        Also run ``n_perms`` Monte Carlo permutations (``pvalue_mc``); ``None``: analytic only.
    seed
        Seed of those permutations.
    complex_policy
        As :func:`ligrec` (``"min"``: the complex member with the lowest mean; ``"all"``).
    corr_method
        FDR method over every tested row of the region (``None``: no correction).
    alpha
        FDR level.
    aliases
        Protein names per gene symbol (default :data:`PROTEIN_ALIASES`).

    Returns
    -------
    SpatialLigrecResult
    """
    import scipy.sparse as sp

    from napari_carspatial.model.conventions import pixel_size_um as stored_px

    px = pixel_size_um if pixel_size_um is not None else stored_px(adata)
    rows = None if mask is None else np.flatnonzero(np.asarray(mask, bool))
    prep = _prepare(adata, cluster_key, pairs, layer=layer, use_raw=False, complex_policy=complex_policy,
                    mask=mask, aliases=aliases)
    W = _adjacency(adata, graph, rows=rows, method=method, max_distance_um=max_distance_um, radius_um=radius_um,
                   n_neighs=n_neighs, labels=labels, expand_px=expand_px, px=px)
    W = ((W + W.T) > 0).astype(np.float64).tocsr()  # undirected: each contact counts both ways
    W.setdiag(0)
    W.eliminate_zeros()
    codes, K, cl = prep.codes, len(prep.clusters), prep.clusters
    n = codes.size
    onehot = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, K))
    D = np.asarray((W @ onehot).todense())  # (n, K): neighbours of each type
    X = sp.csc_matrix(prep.X)
    Xr = X.tocsr()
    members = [np.flatnonzero(codes == k) for k in range(K)]
    Xsq = Xr.multiply(Xr).tocsr()
    tsum = np.vstack([np.asarray(Xr[m].sum(axis=0)).ravel() if m.size else np.zeros(X.shape[1]) for m in members])
    nzfrac = np.vstack([np.asarray((Xr[m] > 0).sum(axis=0)).ravel() / max(m.size, 1) for m in members])
    rows_out = []
    rng = np.random.default_rng(seed)
    perms = None
    if n_perms:
        perms = [[rng.permutation(m) for m in members] for _ in range(int(n_perms))]
    for a, b in product(range(K), repeat=2):
        ma, mb = members[a], members[b]
        if ma.size == 0 or mb.size == 0:
            continue
        wa = D[ma, b]  # sender weights: B-neighbours of each A cell
        wb = D[mb, a]  # receiver weights: A-neighbours of each B cell
        n_e = float(wa.sum())
        base = {"region": region, "sender": cl[a], "receiver": cl[b], "n_edges": int(n_e),
                "n_senders": int((wa > 0).sum()), "n_receivers": int((wb > 0).sum())}
        Lv = Xr[ma][:, prep.src]  # (n_a, P)
        Rv = Xr[mb][:, prep.tgt]
        score = (np.asarray(Lv.T @ wa).ravel() + np.asarray(Rv.T @ wb).ravel()) / (2 * n_e) if n_e > 0 else np.full(prep.src.size, np.nan)
        if a != b:
            eL, vL = _linear_perm_moments(np.broadcast_to(wa / (2 * n_e) if n_e else wa, (1, ma.size)),
                                          tsum[a, prep.src], np.asarray(Xsq[ma][:, prep.src].sum(axis=0)).ravel(), ma.size)
            eR, vR = _linear_perm_moments(np.broadcast_to(wb / (2 * n_e) if n_e else wb, (1, mb.size)),
                                          tsum[b, prep.tgt], np.asarray(Xsq[mb][:, prep.tgt].sum(axis=0)).ravel(), mb.size)
            e, v = eL + eR, vL + vR
        else:  # one permutation moves L and R together: a linear statistic of y = L + R
            Y = Lv + Rv
            ysum = np.asarray(Y.sum(axis=0)).ravel()
            ysq = np.asarray(Y.multiply(Y).sum(axis=0)).ravel()
            e, v = _linear_perm_moments(np.broadcast_to(wa / (2 * n_e) if n_e else wa, (1, ma.size)), ysum, ysq, ma.size)
        std = np.sqrt(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (score - e) / std
        from scipy.stats import norm

        pval = norm.sf(z)
        fa, fb = nzfrac[a, prep.src], nzfrac[b, prep.tgt]
        enough = bool(n_e >= min_edges)
        ok = enough & (fa >= threshold) & (fb >= threshold) & (std > 0)
        reason = np.where(not enough, f"fewer than {min_edges} edges",
                          np.where(~((fa >= threshold) & (fb >= threshold)), "not expressed", np.where(std > 0, "", "constant")))
        mc = None
        if perms is not None and n_e > 0:
            null = np.empty((len(perms), prep.src.size))
            for k, pm in enumerate(perms):
                La = Xr[pm[a]][:, prep.src]
                Rb = Xr[pm[b]][:, prep.tgt]
                null[k] = (np.asarray(La.T @ wa).ravel() + np.asarray(Rb.T @ wb).ravel()) / (2 * n_e)
            mc = ((null >= score[None, :] - 1e-12).sum(axis=0) + 1) / (len(perms) + 1)
        for i in range(prep.src.size):
            r = {**base, "ligand": prep.pairs["ligand"].iat[i], "receptor": prep.pairs["receptor"].iat[i],
                 "source": prep.pairs[SOURCE].iat[i], "target": prep.pairs[TARGET].iat[i],
                 "score": float(score[i]), "expected": float(e[i]) if ok[i] else np.nan,
                 "std": float(std[i]) if ok[i] else np.nan, "z": float(z[i]) if ok[i] else np.nan,
                 "pvalue": float(pval[i]) if ok[i] else np.nan, "reason": str(reason[i])}
            if mc is not None:
                r["pvalue_mc"] = float(mc[i]) if ok[i] else np.nan
            rows_out.append(r)
    table = pd.DataFrame(rows_out)
    if table.empty:
        raise ValueError("no sender/receiver combination to test (empty region or one cell type)")
    if corr_method is not None:
        table["pvalue_adj"] = _fdr(table["pvalue"].to_numpy(), corr_method, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = table["score"].to_numpy(float) / table["expected"].to_numpy(float)
    table["log2_enrichment"] = np.where(ratio > 0, np.log2(np.where(ratio > 0, ratio, 1.0)), np.nan)
    order = ["region", "ligand", "receptor", "source", "target", "sender", "receiver", "n_edges", "n_senders",
             "n_receivers", "score", "expected", "std", "z", "log2_enrichment", "pvalue", "pvalue_adj", "pvalue_mc", "reason"]
    table = table[[c for c in order if c in table.columns]]
    params = {"test": "spatial", "cluster_key": cluster_key, "graph": method if graph is None else "given",
              "max_distance_um": max_distance_um, "radius_um": radius_um, "n_neighs": n_neighs, "expand_px": expand_px,
              "threshold": float(threshold), "min_edges": int(min_edges), "n_perms": n_perms, "seed": int(seed),
              "complex_policy": complex_policy, "corr_method": corr_method, "alpha": float(alpha), "layer": layer,
              "pairs": pairs if isinstance(pairs, str) else "custom", "pixel_size_um": px, "n_cells": int(n)}
    return SpatialLigrecResult(table=table, params=params)


def _adjacency(adata, graph, *, rows, method, max_distance_um, radius_um, n_neighs, labels, expand_px, px):
    import scipy.sparse as sp

    if graph is not None:
        W = graph.connectivities if hasattr(graph, "connectivities") else graph
        W = sp.csr_matrix(W)
        if W.shape[0] != adata.n_obs:
            raise ValueError(f"the graph has {W.shape[0]} nodes, the table {adata.n_obs} cells")
        return W[rows][:, rows] if rows is not None else W
    sub = adata if rows is None else adata[rows]
    if method == "contact":
        from napari_carspatial.analysis.contact import contact_graph

        if labels is None:
            raise ValueError("the contact graph needs the mask (labels=)")
        return contact_graph(sub, labels, expand_px=expand_px).connectivities
    from napari_carspatial.analysis.graph import spatial_graph

    if method == "delaunay":
        return spatial_graph(sub, method="delaunay", max_distance=max_distance_um, pixel_size_um=px).connectivities
    if method == "radius":
        if radius_um is None:
            raise ValueError("method='radius' needs radius_um")
        return spatial_graph(sub, method="radius", radius=radius_um, pixel_size_um=px).connectivities
    if method == "knn":
        return spatial_graph(sub, method="knn", n_neighs=n_neighs).connectivities
    raise ValueError(f"method must be delaunay, radius, knn or contact, not {method!r}")
