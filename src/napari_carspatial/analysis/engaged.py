"""Engaged cell pairs: the neighbouring sender -> receiver cells behind a ligand-receptor result.

:func:`engaged_pairs` lists, for one ligand-receptor pair and one sender -> receiver type
combination, every edge of the spatial graph from a sender-type cell that expresses the ligand
to a receiver-type cell that expresses the receptor. These are the contacts the neighbour test
(:func:`~napari_carspatial.analysis.ligrec.spatial_ligrec`) scores, drawn on the slide by the
Analysis dock as lines between the two cells' centroids.

*Expresses*: the value is above a threshold. Counts (an integer-valued matrix, RNA): above 0.
Intensities (protein panels, e.g. PD-L1 / PD-1 on the demo): Otsu's threshold on asinh(x / 5)
of all cells, as the gating and the role rules use (:func:`~napari_carspatial.analysis.gating.suggest_threshold`),
or the threshold given. A complex (receptor ``IL18R1_IL18RAP``) is expressed when every member
present in the panel is. No napari, no Qt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["EngagedPairs", "engaged_pairs", "expression_threshold"]


@dataclass
class EngagedPairs:
    """The engaged sender -> receiver cells of one ligand-receptor pair.

    Attributes
    ----------
    table
        One row per engaged edge: ``sender_row``, ``receiver_row`` (rows of the table),
        ``sender_id``, ``receiver_id`` (instance ids), ``ligand_value``, ``receptor_value``.
    segments_yx
        ``(m, 2, 2)`` level-0 pixel (y, x) start (sender) and end (receiver) of each edge.
    summary
        ``n_edges`` (sender -> receiver edges of the graph), ``n_engaged``, ``n_senders``,
        ``n_receivers`` (cells in an engaged edge), the thresholds and genes used.
    """

    table: pd.DataFrame
    segments_yx: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        s = self.summary
        return (f"{s['ligand']} → {s['receptor']}, {s['sender']} → {s['receiver']}: {s['n_engaged']} of "
                f"{s['n_edges']} neighbour pairs engaged ({s['n_senders']} senders, {s['n_receivers']} receivers; "
                f"expressed = above {s['ligand_threshold']:.3g} / {s['receptor_threshold']:.3g})")


def _values(adata, names: list[str], layer: str | None) -> np.ndarray:
    """(n_obs, len(names)) float values of these var names (sparse-safe, only those columns)."""
    import scipy.sparse as sp

    X = adata.layers[layer] if layer is not None else adata.X
    idx = [int(adata.var_names.get_loc(n)) for n in names]
    sub = X[:, idx]
    return np.asarray(sub.toarray() if sp.issparse(sub) else sub, dtype=np.float64).reshape(adata.n_obs, len(idx))


def _is_counts(v: np.ndarray) -> bool:
    f = v[np.isfinite(v)]
    return bool(f.size) and bool(np.all(f >= 0)) and bool(np.all(np.mod(f[: 100_000], 1) == 0))


def expression_threshold(values: np.ndarray, threshold: float | None = None) -> float:
    """The threshold above which a cell expresses: given, else 0 for counts, else Otsu on asinh(x/5)."""
    if threshold is not None:
        return float(threshold)
    v = np.asarray(values, np.float64)
    if _is_counts(v):
        return 0.0
    from napari_carspatial.analysis.gating import suggest_threshold

    try:
        return float(suggest_threshold(v, method="otsu", transform="asinh", cofactor=5.0))
    except ValueError:
        return float(np.nanmax(v)) if np.isfinite(v).any() else 0.0


def _resolve(adata, genes: str) -> list[str]:
    from napari_carspatial.analysis.ligrec import resolve_names

    out = []
    for g in str(genes).split("_"):
        n = resolve_names(list(map(str, adata.var_names)), g)
        if n is not None:
            out.append(n)
    if not out:
        raise KeyError(f"{genes!r} is not in the panel ({', '.join(map(str, adata.var_names[:12]))}, ...)")
    return out


def engaged_pairs(
    adata,
    cluster_key: str,
    *,
    ligand: str,
    receptor: str,
    sender: str,
    receiver: str,
    graph,
    mask: np.ndarray | None = None,
    layer: str | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> EngagedPairs:
    """Edges of ``graph`` from ``sender`` cells expressing ``ligand`` to ``receiver`` cells expressing ``receptor``.

    Parameters
    ----------
    adata
        The cell table (``obsm["spatial"]`` in level-0 px).
    cluster_key
        Cell-type column.
    ligand, receptor
        Gene symbols or panel names (``CD274`` finds ``PD-L1``; complexes joined by ``_``).
    sender, receiver
        Cell types.
    graph
        ``(n, n)`` sparse adjacency over ``adata`` (``mask is None``) or over ``adata[mask]``
        (the region graph :func:`~napari_carspatial.analysis.results.region_graph` returns).
    mask
        The region's cells, ``(n_obs,)`` bool.
    layer
        Expression layer (``X`` by default).
    thresholds
        ``{"ligand": t, "receptor": t}`` raw thresholds (default: see the module docstring).

    Returns
    -------
    EngagedPairs
    """
    import scipy.sparse as sp

    from napari_carspatial.model.conventions import SPATIAL_KEY, instance_ids, spatial_to_yx

    rows = np.arange(adata.n_obs) if mask is None else np.flatnonzero(np.asarray(mask, bool))
    g = sp.csr_matrix(graph)
    if g.shape != (rows.size, rows.size):
        raise ValueError(f"the graph has {g.shape[0]} nodes, the region {rows.size} cells")
    g = ((g + g.T) > 0).tocsr()
    g.setdiag(False)
    g.eliminate_zeros()
    types = adata.obs[cluster_key].astype(str).to_numpy()[rows]
    lig_names, rec_names = _resolve(adata, ligand), _resolve(adata, receptor)
    th = dict(thresholds or {})
    lv = _values(adata, lig_names, layer)
    rv = _values(adata, rec_names, layer)
    lt = [expression_threshold(lv[:, k], th.get("ligand")) for k in range(lv.shape[1])]
    rt = [expression_threshold(rv[:, k], th.get("receptor")) for k in range(rv.shape[1])]
    lpos = np.all(lv > np.asarray(lt)[None, :], axis=1)[rows]
    rpos = np.all(rv > np.asarray(rt)[None, :], axis=1)[rows]
    src = types == str(sender)
    dst = types == str(receiver)
    coo = g.tocoo()
    edge = src[coo.row] & dst[coo.col]
    n_edges = int(edge.sum())
    eng = edge & lpos[coo.row] & rpos[coo.col]
    i, j = coo.row[eng], coo.col[eng]
    try:
        ids = np.asarray(instance_ids(adata))[rows]
    except (KeyError, ValueError):
        ids = np.asarray(adata.obs_names)[rows]
    yx = spatial_to_yx(np.asarray(adata.obsm[SPATIAL_KEY], np.float64)[rows, :2])
    table = pd.DataFrame({"sender_row": rows[i], "receiver_row": rows[j], "sender_id": ids[i], "receiver_id": ids[j],
                          "ligand_value": lv[rows[i]].min(axis=1) if i.size else np.zeros(0),
                          "receptor_value": rv[rows[j]].min(axis=1) if j.size else np.zeros(0)})
    seg = np.stack([yx[i], yx[j]], axis=1) if i.size else np.zeros((0, 2, 2))
    summary = {"ligand": ligand, "receptor": receptor, "sender": str(sender), "receiver": str(receiver),
               "n_edges": n_edges, "n_engaged": int(eng.sum()), "n_senders": int(np.unique(i).size),
               "n_receivers": int(np.unique(j).size), "ligand_genes": lig_names, "receptor_genes": rec_names,
               "ligand_threshold": float(max(lt)), "receptor_threshold": float(max(rt)),
               "n_sender_cells": int(src.sum()), "n_receiver_cells": int(dst.sum())}
    logger.info("engaged pairs %s -> %s (%s -> %s): %d of %d edges", ligand, receptor, sender, receiver,
                summary["n_engaged"], n_edges)
    return EngagedPairs(table, seg, summary)
