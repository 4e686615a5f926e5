"""Per-cell distances as phenoptr defines them: ``find_nearest_distance`` and ``count_within``.

* :func:`nearest_distances` = phenoptr ``find_nearest_distance`` (``R/distance_funcs.R``): for
  every cell and every type, the distance to the nearest *other* cell of that type - phenoptr
  takes "the minimum distance > 0", so the cell itself and any cell at exactly the same position
  are skipped - and that cell's id (``Cell ID <type>``). NaN (and id -1) when the type has no
  other cell. Ties go to the first cell in table order, like R's ``which.min``.
* :func:`count_within` = phenoptr ``count_within`` (``R/average_counts.R``): per radius, the
  number of ``from`` cells, of ``to`` cells, of ``from`` cells with at least one ``to`` cell within
  the radius (distance ``<= radius``), and the mean number of ``to`` cells within the radius of a
  ``from`` cell (``within_mean``, NaN without ``from`` cells). A cell never counts itself (as
  phenoptr's ``count_within_detail``: "we don't want to count self"); other cells at distance 0
  do.

Distances are in µm: level-0 pixel centroids times the pixel size (``pixel_size_um=`` overrides
the table's). phenoptr reads inForm positions in pixels and divides by ``pixels_per_micron``
(2 by default, i.e. 0.5 µm per pixel). KD-trees (scipy), no per-cell Python.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)

__all__ = ["count_within", "nearest_distances"]


def _coords(adata, pixel_size_um):
    from napari_carspatial.analysis.graph import resolve_pixel_size

    px = resolve_pixel_size(adata, pixel_size_um)
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    if px is None:
        logger.warning("no pixel size known: distances are in pixels, not µm (pass pixel_size_um)")
        return xy, None
    return xy * px, px


def _types(adata, cluster_key):
    from napari_carspatial.analysis.roles import _type_column
    from napari_carspatial.model.cell_types import resolve_cell_type_key

    key = resolve_cell_type_key(adata, cluster_key).key
    codes, cats = _type_column(adata, key)
    return key, codes, cats


def _nearest_positive(tree, q: np.ndarray, n_target: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query point: the smallest distance > 0 to a tree point and the tree index (first in
    index order among ties); ``(inf, -1)`` when there is none."""
    nq = q.shape[0]
    best_d = np.full(nq, np.inf)
    best_i = np.full(nq, -1, dtype=np.int64)
    todo = np.arange(nq)
    k = min(4, n_target)
    while todo.size:
        d, i = tree.query(q[todo], k=k)
        d = d.reshape(todo.size, k)
        i = i.reshape(todo.size, k)
        pos = d > 0
        dd = np.where(pos, d, np.inf)
        dmin = dd.min(axis=1)
        # among the candidates at the minimum, the smallest index
        cand = np.where(pos & (dd == dmin[:, None]), i, np.iinfo(np.int64).max)
        imin = cand.min(axis=1)
        # done when the k-th neighbour is farther than the minimum (no unseen tie) or all were seen
        done = (k >= n_target) | (d[:, -1] > dmin)
        ok = done & np.isfinite(dmin)
        best_d[todo[ok]] = dmin[ok]
        best_i[todo[ok]] = imin[ok]
        todo = todo[~done]
        k = min(2 * k, n_target)
    return best_d, best_i


def nearest_distances(adata: AnnData, *, cluster_key: str | None = None, pixel_size_um: float | None = None,
                      types: Sequence[str] | None = None) -> pd.DataFrame:
    """Distance from every cell to the nearest other cell of each type (phenoptr's
    ``find_nearest_distance``).

    Parameters
    ----------
    adata
        Table with ``obsm["spatial"]`` (level-0 px) and the cell types.
    cluster_key
        Cell-type column; ``None``: found by
        :func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`.
    pixel_size_um
        µm per pixel (overrides the table's); without one the distances are in pixels.
    types
        Types to measure to (default every type present, in category order). A type absent from
        the table gives NaN, as in phenoptr.

    Returns
    -------
    pandas.DataFrame
        One row per cell in ``adata`` order (index ``obs_names``), columns ``Distance to <type>``
        (µm) and ``Cell ID <type>`` (the instance id of that cell, -1 when there is none).
    """
    from scipy.spatial import cKDTree

    from napari_carspatial.model.conventions import instance_ids

    key, codes, cats = _types(adata, cluster_key)
    xy, _ = _coords(adata, pixel_size_um)
    try:
        ids = instance_ids(adata)
    except KeyError:
        ids = np.arange(adata.n_obs, dtype=np.int64)
    present = [c for i, c in enumerate(cats) if np.any(codes == i)]
    types = present if types is None else [str(t) for t in types]
    cols: dict[str, np.ndarray] = {}
    index = {c: i for i, c in enumerate(cats)}
    for t in types:
        sel = np.flatnonzero(codes == index[t]) if t in index else np.empty(0, np.int64)
        if sel.size == 0:
            cols[f"Distance to {t}"] = np.full(adata.n_obs, np.nan)
            cols[f"Cell ID {t}"] = np.full(adata.n_obs, -1, dtype=np.int64)
            continue
        d, j = _nearest_positive(cKDTree(xy[sel]), xy, sel.size)
        cols[f"Distance to {t}"] = np.where(np.isfinite(d), d, np.nan)
        cols[f"Cell ID {t}"] = np.where(j >= 0, ids[sel[np.maximum(j, 0)]], -1)
    df = pd.DataFrame(cols, index=adata.obs_names.copy())
    df.attrs["params"] = {"cluster_key": key, "pixel_size_um": pixel_size_um}
    return df


