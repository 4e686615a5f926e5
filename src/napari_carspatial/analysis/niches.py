"""Cellular neighbourhoods (niches) à la Schürch et al., Cell 2020.

For every cell, the window of its ``k`` nearest cells (itself included, as in Schürch et al.,
who used windows of 10) is summarised as the fraction of each cell type; the composition
vectors are clustered with k-means (``n_niches`` clusters, seeded). Niches are numbered by size
(CN1 is the largest) and named after their dominant types, so the same data and seed always
give the same labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from napari_carspatial.analysis.nhood import _get_labels

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

__all__ = ["NicheResult", "cellular_neighborhoods", "store_niches"]

#: distinct colours for up to 20 niches (tab20 reordered so neighbours differ)
NICHE_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]


@dataclass
class NicheResult:
    """Result of :func:`cellular_neighbourhoods`.

    Attributes
    ----------
    labels
        ``(n_obs,)`` pandas Categorical of niche names (``"CN1 Tumor"``, ...).
    composition
        ``(n_niches, K)`` DataFrame: mean neighbourhood fraction of each cell type per niche.
    enrichment
        ``(n_niches, K)`` DataFrame: log2(composition / overall type fraction).
    sizes
        Cells per niche.
    params
        ``k``, ``n_niches``, ``seed``, ``cluster_key``.
    """

    labels: pd.Categorical
    composition: pd.DataFrame
    enrichment: pd.DataFrame
    sizes: pd.Series
    params: dict[str, Any] = field(default_factory=dict)


def _name(row: pd.Series) -> str:
    top = row.sort_values(ascending=False)
    parts = [str(top.index[0])]
    if len(top) > 1 and top.iloc[1] >= 0.2:
        parts.append(str(top.index[1]))
    return " + ".join(parts)


def cellular_neighborhoods(
    adata: AnnData,
    *,
    cluster_key: str = "cell_type",
    k: int = 10,
    n_niches: int = 8,
    seed: int = 0,
    n_init: int = 4,
) -> NicheResult:
    """Cluster cells by the cell-type composition of their ``k`` nearest neighbours.

    Parameters
    ----------
    adata
        Table with ``obs[cluster_key]`` and ``obsm["spatial"]``.
    cluster_key
        Cell-type column.
    k
        Window size: the cell and its ``k - 1`` nearest other cells.
    n_niches
        Number of k-means clusters.
    seed
        k-means seed (``random_state``); the same seed gives the same niches.
    n_init
        k-means restarts.

    Returns
    -------
    NicheResult
        Each cell's niche, the niche compositions and the parameters.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    from napari_carspatial.analysis.graph import spatial_graph

    labels, cats = _get_labels(adata, cluster_key)
    n, K = adata.n_obs, len(cats)
    if n <= k:
        raise ValueError(f"need more than k={k} cells, got {n}")
    if n_niches < 1 or n_niches > n:
        raise ValueError(f"n_niches must be between 1 and the number of cells, got {n_niches}")
    g = spatial_graph(adata, method="knn", n_neighs=int(k) - 1, pixel_size_um=1.0).connectivities if k > 1 else None
    onehot = sp.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, K))
    win = onehot.toarray()
    if g is not None:
        win = win + np.asarray((g @ onehot).todense())
    comp = win / win.sum(axis=1, keepdims=True)
    km_cls = KMeans if n <= 200_000 else MiniBatchKMeans
    km = km_cls(n_clusters=int(n_niches), random_state=int(seed), n_init=int(n_init))
    raw = km.fit_predict(comp)
    # number niches by size (ties: by the cluster's first cell), so labels do not depend on k-means ids
    sizes = np.bincount(raw, minlength=n_niches)
    first = np.array([np.argmax(raw == c) if sizes[c] else n for c in range(n_niches)])
    order = np.lexsort((first, -sizes))
    remap = np.empty(n_niches, np.int64)
    remap[order] = np.arange(n_niches)
    code = remap[raw]
    compo = pd.DataFrame([comp[code == c].mean(axis=0) if (code == c).any() else np.zeros(K)
                          for c in range(n_niches)], columns=cats)
    names = [f"CN{c + 1} {_name(compo.loc[c])}" for c in range(n_niches)]
    compo.index = names
    overall = np.bincount(labels, minlength=K) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        enr = pd.DataFrame(np.log2((compo.to_numpy() + 1e-3) / (overall[None, :] + 1e-3)), index=names, columns=cats)
    cat = pd.Categorical.from_codes(code, categories=names)
    logger.info("cellular_neighborhoods: %d cells, k=%d, %d niches", n, k, n_niches)
    return NicheResult(cat, compo, enr, pd.Series(np.bincount(code, minlength=n_niches), index=names),
                       {"k": int(k), "n_niches": int(n_niches), "seed": int(seed), "cluster_key": cluster_key})


def store_niches(adata: AnnData, result: NicheResult, *, key: str = "niche", mask: np.ndarray | None = None) -> None:
    """Write ``obs[key]`` (categorical) and ``uns[f"{key}_colors"]`` (mutates ``adata``).

    With ``mask`` (the cells the niches were computed on, e.g. a region) the other cells get
    ``"outside"`` (grey).

    Parameters
    ----------
    adata
        The table (modified in place).
    result
        From :func:`cellular_neighborhoods`.
    key
        The ``obs`` column to write.
    mask
        ``(n_obs,)`` bool: the cells ``result`` was computed on (default: all).
    """
    cats = list(result.labels.categories)
    colors = [NICHE_COLORS[i % len(NICHE_COLORS)] for i in range(len(cats))]
    if mask is None:
        if len(result.labels) != adata.n_obs:
            raise ValueError(f"{len(result.labels)} niche labels for {adata.n_obs} cells")
        adata.obs[key] = pd.Categorical(np.asarray(result.labels), categories=cats)
    else:
        mask = np.asarray(mask, bool)
        vals = np.full(adata.n_obs, "outside", dtype=object)
        vals[mask] = np.asarray(result.labels, dtype=object)
        cats = cats + ["outside"]
        colors = colors + ["#3a3a3a"]
        adata.obs[key] = pd.Categorical(vals, categories=cats)
    adata.uns[f"{key}_colors"] = colors
