"""The cluster-level ligand-receptor test (:func:`ligrec`, squidpy's ``gr.ligrec`` reproduced), its
data preparation (shared with the spatial test) and numba kernels. Re-exported by :mod:`.ligrec`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._ligrec_pairs import PROTEIN_ALIASES, SOURCE, TARGET, resolve_pairs

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- data
def _matrix(adata, layer: str | None, use_raw: bool):
    if use_raw:
        if adata.raw is None:
            raise AttributeError("use_raw=True but the table has no .raw")
        return adata.raw.X, adata.raw.var_names
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"no layer {layer!r}; layers: {', '.join(adata.layers.keys()) or 'none'}")
        return adata.layers[layer], adata.var_names
    return adata.X, adata.var_names


def _csc(X, cols: np.ndarray, rows: np.ndarray | None):
    import scipy.sparse as sp

    if sp.issparse(X):
        sub = X.tocsr()[rows] if rows is not None else X
        sub = sp.csc_matrix(sub)[:, cols] if not sp.isspmatrix_csc(sub) else sub[:, cols]
    else:
        a = np.asarray(X)
        sub = sp.csc_matrix(a[rows][:, cols] if rows is not None else a[:, cols])
    sub = sp.csc_matrix(sub, dtype=np.float64)
    sub.sum_duplicates()
    sub.sort_indices()
    return sub


@dataclass
class _Prepared:
    pairs: pd.DataFrame        # ligand, receptor, source, target (upper-case gene names as squidpy)
    genes: list[str]           # upper-case names of the columns of X
    X: Any                     # csc (cells x genes) float64
    codes: np.ndarray          # int32 cluster code per cell
    clusters: list[str]        # cluster names in code order
    src: np.ndarray            # gene index per pair
    tgt: np.ndarray


def _prepare(adata, cluster_key: str, pairs, *, layer, use_raw, complex_policy: str, mask, aliases) -> _Prepared:
    """squidpy's ``PermutationTest.prepare``: upper-case names, drop NA / duplicate pairs and duplicate
    genes, complexes -> the member with the lowest mean (``"min"``), keep pairs whose genes are present."""
    if cluster_key not in adata.obs:
        raise KeyError(f"no column {cluster_key!r} in the table; columns: {', '.join(map(str, adata.obs.columns[:12]))}")
    X, var = _matrix(adata, layer, use_raw)
    rows = None if mask is None else np.flatnonzero(np.asarray(mask, bool))
    if rows is not None and rows.size == 0:
        raise ValueError("the region has no cells")
    resolved = resolve_pairs(list(map(str, var)), pairs, aliases=aliases)
    if resolved.empty:
        raise ValueError("none of the ligand-receptor pairs has its genes in the panel")
    upper = pd.Index([str(v).upper() for v in var])
    keep_first = ~upper.duplicated()
    if (~keep_first).any():
        log.warning("removed %d duplicate gene name(s) (case-insensitive)", int((~keep_first).sum()))
    col_of = {g: i for i, g in zip(np.flatnonzero(keep_first), upper[keep_first], strict=True)}
    inter = resolved.copy()
    inter[SOURCE] = inter[SOURCE].str.upper()
    inter[TARGET] = inter[TARGET].str.upper()
    inter = inter.dropna(subset=[SOURCE, TARGET]).drop_duplicates(subset=[SOURCE, TARGET], keep="first")
    members = sorted({m for s in pd.concat([inter[SOURCE], inter[TARGET]]) for m in str(s).split("_") if m in col_of})
    if not members:
        raise ValueError("none of the ligand-receptor pairs has its genes in the panel")
    msub = _csc(X, np.array([col_of[m] for m in members], dtype=np.int64), rows)  # one conversion, sliced below
    mcol = {m: k for k, m in enumerate(members)}
    if complex_policy == "min":
        means = dict(zip(members, np.asarray(msub.sum(axis=0)).ravel() / msub.shape[0], strict=True))

        def pick(c: str) -> str | None:
            parts = [p for p in c.split("_") if p in col_of]
            if not parts:
                return None
            if len(parts) == 1:
                return parts[0]
            vals = np.array([means[p] for p in parts])
            return parts[int(np.argmin(vals))]

        inter[SOURCE] = inter[SOURCE].map(pick)
        inter[TARGET] = inter[TARGET].map(pick)
    elif complex_policy == "all":
        inter = inter.assign(**{SOURCE: inter[SOURCE].str.split("_")}).explode(SOURCE)
        inter = inter.assign(**{TARGET: inter[TARGET].str.split("_")}).explode(TARGET)
    else:
        raise ValueError(f"complex_policy must be 'min' or 'all', not {complex_policy!r}")
    inter = inter[inter[SOURCE].isin(col_of) & inter[TARGET].isin(col_of)]
    inter = inter.drop_duplicates(subset=[SOURCE, TARGET], keep="first").reset_index(drop=True)
    if inter.empty:
        raise ValueError("after filtering by genes, no ligand-receptor pair remains")
    genes = sorted(set(inter[SOURCE]) | set(inter[TARGET]))
    gi = {g: k for k, g in enumerate(genes)}
    Xs = msub[:, np.array([mcol[g] for g in genes], dtype=np.int64)]
    lab = adata.obs[cluster_key]
    lab = lab.iloc[rows] if rows is not None else lab
    lab = lab.astype("string").astype("category")
    lab = lab.cat.remove_unused_categories()
    if lab.isna().any():
        raise ValueError(f"{int(lab.isna().sum())} cells have no {cluster_key!r} value")
    return _Prepared(pairs=inter, genes=genes, X=Xs, codes=lab.cat.codes.to_numpy(np.int32),
                     clusters=[str(c) for c in lab.cat.categories],
                     src=inter[SOURCE].map(gi).to_numpy(np.int64), tgt=inter[TARGET].map(gi).to_numpy(np.int64))


# --------------------------------------------------------------------------- kernels
def _kernels():
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def cluster_sums(indptr, indices, data, labels, n_clusters):  # pragma: no cover - numba
        """(B, K, G) sums of every gene (CSC column) over the cells of each cluster, per permutation."""
        n_genes = indptr.size - 1
        B = labels.shape[1]
        out = np.zeros((B, n_clusters, n_genes))
        for g in prange(n_genes):
            acc = np.zeros((B, n_clusters))
            for k in range(indptr[g], indptr[g + 1]):
                row = labels[indices[k]]
                v = data[k]
                for b in range(B):
                    acc[b, row[b]] += v
            for b in range(B):
                for c in range(n_clusters):
                    out[b, c, g] = acc[b, c]
        return out

    @njit(parallel=True, cache=True)
    def exceed(groups, src, tgt, c1, c2, obs, valid, counts):  # pragma: no cover - numba
        """counts[i, j] += #perms with groups[b, c1, src] + groups[b, c2, tgt] > obs[i, j]."""
        B = groups.shape[0]
        for i in prange(src.size):
            a = src[i]
            t = tgt[i]
            for j in range(c1.size):
                if not valid[i, j]:
                    continue
                thr = obs[i, j]
                n = 0
                for b in range(B):
                    if groups[b, c1[j], a] + groups[b, c2[j], t] > thr:
                        n += 1
                counts[i, j] += n

    return cluster_sums, exceed