def count_within(adata: AnnData, *, cluster_key: str | None = None, pairs: Sequence[tuple[str | Sequence[str], str | Sequence[str]]] | None = None, radius: float | Sequence[float] = (10.0, 25.0),
                 pixel_size_um: float | None = None, region: np.ndarray | None = None) -> pd.DataFrame:
    """phenoptr's ``count_within``: ``to`` cells within ``radius`` µm of each ``from`` cell.

    Parameters
    ----------
    adata
        Table with ``obsm["spatial"]`` and the cell types.
    cluster_key
        Cell-type column (found by name when ``None``).
    pairs
        ``[(from, to), ...]``, each side a type or a list of types (their union). ``None``: every
        ordered pair of types present (including a type with itself).
    radius
        One radius or several (µm; phenoptr's examples use 10 and 25).
    pixel_size_um
        µm per pixel (overrides the table's).
    region
        ``(n_obs,)`` bool: only these cells take part (phenoptr's ``category``).

    Returns
    -------
    pandas.DataFrame
        ``from, to, radius, from_count, to_count, from_with, within_mean, note``; one row per pair
        and radius. ``within_mean`` is NaN (as phenoptr's ``NA``) with a ``note`` when either side
        has no cell.
    """
    from scipy.spatial import cKDTree

    key, codes, cats = _types(adata, cluster_key)
    xy, _ = _coords(adata, pixel_size_um)
    radii = np.atleast_1d(np.asarray(radius, dtype=np.float64))
    if radii.size == 0 or np.any(~(radii > 0)):
        raise ValueError(f"radius must be one or more positive numbers, got {radius!r}")
    keep = np.ones(adata.n_obs, bool) if region is None else np.asarray(region, bool)
    index = {c: i for i, c in enumerate(cats)}
    present = [c for i, c in enumerate(cats) if np.any((codes == i) & keep)]
    if pairs is None:
        pairs = [(a, b) for a in present for b in present]
    elif isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        pairs = [pairs]
    rows = []
    trees: dict[tuple, object] = {}
    for pf, pt in pairs:
        nf, tf = (pf, [pf]) if isinstance(pf, str) else ("+".join(map(str, pf)), [str(x) for x in pf])
        nt, tt = (pt, [pt]) if isinstance(pt, str) else ("+".join(map(str, pt)), [str(x) for x in pt])
        sf = np.isin(codes, [index[t] for t in tf if t in index]) & keep
        st = np.isin(codes, [index[t] for t in tt if t in index]) & keep
        fi, ti = np.flatnonzero(sf), np.flatnonzero(st)
        for r in radii:
            note = ""
            if fi.size == 0:
                rows.append((nf, nt, float(r), 0, int(ti.size), 0, np.nan, f"no {nf} cells"))
                continue
            if ti.size == 0:
                rows.append((nf, nt, float(r), int(fi.size), 0, 0, np.nan, f"no {nt} cells"))
                continue
            tk = tuple(tt)
            if tk not in trees:
                trees[tk] = cKDTree(xy[ti])
            cnt = np.asarray(trees[tk].query_ball_point(xy[fi], r, return_length=True), dtype=np.int64)
            cnt = cnt - st[fi]  # a from cell that is also a to cell does not count itself
            rows.append((nf, nt, float(r), int(fi.size), int(ti.size), int(np.count_nonzero(cnt > 0)),
                         float(cnt.mean()), note))
    df = pd.DataFrame(rows, columns=["from", "to", "radius", "from_count", "to_count", "from_with", "within_mean",
                                     "note"])
    df.attrs["params"] = {"cluster_key": key, "pixel_size_um": pixel_size_um, "radius": radii.tolist()}
    return df
