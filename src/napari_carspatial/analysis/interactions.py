"""Interaction matrices: edge counts between cell types, and imcRtools' ``countInteractions``.

* :func:`interaction_matrix`: ``count[A, B]`` = stored graph entries ``(i, j)`` with ``l_i = A``,
  ``l_j = B`` (squidpy's ``interaction_matrix``), and its row-normalised form
  ``count[A, B] / sum_B count[A, B]`` (squidpy's ``normalized=True``).
* :func:`count_interactions`: imcRtools' ``countInteractions`` per image (group). For every cell
  ``i`` of type ``a`` let ``n_b(i)`` be its number of graph neighbours of type ``b``:

  - ``classic``: ``ct = mean_i n_b(i)`` over all cells of type ``a`` in the group;
  - ``histocat``: ``ct = mean_i n_b(i)`` over the cells of type ``a`` with ``n_b(i) > 0``;
  - ``patch``: ``ct = fraction of cells of type a with n_b(i) >= patch_size``.

  ``ct`` is NaN where ``a`` or ``b`` is absent from the group (histocat: also where no ``a``
  cell has a ``b`` neighbour).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from napari_carspatial.analysis.nhood import _canonical_csr, _get_labels

if TYPE_CHECKING:
    from anndata import AnnData

    from napari_carspatial.analysis.graph import SpatialGraph

logger = logging.getLogger(__name__)

__all__ = ["InteractionResult", "count_interactions", "interaction_matrix", "neighbor_type_counts"]


@dataclass
class InteractionResult:
    """Result of :func:`interaction_matrix`.

    Attributes
    ----------
    count
        ``(K, K)`` int64 number of graph entries from type ``A`` (row) to type ``B`` (column).
    normalized
        ``(K, K)`` row-normalised counts (rows sum to 1; NaN rows for types without edges).
    categories
        The ``K`` categories.
    """

    count: np.ndarray
    normalized: np.ndarray
    categories: list

    def to_frame(self, what: str = "count") -> pd.DataFrame:
        return pd.DataFrame(getattr(self, what), index=self.categories, columns=self.categories)


def _adj(graph) -> sp.csr_matrix:
    return _canonical_csr(getattr(graph, "connectivities", graph))


def neighbor_type_counts(graph, labels: np.ndarray, K: int) -> np.ndarray:
    """``(n, K)`` number of neighbours of each type per cell (row ``i`` of the graph)."""
    adj = _adj(graph)
    onehot = sp.csr_matrix((np.ones(labels.size), (np.arange(labels.size), labels)), shape=(labels.size, K))
    binary = adj.copy()
    binary.data = np.ones_like(binary.data, dtype=np.float64)
    return np.asarray((binary @ onehot).todense()).astype(np.int64)


def interaction_matrix(adata: AnnData, *, cluster_key: str, graph: SpatialGraph | sp.spmatrix | None = None, connectivity_key: str = "spatial") -> InteractionResult:
    """Counts of graph entries between cell types, and their row-normalised form.

    Parameters
    ----------
    adata
        Table with ``obs[cluster_key]``.
    cluster_key
        Cell-type column (all categories are kept).
    graph
        A :class:`~napari_carspatial.analysis.graph.SpatialGraph` or CSR matrix; default
        ``obsp[f"{connectivity_key}_connectivities"]``.
    connectivity_key
        squidpy's ``connectivity_key``: the graph is ``obsp[f"{connectivity_key}_connectivities"]``
        when ``graph`` is ``None``.

    Returns
    -------
    InteractionResult
        Equal to ``squidpy.gr.interaction_matrix(..., normalized=False / True)``.
    """
    labels, cats = _get_labels(adata, cluster_key)
    if graph is None:
        graph = adata.obsp[f"{connectivity_key}_connectivities"]
    adj = _adj(graph)
    if adj.shape[0] != adata.n_obs:
        raise ValueError(f"graph has {adj.shape[0]} nodes but the table has {adata.n_obs} cells")
    K = len(cats)
    rows = np.repeat(np.arange(adj.shape[0]), np.diff(adj.indptr))
    count = np.bincount(labels[rows] * K + labels[adj.indices], minlength=K * K).reshape(K, K).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = count / count.sum(axis=1, keepdims=True)
    return InteractionResult(count, norm, cats)


def count_interactions(
    adata: AnnData,
    *,
    cluster_key: str,
    graph: SpatialGraph | sp.spmatrix | None = None,
    group_key: str | None = None,
    method: Literal["classic", "histocat", "patch"] = "classic",
    patch_size: int = 3,
    connectivity_key: str = "spatial",
) -> pd.DataFrame:
    """imcRtools ``countInteractions``: mean neighbour counts per (group, from type, to type).

    Parameters
    ----------
    adata
        Table with ``obs[cluster_key]`` (and ``obs[group_key]``).
    cluster_key
        Cell-type column.
    graph
        Graph (SpatialGraph or CSR), directed rows = "from" cells, e.g. a per-image kNN graph
        (``spatial_graph(adata, method="knn", n_neighs=3, library_key=group_key)``).
    group_key
        Image / sample column; ``None``: one group ``"all"``.
    method
        ``"classic"``, ``"histocat"`` or ``"patch"`` (module docstring).
    patch_size
        ``patch``: minimum number of ``b`` neighbours.
    connectivity_key
        squidpy's ``connectivity_key``: the graph is ``obsp[f"{connectivity_key}_connectivities"]``
        when ``graph`` is ``None``.

    Returns
    -------
    pandas.DataFrame
        ``group, from_label, to_label, ct`` in imcRtools' row order (groups in category order,
        then from, then to).
    """
    if method not in ("classic", "histocat", "patch"):
        raise ValueError(f"method must be 'classic', 'histocat' or 'patch', got {method!r}")
    labels, cats = _get_labels(adata, cluster_key)
    if graph is None:
        graph = adata.obsp[f"{connectivity_key}_connectivities"]
    K = len(cats)
    nb = neighbor_type_counts(graph, labels, K)
    if group_key is None:
        groups, gcats = np.zeros(adata.n_obs, np.int64), ["all"]
    else:
        groups, gcats = _get_labels(adata, group_key)
    out = []
    for g, gname in enumerate(gcats):
        in_g = groups == g
        present = np.bincount(labels[in_g], minlength=K) > 0
        for a in range(K):
            sel = in_g & (labels == a)
            for b in range(K):
                ct = np.nan
                if present[a] and present[b]:
                    v = nb[sel, b]
                    if method == "classic":
                        ct = float(v.mean())
                    elif method == "histocat":
                        ct = float(v[v > 0].mean()) if (v > 0).any() else np.nan
                    else:
                        ct = float((v >= patch_size).mean())
                out.append((gname, cats[a], cats[b], ct))
    return pd.DataFrame(out, columns=["group", "from_label", "to_label", "ct"])