_KERNELS = None


def _get_kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _kernels()
    return _KERNELS


# --------------------------------------------------------------------------- cluster-level test
@dataclass
class LigrecResult:
    """Ligand-receptor results in squidpy's layout and as a tidy table.

    Attributes
    ----------
    means
        (pairs x cluster pairs): ``(mean L in cluster_1 + mean R in cluster_2) / 2``, 0 where a
        mean is 0 (squidpy's ``means``). Index ``(source, target)``, columns ``(cluster_1, cluster_2)``.
    pvalues
        Same shape; NaN where not tested (a mean is 0 or a gene is expressed in fewer than
        ``threshold`` of a cluster's cells).
    pvalues_adj
        FDR-adjusted p-values (``corr_method``), or ``None``.
    metadata
        ``ligand``, ``receptor`` (the symbols asked for) per row, and ``missing`` complex members.
    params
        JSON-able parameters.
    region
        Region name (``"whole"`` for all cells).
    """

    means: pd.DataFrame
    pvalues: pd.DataFrame
    pvalues_adj: pd.DataFrame | None
    metadata: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    region: str = "whole"

    def to_frame(self) -> pd.DataFrame:
        """Long form of the result.

        Returns
        -------
        pandas.DataFrame
            ``region, source, target, ligand, receptor, cluster_1, cluster_2, mean, pvalue, pvalue_adj``.
        """
        m = self.means.stack(level=[0, 1], future_stack=True).rename("mean")
        p = self.pvalues.stack(level=[0, 1], future_stack=True).rename("pvalue")
        df = pd.concat([m, p], axis=1)
        if self.pvalues_adj is not None:
            df["pvalue_adj"] = self.pvalues_adj.stack(level=[0, 1], future_stack=True)
        df = df.reset_index()
        meta = self.metadata.reset_index()
        df = df.merge(meta[[SOURCE, TARGET, "ligand", "receptor"]], on=[SOURCE, TARGET], how="left")
        df.insert(0, "region", self.region)
        return df


