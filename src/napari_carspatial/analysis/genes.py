"""Genes as first-class values on sparse count tables, without densifying ``X``.

Spatial transcriptomics tables are cells x genes counts in CSR (1,000,000 x 5,000 is ~50 M
non-zeros, 0.4 GB; dense it would be 20 GB). Every function here reads the non-zeros only:

* :func:`gene_values`: per-cell values of one gene or a few genes (what "color cells by gene",
  gates on counts and the histogram need), from a scan of the non-zeros in bounded pieces;
* :func:`top_genes`: the genes of one cell, largest first (the inspector);
* :func:`gene_summary`: per gene total counts and number of cells detecting it (the gene list);
* :func:`normalize_log1p`: library-size normalisation and ``log1p`` kept sparse (a layer);
* :func:`score_markers` / :func:`cell_types_from_scores`: marker-gene scores (scanpy's
  ``score_genes``) and the rule "highest score above a floor" as a categorical column;
* :func:`leiden_cell_types`: scanpy's Leiden clustering with marker ranking, clusters named by
  their top markers, as a categorical column.

Results go into a new ``obs`` column with colours in ``uns[f"{key}_colors"]`` (scanpy's
convention) through :func:`store_cell_types`, so the curation dock and the audit trail see them
like any other cell-type column. ``scanpy`` is imported inside the functions that need it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger(__name__)

#: non-zeros scanned per piece (bounds the temporary memory of a column read to ~8 MB)
NNZ_PIECE = 8_000_000


def _matrix(adata, layer: str | None):
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"no layer {layer!r} in the table; layers: {', '.join(adata.layers.keys()) or 'none'}")
    return adata.layers[layer]


def _gene_index(adata, genes: str | Iterable[str]) -> np.ndarray:
    names = [genes] if isinstance(genes, str) else list(genes)
    idx = adata.var_names.get_indexer(names)
    if (idx < 0).any():
        missing = [g for g, i in zip(names, idx, strict=True) if i < 0]
        near = [g for g in adata.var_names if any(m.lower() in g.lower() for m in missing)][:10]
        raise KeyError(f"no gene {', '.join(map(repr, missing[:5]))} in the table"
                       + (f"; similar: {', '.join(near)}" if near else f" ({adata.n_vars} genes)"))
    return idx.astype(np.int64)


def sparse_columns(X, cols: Sequence[int]) -> np.ndarray:
    """Dense ``(n_rows, len(cols))`` float64 of some columns of ``X`` (CSR read by scanning non-zeros)."""
    import scipy.sparse as sp

    cols = np.asarray(cols, dtype=np.int64)
    n = X.shape[0]
    out = np.zeros((n, cols.size), dtype=np.float64)
    if not sp.issparse(X):
        return np.asarray(X[:, cols], dtype=np.float64).reshape(n, cols.size)
    if X.format != "csr":
        sub = X[:, cols]
        return np.asarray(sub.toarray(), dtype=np.float64)
    ucols, inverse = np.unique(cols, return_inverse=True)
    if ucols.size != cols.size:  # a gene asked twice: read each once
        return sparse_columns(X, ucols)[:, inverse]
    indices, data, indptr = X.indices, X.data, X.indptr
    canonical = bool(getattr(X, "has_canonical_format", False))
    lut = None
    if cols.size > 1:
        lut = np.full(X.shape[1], -1, dtype=np.int32)
        lut[cols] = np.arange(cols.size, dtype=np.int32)
    for a in range(0, indices.size, NNZ_PIECE):
        b = min(a + NNZ_PIECE, indices.size)
        piece = indices[a:b]
        if lut is None:
            hit = np.flatnonzero(piece == cols[0])
            k = np.zeros(hit.size, dtype=np.int64)
        else:
            kk = lut[piece]
            hit = np.flatnonzero(kk >= 0)
            k = kk[hit]
        if hit.size == 0:
            continue
        rows = np.searchsorted(indptr, hit + a, side="right") - 1
        if canonical:
            out[rows, k] = data[a:b][hit]
        else:  # duplicate entries of a non-canonical CSR add up, as scipy does
            np.add.at(out, (rows, k), data[a:b][hit])
    return out


def gene_values(adata: AnnData, genes: str | Iterable[str], *, layer: str | None = None) -> np.ndarray:
    """Per-cell values of one gene (1-D float64) or several genes (cells x genes), never densifying ``X``.

    Parameters
    ----------
    adata
        The cell table.
    genes
        A gene name or a list of names (``var_names``).
    layer
        Read ``adata.layers[layer]`` instead of ``X`` (e.g. ``"counts"``, ``"lognorm"``).

    Returns
    -------
    numpy.ndarray
        ``(n_cells,)`` for one name, ``(n_cells, n_genes)`` for a list.
    """
    idx = _gene_index(adata, genes)
    v = sparse_columns(_matrix(adata, layer), idx)
    return v[:, 0] if isinstance(genes, str) else v


def gene_counts(adata: AnnData, gene: str) -> np.ndarray:
    """Raw counts of ``gene`` per cell: the ``counts`` layer when there is one, else ``X``.

    The accessor gating on counts should call (a CAR transgene probe, IL18): sparse-safe.

    Parameters
    ----------
    adata
        The cell table.
    gene
        A name in ``var_names``.

    Returns
    -------
    numpy.ndarray
        ``(n_cells,)`` float64 counts.
    """
    return gene_values(adata, gene, layer="counts" if "counts" in adata.layers else None)


def top_genes(adata: AnnData, cell: int | str, *, n: int = 10, layer: str | None = None, by: str = "index") -> pd.DataFrame:
    """The ``n`` genes with the largest values in one cell (reads that cell's row only).

    Parameters
    ----------
    adata
        The cell table.
    cell
        Row position (``by="index"``), ``obs_names`` entry (``by="name"``) or instance id
        (``by="instance"``: the mask label).
    n
        How many.
    layer
        Read ``adata.layers[layer]`` instead of ``X``.
    by
        How ``cell`` is given: ``"index"``, ``"name"`` or ``"instance"``.

    Returns
    -------
    pandas.DataFrame
        ``gene``, ``value``, ``fraction`` (of the cell's total), largest first; genes with 0 are left out.
    """
    import scipy.sparse as sp

    if by == "index":
        row = int(cell)
    elif by == "name":
        row = int(adata.obs_names.get_loc(cell))
    elif by == "instance":
        from napari_carspatial.model.conventions import instance_ids

        hit = np.flatnonzero(instance_ids(adata) == int(cell))
        if hit.size == 0:
            raise KeyError(f"no cell with id {cell} in the table")
        row = int(hit[0])
    else:
        raise ValueError(f"by must be 'index', 'name' or 'instance', not {by!r}")
    X = _matrix(adata, layer)
    if sp.issparse(X):
        r = X[row]
        r = r.tocsr() if not sp.isspmatrix_csr(r) and hasattr(r, "tocsr") else r
        cols, vals = r.indices, np.asarray(r.data, dtype=np.float64)
    else:
        v = np.asarray(X[row], dtype=np.float64).ravel()
        cols = np.flatnonzero(v)
        vals = v[cols]
    total = float(vals.sum())
    order = np.argsort(-vals, kind="stable")[:n]
    return pd.DataFrame({"gene": np.asarray(adata.var_names)[cols[order]], "value": vals[order],
                         "fraction": vals[order] / total if total > 0 else np.full(order.size, np.nan)})


def gene_summary(adata: AnnData, *, layer: str | None = None) -> pd.DataFrame:
    """Per gene: ``total`` (sum over cells), ``n_cells`` (cells with a non-zero value),
    ``fraction_cells``; ``feature_type`` when ``var`` has one (Xenium controls). Sorted by total.

    Parameters
    ----------
    adata
        The cell table.
    layer
        Read ``adata.layers[layer]`` instead of the counts.

    Returns
    -------
    pandas.DataFrame
        Index = genes, sorted by ``total`` (largest first).
    """
    import scipy.sparse as sp

    X = _matrix(adata, layer)
    if sp.issparse(X) and X.format == "csr" and getattr(X, "has_canonical_format", False):
        nz = X.data != 0  # one pass over the non-zeros: totals and detecting cells per gene
        total = np.bincount(X.indices, weights=X.data, minlength=X.shape[1])
        ncell = np.bincount(X.indices[nz], minlength=X.shape[1])
    elif sp.issparse(X):
        total = np.asarray(X.sum(axis=0)).ravel()
        ncell = np.asarray((X != 0).sum(axis=0)).ravel()
    else:
        Xa = np.asarray(X)
        total, ncell = Xa.sum(axis=0), (Xa != 0).sum(axis=0)
    df = pd.DataFrame({"gene": np.asarray(adata.var_names), "total": total.astype(np.float64),
                       "n_cells": ncell.astype(np.int64)})
    df["fraction_cells"] = df["n_cells"] / max(adata.n_obs, 1)
    for c in ("feature_types", "feature_type"):
        if c in adata.var:
            df["feature_type"] = adata.var[c].astype(str).to_numpy()
            break
    return df.sort_values("total", ascending=False, kind="stable").reset_index(drop=True)


def normalize_log1p(adata, *, target_sum: float = 1e4, layer: str | None = None, store_layer: str = "lognorm"):
    """Add ``layers[store_layer]`` = ``log1p(counts / cell total * target_sum)``, sparse (CSR) kept.

    Cells with no counts stay 0. Returns the new layer. The input matrix is not modified.
    """
    import scipy.sparse as sp

    X = _matrix(adata, layer)
    if sp.issparse(X):
        X = X.tocsr()
        tot = np.asarray(X.sum(axis=1)).ravel()
        scale = np.divide(target_sum, tot, out=np.zeros_like(tot, dtype=np.float64), where=tot > 0)
        out = X.copy().astype(np.float32)
        out.data *= np.repeat(scale, np.diff(out.indptr)).astype(np.float32)
        np.log1p(out.data, out=out.data)
    else:
        Xa = np.asarray(X, dtype=np.float64)
        tot = Xa.sum(axis=1, keepdims=True)
        out = np.log1p(np.divide(Xa * target_sum, tot, out=np.zeros_like(Xa), where=tot > 0)).astype(np.float32)
    adata.layers[store_layer] = out
    return out


# --------------------------------------------------------------------------- cell types
@dataclass
class CellTypingResult:
    """Cell types for RNA data.

    Attributes
    ----------
    labels
        Categorical, one per cell.
    scores
        Per-cell scores (``score_markers``: one column per type) or ``None``.
    markers
        Ranked marker genes per group (``group``, ``gene``, ``score``, ``logfoldchange``, ``pval_adj``).
    method
        ``"marker_scores"`` or ``"leiden"``.
    params
        JSON-able parameters.
    """

    labels: pd.Categorical
    scores: pd.DataFrame | None
    markers: pd.DataFrame | None
    method: str
    params: dict[str, Any] = field(default_factory=dict)


def _lognorm_view(adata, layer: str | None):
    """A lightweight AnnData (same obs index) whose X is log-normalised, for scanpy calls."""
    import anndata as ad

    if layer == "lognorm" and "lognorm" in adata.layers:
        X = adata.layers["lognorm"]
    else:
        tmp = ad.AnnData(X=_matrix(adata, layer), obs=pd.DataFrame(index=adata.obs_names),
                         var=pd.DataFrame(index=adata.var_names))
        X = normalize_log1p(tmp, store_layer="_ln")
    return ad.AnnData(X=X, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))


def score_markers(adata, markers: Mapping[str, Sequence[str]], *, layer: str | None = None, seed: int = 0,
                  ctrl_size: int = 50) -> pd.DataFrame:
    """scanpy's ``score_genes`` for each cell type's marker genes (on log-normalised counts).

    Marker genes not in the panel are dropped with a log line; a type with none left raises.

    Returns
    -------
    pandas.DataFrame
        cells x types.
    """
    import scanpy as sc

    view = _lognorm_view(adata, layer)
    out = {}
    for ctype, genes in markers.items():
        present = [g for g in genes if g in adata.var_names]
        lost = [g for g in genes if g not in adata.var_names]
        if lost:
            log.info("markers of %r not in the panel: %s", ctype, ", ".join(lost))
        if not present:
            raise KeyError(f"none of the markers of {ctype!r} ({', '.join(genes)}) is in the panel")
        # small targeted panels (tens of genes) have too few genes per expression bin for
        # scanpy's default 25 bins: fewer bins, and markers may serve as controls of other bins
        small = adata.n_vars < 500
        sc.tl.score_genes(view, present, ctrl_size=min(ctrl_size, max(1, adata.n_vars - len(present))),
                          n_bins=25 if not small else max(3, adata.n_vars // 6), ctrl_as_ref=not small,
                          score_name="_score", random_state=seed, use_raw=False)
        out[ctype] = view.obs["_score"].to_numpy(np.float64)
    return pd.DataFrame(out, index=adata.obs_names)


def cell_types_from_scores(scores: pd.DataFrame, *, min_score: float = 0.0, unassigned: str = "Unassigned") -> pd.Categorical:
    """The highest-scoring type of each cell when its score exceeds ``min_score``, else ``unassigned``."""
    arr = scores.to_numpy(np.float64)
    best = np.nanargmax(np.where(np.isnan(arr), -np.inf, arr), axis=1)
    top = arr[np.arange(arr.shape[0]), best]
    names = np.asarray(scores.columns, dtype=object)[best]
    names = np.where(top > min_score, names, unassigned)
    cats = [*map(str, scores.columns), unassigned]
    return pd.Categorical(names, categories=cats)


def marker_cell_types(adata: AnnData, markers: Mapping[str, Sequence[str]], *, min_score: float = 0.0, layer: str | None = None,
                      seed: int = 0) -> CellTypingResult:
    """:func:`score_markers` then :func:`cell_types_from_scores`.

    Parameters
    ----------
    adata
        The cell table (not modified).
    markers
        ``{cell type: [marker genes]}``.
    min_score
        Cells whose best score is at most this are ``"Unassigned"``.
    layer
        Read counts from ``adata.layers[layer]`` instead of ``X``.
    seed
        Seed of the control genes of the scores.

    Returns
    -------
    CellTypingResult
        One label per cell, the scores and the parameters.
    """
    scores = score_markers(adata, markers, layer=layer, seed=seed)
    return CellTypingResult(labels=cell_types_from_scores(scores, min_score=min_score), scores=scores, markers=None,
                            method="marker_scores",
                            params={"markers": {k: list(v) for k, v in markers.items()}, "min_score": min_score,
                                    "seed": seed})


def leiden_cell_types(adata: AnnData, *, resolution: float = 1.0, n_neighbors: int = 15, n_pcs: int = 30,
                      n_top_genes: int | None = 2000, layer: str | None = None, n_markers: int = 2,
                      seed: int = 0) -> CellTypingResult:
    """scanpy's Leiden clusters with marker ranking, each cluster named by its top markers.

    Log-normalised counts (sparse) -> highly variable genes (when the panel is larger than
    ``n_top_genes``) -> PCA -> kNN graph -> Leiden (igraph flavour) -> ``rank_genes_groups``
    (t-test). Clusters are named ``"<id>: <gene1>/<gene2>"``. The input table is not modified.

    Parameters
    ----------
    adata
        The cell table (counts in ``X`` or ``layer``; not modified).
    resolution
        Leiden resolution.
    n_neighbors
        Neighbours of the kNN graph.
    n_pcs
        Principal components.
    n_top_genes
        Highly variable genes kept when the panel is larger (``None``: all genes).
    layer
        Read counts from ``adata.layers[layer]`` instead of ``X``.
    n_markers
        Markers in each cluster's name.
    seed
        Seed of PCA and Leiden.

    Returns
    -------
    CellTypingResult
        One label per cell, the marker ranking and the parameters.
    """
    import scanpy as sc

    view = _lognorm_view(adata, layer)
    if n_top_genes is not None and adata.n_vars > n_top_genes:
        sc.pp.highly_variable_genes(view, n_top_genes=n_top_genes, subset=True)
    npc = max(2, min(n_pcs, view.n_vars - 1, view.n_obs - 1))
    sc.pp.pca(view, n_comps=npc, random_state=seed)
    sc.pp.neighbors(view, n_neighbors=min(n_neighbors, max(2, view.n_obs - 1)), n_pcs=npc, random_state=seed)
    sc.tl.leiden(view, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False,
                 key_added="_leiden")
    clusters = view.obs["_leiden"].astype(str)
    if clusters.nunique() > 1:
        full = _lognorm_view(adata, layer)
        full.obs["_leiden"] = pd.Categorical(clusters)
        sc.tl.rank_genes_groups(full, "_leiden", method="t-test", use_raw=False, n_genes=min(25, adata.n_vars))
        markers = sc.get.rank_genes_groups_df(full, group=None)
        markers = markers.rename(columns={"names": "gene", "scores": "score", "logfoldchanges": "logfoldchange",
                                          "pvals_adj": "pval_adj"})
    else:
        markers = pd.DataFrame(columns=["group", "gene", "score", "logfoldchange", "pval_adj"])
    names = {}
    for cl in sorted(clusters.unique(), key=lambda c: int(c) if c.isdigit() else c):
        top = markers[(markers["group"].astype(str) == cl) & (markers["logfoldchange"] > 0)]["gene"].head(n_markers)
        names[cl] = f"{cl}: {'/'.join(map(str, top))}" if len(top) else cl
    labels = pd.Categorical(clusters.map(names).to_numpy(), categories=list(names.values()))
    return CellTypingResult(labels=labels, scores=None, markers=markers.reset_index(drop=True), method="leiden",
                            params={"resolution": resolution, "n_neighbors": n_neighbors, "n_pcs": npc,
                                    "n_top_genes": n_top_genes, "seed": seed})


def store_cell_types(adata: AnnData, result: CellTypingResult, *, key: str = "cell_type_rna", overwrite: bool = False) -> str:
    """Write ``result.labels`` as ``obs[key]`` (categorical) with colours in ``uns[f"{key}_colors"]``,
    the markers / params in ``uns["carspatial"]["cell_typing"][key]``. Refuses to overwrite an
    existing column unless ``overwrite`` (the original cell-type column is never replaced).

    Parameters
    ----------
    adata
        The cell table (modified in place).
    result
        From :func:`leiden_cell_types` or :func:`marker_cell_types`.
    key
        The ``obs`` column to write.
    overwrite
        Replace an existing column of that name.

    Returns
    -------
    str
        The column written.

    Raises
    ------
    ValueError
        ``obs[key]`` exists and ``overwrite`` is ``False``.
    """
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    from napari_carspatial.model.conventions import UNS_KEY, colors_key

    if key in adata.obs and not overwrite:
        raise ValueError(f"obs already has a column {key!r}; choose another key or pass overwrite=True")
    adata.obs[key] = pd.Categorical(result.labels)
    cats = list(adata.obs[key].cat.categories)
    cmap = colormaps["tab20"] if len(cats) > 10 else colormaps["tab10"]
    cols = [to_hex(cmap(i % cmap.N)) for i in range(len(cats))]
    if "Unassigned" in cats:
        cols[cats.index("Unassigned")] = "#808080"
    adata.uns[colors_key(key)] = np.asarray(cols, dtype=object)
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    typing = dict(meta.get("cell_typing", {}) or {})
    entry: dict[str, Any] = {"method": result.method, "params_json": __import__("json").dumps(result.params)}
    if result.markers is not None and len(result.markers):
        m = result.markers.copy()
        m["group"] = m["group"].astype(str)
        entry["markers"] = m[[c for c in ("group", "gene", "score", "logfoldchange", "pval_adj") if c in m]]
    typing[key] = entry
    meta["cell_typing"] = typing
    adata.uns[UNS_KEY] = meta
    return key