def _fdr(p: np.ndarray, method: str, alpha: float) -> np.ndarray:
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, float)
    q = multipletests(np.nan_to_num(p, nan=1.0), method=method, alpha=alpha, is_sorted=False, returnsorted=False)[1]
    q[np.isnan(p)] = np.nan
    return q


def ligrec(
    adata: AnnData,
    cluster_key: str,
    *,
    pairs: Any = "cart",
    clusters: Sequence[str] | Sequence[tuple[str, str]] | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    threshold: float = 0.01,
    n_perms: int = 1000,
    seed: int = 0,
    complex_policy: str = "min",
    corr_method: str | None = "fdr_bh",
    corr_axis: str = "clusters",
    alpha: float = 0.05,
    mask: np.ndarray | None = None,
    region: str = "whole",
    aliases: Mapping[str, Sequence[str]] | None = PROTEIN_ALIASES,
    block: int = 64,
) -> LigrecResult:
    """CellPhoneDB's permutation test between clusters, equal to ``squidpy.gr.ligrec``.

    Parameters
    ----------
    adata
        Cell table (sparse or dense ``X``; read, never densified as a whole).
    cluster_key
        Categorical ``obs`` column (cell types).
    pairs
        ``"cart"`` (:data:`CART_PAIRS`), a liana resource name (``"consensus"``), a CSV path or a
        DataFrame with ``ligand``/``receptor`` (or ``source``/``target``), or ``(ligand, receptor)`` tuples.
    clusters
        Cluster names (all ordered pairs of them are tested) or explicit ``(cluster_1, cluster_2)``
        pairs; default all clusters.
    layer
        Which matrix (``X`` by default; squidpy's default is ``use_raw=True``).
    use_raw
        Which matrix (``X`` by default; squidpy's default is ``use_raw=True``).
    threshold
        Minimum fraction of a cluster's cells expressing a gene (squidpy's ``threshold``).
    n_perms
        Permutations and seed: the permutations are those of ``squidpy.gr.ligrec(..., seed=seed,
        n_jobs=1)`` (one ``numpy.random.RandomState(seed)`` shuffling the labels ``n_perms``
        times).
    seed
        Permutations and seed: the permutations are those of ``squidpy.gr.ligrec(..., seed=seed,
        n_jobs=1)`` (one ``numpy.random.RandomState(seed)`` shuffling the labels ``n_perms``
        times).
    complex_policy
        ``"min"``: a complex is its member with the lowest mean; ``"all"``: every member pair.
    corr_method
        FDR correction (statsmodels ``multipletests``) per cluster pair (``"clusters"``) or per
        interaction (``"interactions"``), as squidpy; ``None`` for none.
    corr_axis
        FDR correction (statsmodels ``multipletests``) per cluster pair (``"clusters"``) or per
        interaction (``"interactions"``), as squidpy; ``None`` for none.
    alpha
        FDR correction (statsmodels ``multipletests``) per cluster pair (``"clusters"``) or per
        interaction (``"interactions"``), as squidpy; ``None`` for none.
    mask
        Restrict to these cells (a region), ``(n_obs,)`` bool.
    region
        Name of that region in the tidy table.
    aliases
        Protein names per gene symbol (:data:`PROTEIN_ALIASES`).
    block
        Permutations per kernel pass (memory: cells x block bytes for the labels).

    Returns
    -------
    LigrecResult
    """
    if n_perms < 1:
        raise ValueError("n_perms must be at least 1")
    prep = _prepare(adata, cluster_key, pairs, layer=layer, use_raw=use_raw, complex_policy=complex_policy,
                    mask=mask, aliases=aliases)
    cl = prep.clusters
    if clusters is None:
        cpairs = list(product(cl, repeat=2))
    elif all(isinstance(c, str) for c in clusters):
        unknown = [c for c in clusters if c not in cl]
        if unknown:
            raise KeyError(f"clusters {unknown} not in {cluster_key!r} ({', '.join(cl)})")
        cpairs = list(product(list(clusters), repeat=2))
    else:
        cpairs = [tuple(map(str, c)) for c in clusters]
    cpairs = sorted(cpairs)
    flat = sorted({c for p in cpairs for c in p})
    keep_cells = np.isin(np.asarray(cl, dtype=object)[prep.codes], flat)
    X, codes = prep.X, prep.codes
    if not keep_cells.all():  # squidpy drops the cells of clusters not in any pair
        X = X[np.flatnonzero(keep_cells)]
        old = np.asarray(cl, dtype=object)[codes[keep_cells]]
        cl = flat
        codes = pd.Categorical(old, categories=cl).codes.astype(np.int32)
    import scipy.sparse as sp

    X = sp.csc_matrix(X)
    K = len(cl)
    cidx = {c: k for k, c in enumerate(cl)}
    c1 = np.array([cidx[a] for a, _ in cpairs], dtype=np.int64)
    c2 = np.array([cidx[b] for _, b in cpairs], dtype=np.int64)
    size = np.bincount(codes, minlength=K).astype(np.int64)
    # observed cluster means and expression fractions (genes x clusters)
    onehot = sp.csr_matrix((np.ones(codes.size), (codes, np.arange(codes.size))), shape=(K, codes.size))
    sums = np.asarray((onehot @ X).todense())  # (K, G)
    nz = X.copy()
    nz.data = (nz.data > 0).astype(np.float64)
    frac = np.asarray((onehot @ nz).todense()) / size[:, None]
    mean = sums / size[:, None]
    expr = frac >= threshold
    m1 = mean[c1[None, :], prep.src[:, None]]
    m2 = mean[c2[None, :], prep.tgt[:, None]]
    positive = (m1 > 0) & (m2 > 0)
    means = np.where(positive, (m1 + m2) / 2.0, 0.0)
    valid = positive & expr[c1[None, :], prep.src[:, None]] & expr[c2[None, :], prep.tgt[:, None]]
    obs = m1 + m2
    counts = np.zeros(valid.shape, dtype=np.int64)
    cluster_sums, exceed = _get_kernels()
    rs = np.random.RandomState(seed)
    clustering = codes.copy()
    lab_dtype = np.uint8 if K < 256 else np.uint16
    done = 0
    indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    if valid.any():
        while done < n_perms:
            b = min(block, n_perms - done)
            L = np.empty((clustering.size, b), dtype=lab_dtype)
            for k in range(b):
                rs.shuffle(clustering)
                L[:, k] = clustering
            groups = cluster_sums(indptr, indices, X.data, L, K)
            groups /= size[None, :, None]
            exceed(groups, prep.src, prep.tgt, c1, c2, obs, valid, counts)
            done += b
    pvals = np.where(valid, counts / float(n_perms), np.nan)
    index = pd.MultiIndex.from_frame(prep.pairs[[SOURCE, TARGET]], names=[SOURCE, TARGET])
    columns = pd.MultiIndex.from_tuples(cpairs, names=["cluster_1", "cluster_2"])
    means_df = pd.DataFrame(means, index=index, columns=columns)
    p_df = pd.DataFrame(pvals, index=index, columns=columns)
    q_df = None
    if corr_method is not None:
        q = np.full(pvals.shape, np.nan)
        if corr_axis == "clusters":
            for j in range(pvals.shape[1]):
                q[:, j] = _fdr(pvals[:, j], corr_method, alpha)
        elif corr_axis == "interactions":
            for i in range(pvals.shape[0]):
                q[i] = _fdr(pvals[i], corr_method, alpha)
        else:
            raise ValueError(f"corr_axis must be 'clusters' or 'interactions', not {corr_axis!r}")
        q_df = pd.DataFrame(q, index=index, columns=columns)
    meta = prep.pairs[["ligand", "receptor", "missing"]].copy()
    meta.index = index
    params = {"test": "cluster", "cluster_key": cluster_key, "n_perms": int(n_perms), "seed": int(seed),
              "threshold": float(threshold), "complex_policy": complex_policy, "corr_method": corr_method,
              "corr_axis": corr_axis, "alpha": float(alpha), "layer": layer, "use_raw": bool(use_raw),
              "pairs": pairs if isinstance(pairs, str) else "custom", "n_pairs": int(len(index)), "n_cells": int(codes.size)}
    return LigrecResult(means=means_df, pvalues=p_df, pvalues_adj=q_df, metadata=meta, params=params, region=region)
