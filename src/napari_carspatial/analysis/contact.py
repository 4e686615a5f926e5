"""Contact between cells from the segmentation: named definitions (presets) and phenoptr's counts.

Presets (:data:`CONTACT_PRESETS`), each the definition of a published tool:

``"phenoptr"`` (the default)
    phenoptr's ``count_touching_cells`` (akoyabio/phenoptr, ``R/count_touching_cells.R``): the
    cell images of the two phenotypes are dilated with EBImage's ``makeBrush(3, "diamond")``
    (the 4-neighbourhood cross, radius 1) and ``makeBrush(3 + extra, "diamond")`` (``extra = 0``
    for inForm's one-pixel membrane, 2 for its two-pixel label membrane), and every pixel where
    both dilated images are non-zero names a touching pair. Without types this is: cells ``a !=
    b`` touch when a pixel of ``a`` and a pixel of ``b`` are at most ``1 + w`` apart in city-block
    (L1) distance, ``w = membrane_width_px`` (1 or 2). Masks that share a border touch; masks
    separated by a line of ``w`` background pixels (CellProfiler's one-pixel gap, inForm's
    membrane) touch; cells that meet only at a corner across the line do not.
``"steinbock_expansion"``
    steinbock ``measure neighbors --type expansion --dmax N`` (the graph imcRtools reads with
    ``read_steinbock``): every mask grown into the background by ``N`` px (each background pixel
    within Euclidean distance ``N`` takes its nearest label,
    :func:`skimage.segmentation.expand_labels`), then 4-adjacent labels. ``expand_px`` = ``N``
    (default 4).
``"expand"``
    the same growth by ``expand_px`` px (default 2), then 8-adjacent (``connectivity=2``) or
    4-adjacent (``connectivity=1``) labels: this project's earlier default.

imcRtools' own ``buildSpatialGraph(type = "expansion", threshold = t)`` is not a mask rule: it
links cells whose *centroids* are at most ``t`` apart, which is
:func:`~napari_carspatial.analysis.graph.spatial_graph` with ``method="radius"``.

:func:`count_touching` reproduces ``count_touching_cells``' three numbers per pair of phenotypes
(A cells touching a B cell, B cells touching an A cell, touching pairs) on a label image.

The mask is read tile by tile (numpy or dask), each tile with a halo wide enough that expansion,
dilation and adjacency are exact across tile borders; only pairs whose first pixel lies in the
tile's core are counted. Pairs come from array shifts and ``np.unique`` on encoded pairs: no Python
loop over cells or pixels.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from napari_carspatial.analysis.graph import SpatialGraph

if TYPE_CHECKING:
    from collections.abc import Sequence

    import dask.array as da
    from anndata import AnnData

logger = logging.getLogger(__name__)

__all__ = ["CONTACT_PRESETS", "DEFAULT_CONTACT", "contact_graph", "contact_pairs", "count_touching",
           "resolve_contact"]

#: name -> (defaults, the published definition it reproduces)
CONTACT_PRESETS: dict[str, dict] = {
    "phenoptr": {"defaults": {"membrane_width_px": 1},
                 "reference": "phenoptr count_touching_cells (akoyabio/phenoptr): diamond dilation, "
                              "cells <= 1 + membrane width px apart (city-block)"},
    "steinbock_expansion": {"defaults": {"expand_px": 4, "connectivity": 1},
                            "reference": "steinbock measure neighbors --type expansion --dmax N "
                                         "(read by imcRtools read_steinbock): Euclidean growth by N px, "
                                         "4-adjacent"},
    "expand": {"defaults": {"expand_px": 2, "connectivity": 2},
               "reference": "skimage.segmentation.expand_labels by expand_px, then 8-adjacent (connectivity=2) "
                            "or 4-adjacent (connectivity=1)"},
}
#: the preset used when none is named
DEFAULT_CONTACT = "phenoptr"


def resolve_contact(preset: str | None = None, *, expand_px: int | None = None, connectivity: int | None = None,
                    membrane_width_px: int | None = None) -> dict:
    """The full parameters of a contact definition: ``{"preset", "expand_px", "connectivity",
    "membrane_width_px"}`` (the ones that apply).

    ``preset=None``: ``"expand"`` when ``expand_px`` or ``connectivity`` is given (the earlier
    API, whose defaults were ``expand_px=0``, ``connectivity=2``), else :data:`DEFAULT_CONTACT`.
    """
    if preset is None and (expand_px is not None or connectivity is not None):
        # the earlier API: contact_pairs(labels, expand_px=.., connectivity=..), defaults 0 and 2
        preset = "expand"
        expand_px = 0 if expand_px is None else expand_px
        connectivity = 2 if connectivity is None else connectivity
    preset = str(DEFAULT_CONTACT if preset is None else preset).lower().replace("-", "_")
    if preset not in CONTACT_PRESETS:
        raise ValueError(f"unknown contact definition {preset!r}; choose from {', '.join(CONTACT_PRESETS)}")
    p = {"preset": preset, **CONTACT_PRESETS[preset]["defaults"]}
    if preset == "phenoptr":
        if membrane_width_px is not None:
            p["membrane_width_px"] = int(membrane_width_px)
        if p["membrane_width_px"] not in (1, 2):
            raise ValueError(f"membrane_width_px must be 1 or 2 (inForm's membrane maps), got {membrane_width_px}")
    else:
        if expand_px is not None:
            p["expand_px"] = int(expand_px)
        if connectivity is not None:
            p["connectivity"] = int(connectivity)
        if p["expand_px"] < 0:
            raise ValueError(f"expand_px must be >= 0, got {expand_px}")
        if p["connectivity"] not in (1, 2):
            raise ValueError(f"connectivity must be 1 or 2, got {connectivity}")
    return p


def _shifts(preset: dict) -> list[tuple[int, int]]:
    """Offsets (dy, dx), one of each +/- pair, whose label pairs are the contacts."""
    if preset["preset"] == "phenoptr":
        r = 1 + preset["membrane_width_px"]
        return [(dy, dx) for dy in range(r + 1) for dx in range(-r, r + 1)
                if abs(dy) + abs(dx) <= r and (dy > 0 or dx > 0)]
    return [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if preset["connectivity"] == 2 else [])


def _halo(preset: dict) -> int:
    if preset["preset"] == "phenoptr":
        return 1 + preset["membrane_width_px"]
    # expansion reaches expand_px, and labels up to 2 * expand_px away decide who wins a pixel
    return 2 * preset["expand_px"] + 1


def _tile_pairs(tile: np.ndarray, core: tuple[int, int, int, int], shifts) -> np.ndarray:
    """Unique (a, b) label pairs, a < b, at the given offsets, with the first pixel in ``core``."""
    y0, y1, x0, x1 = core
    t = tile.astype(np.int64, copy=False)
    out = []
    H, W = t.shape
    for dy, dx in shifts:
        # first pixel (y, x) in core, second (y + dy, x + dx) inside the tile
        ya, yb = y0, min(y1, H - dy)
        xa, xb = max(x0, -dx), min(x1, W - dx)
        if ya >= yb or xa >= xb:
            continue
        a = t[ya:yb, xa:xb]
        b = t[ya + dy:yb + dy, xa + dx:xb + dx]
        m = (a != b) & (a > 0) & (b > 0)
        if m.any():
            aa, bb = a[m], b[m]
            out.append(np.stack([np.minimum(aa, bb), np.maximum(aa, bb)], axis=1))
    if not out:
        return np.empty((0, 2), np.int64)
    return np.unique(np.concatenate(out), axis=0)


def _tiles(labels, tile: int, halo: int):
    H, W = (int(s) for s in labels.shape)
    for ty in range(0, H, tile):
        for tx in range(0, W, tile):
            ya, yb = max(0, ty - halo), min(H, ty + tile + halo)
            xa, xb = max(0, tx - halo), min(W, tx + tile + halo)
            block = np.asarray(labels[ya:yb, xa:xb])
            core = (ty - ya, min(ty + tile, H) - ya, tx - xa, min(tx + tile, W) - xa)
            yield block, core


def _check_labels(labels) -> None:
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image, got shape {tuple(labels.shape)}")


def contact_pairs(labels, *, preset: str | None = None, expand_px: int | None = None, connectivity: int | None = None,
                  membrane_width_px: int | None = None, tile: int = 2048) -> np.ndarray:
    """Unique pairs of touching label ids ``(a, b)``, ``a < b``, as an ``(m, 2)`` int64 array.

    Parameters
    ----------
    labels
        2-D integer label image (numpy or dask), 0 = background.
    preset
        A key of :data:`CONTACT_PRESETS`; ``None``: ``"phenoptr"``, or ``"expand"`` when
        ``expand_px`` / ``connectivity`` is given.
    expand_px, connectivity
        ``"expand"`` / ``"steinbock_expansion"``: growth into the background (px) and 1 (4-) or
        2 (8-neighbourhood) adjacency.
    membrane_width_px
        ``"phenoptr"``: 1 or 2 (inForm's one- and two-pixel membranes).
    tile
        Tile edge in pixels (memory bound: one tile plus halo at a time).
    """
    _check_labels(labels)
    p = resolve_contact(preset, expand_px=expand_px, connectivity=connectivity, membrane_width_px=membrane_width_px)
    shifts = _shifts(p)
    parts = []
    for block, core in _tiles(labels, tile, _halo(p)):
        if p["preset"] != "phenoptr" and p["expand_px"] > 0:
            from skimage.segmentation import expand_labels

            block = expand_labels(block, distance=p["expand_px"])
        parts.append(_tile_pairs(block, core, shifts))
    if not parts:
        return np.empty((0, 2), np.int64)
    return np.unique(np.concatenate(parts), axis=0)


def _rows_of(adata):
    """``(ids sorted, order)`` to map mask labels to table rows."""
    from napari_carspatial.model.conventions import instance_ids

    ids = instance_ids(adata)
    order = np.argsort(ids, kind="stable")
    return ids, ids[order], order


def _lookup(sids: np.ndarray, order: np.ndarray, v: np.ndarray):
    n = sids.size
    pos = np.clip(np.searchsorted(sids, v), 0, max(n - 1, 0))
    ok = (sids[pos] == v) if n else np.zeros(v.shape, bool)
    return order[pos], ok


def contact_graph(
    adata: AnnData,
    labels: np.ndarray | da.Array,
    *,
    preset: str | None = None,
    expand_px: int | None = None,
    connectivity: int | None = None,
    membrane_width_px: int | None = None,
    tile: int = 2048,
) -> SpatialGraph:
    """Contact graph over the table's cells from a label image.

    Parameters
    ----------
    adata
        Table whose instance-id column (``uns["spatialdata_attrs"]["instance_key"]``, default
        ``cell_id``) holds each row's mask label.
    labels
        Level-0 label image (numpy or dask, ``Sample.labels[0]``).
    preset
        A name of :data:`CONTACT_PRESETS`; the default is phenoptr's touching rule.
    expand_px
        Dilate each cell by this many pixels first (see :func:`contact_pairs`).
    connectivity
        4 or 8: which neighbouring pixels touch (see :func:`contact_pairs`).
    membrane_width_px
        Membrane width of the label image (see :func:`contact_pairs`).
    tile
        Tile edge in pixels.

    Returns
    -------
    SpatialGraph
        Symmetric CSR connectivities (float32 ones, no self loops), distances between centroids
        (pixels), ``method="contact"``, ``params`` = the resolved definition. Labels without a
        table row are ignored.
    """
    t0 = time.perf_counter()
    p = resolve_contact(preset, expand_px=expand_px, connectivity=connectivity, membrane_width_px=membrane_width_px)
    ids, sids, order = _rows_of(adata)
    n = ids.size
    pairs = contact_pairs(labels, tile=tile, **dict(p.items()))
    ra, oka = _lookup(sids, order, pairs[:, 0])
    rb, okb = _lookup(sids, order, pairs[:, 1])
    keep = oka & okb
    ra, rb = ra[keep], rb[keep]
    r = np.concatenate([ra, rb])
    c = np.concatenate([rb, ra])
    adj = sp.csr_matrix((np.ones(r.size, np.float32), (r, c)), shape=(n, n))
    adj.sum_duplicates()
    adj.data[:] = 1.0
    adj.sort_indices()
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2] if "spatial" in adata.obsm else None
    if xy is not None:
        rr = np.repeat(np.arange(n), np.diff(adj.indptr))
        d = np.linalg.norm(xy[rr] - xy[adj.indices], axis=1)
        dst = sp.csr_matrix((d, adj.indices.copy(), adj.indptr.copy()), shape=(n, n))
    else:
        dst = sp.csr_matrix((n, n))
    logger.info("contact_graph: %d cells, %d contacts (%s) in %.2f s", n, adj.nnz // 2,
                ", ".join(f"{k}={v}" for k, v in p.items()), time.perf_counter() - t0)
    from napari_carspatial.model.conventions import pixel_size_um

    return SpatialGraph(adj, dst, "contact", dict(p), pixel_size_um(adata))


# --------------------------------------------------------------------------- phenoptr counts
def _diamond(r: int) -> np.ndarray:
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (np.abs(y) + np.abs(x)) <= r


def _typed_pairs(labels, sides: dict[str, np.ndarray], pairs: list[tuple[str, str]], width: int,
                 tile: int) -> dict[tuple[str, str], np.ndarray]:
    """phenoptr's ``find_touching_cell_pairs`` for many pairs at once.

    ``sides``: ``{name: lut}`` (bool per label: is the cell on this side). Per tile each side's
    cell image is dilated once by the cross (A role) and once by the ``width`` diamond (B role);
    every pixel where A's and B's dilated images are both non-zero names the pair (max-dilated
    labels, as EBImage's grey dilation). Returns ``{(a, b): unique (a_label, b_label) pairs}``.
    """
    from scipy import ndimage

    fa, fb = _diamond(1), _diamond(width)
    need_a = {a for a, _ in pairs}
    need_b = {b for _, b in pairs}
    parts: dict[tuple[str, str], list] = {p: [] for p in pairs}
    n_lut = next(iter(sides.values())).size
    for block, (y0, y1, x0, x1) in _tiles(labels, tile, width):
        blk = np.asarray(block)
        lab = np.where((blk > 0) & (blk < n_lut), blk, 0).astype(np.int64 if n_lut > 2**31 - 1 else np.int32)
        dil_a, dil_b = {}, {}
        for name, lut in sides.items():
            if name not in need_a and name not in need_b:
                continue
            img = np.where(lut[lab], lab, 0)
            if not img.any():
                continue
            if name in need_a:
                dil_a[name] = ndimage.grey_dilation(img, footprint=fa, mode="constant", cval=0)[y0:y1, x0:x1]
            if name in need_b:
                dil_b[name] = (dil_a[name] if (width == 1 and name in dil_a) else
                               ndimage.grey_dilation(img, footprint=fb, mode="constant", cval=0)[y0:y1, x0:x1])
        for a, b in pairs:
            da, db = dil_a.get(a), dil_b.get(b)
            if da is None or db is None:
                continue
            m = (da > 0) & (db > 0)
            if m.any():
                parts[(a, b)].append(np.unique(np.stack([da[m], db[m]], axis=1).astype(np.int64), axis=0))
    return {p: (np.unique(np.concatenate(v), axis=0) if v else np.empty((0, 2), np.int64)) for p, v in parts.items()}


def _side(spec) -> tuple[str, list[str]]:
    if isinstance(spec, str):
        return spec, [spec]
    names = [str(s) for s in spec]
    return "+".join(names), names


def count_touching(
    adata: AnnData,
    labels: np.ndarray | da.Array,
    *,
    cluster_key: str | None = None,
    pairs: Sequence[tuple[str | Sequence[str], str | Sequence[str]]] | None = None,
    membrane_width_px: int = 1,
    region: np.ndarray | None = None,
    tile: int = 1024,
) -> pd.DataFrame:
    """Touching cells per pair of phenotypes, as phenoptr's ``count_touching_cells`` counts them.

    Parameters
    ----------
    adata
        Table with the cell types and the mask label of each row (instance-id column).
    labels
        Level-0 label image (numpy or dask), the cells' masks.
    cluster_key
        Cell-type column; ``None``: found by
        :func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`.
    pairs
        ``[(A, B), ...]``; each side a type name or a list of type names (their union, like
        phenoptr's ``phenotype_rules``). ``None``: every pair of two different types present.
    membrane_width_px
        1 (phenoptr's ``extra_size = 0``: both images dilated by the 3-pixel diamond) or 2
        (inForm's two-pixel label membrane: the B image by the 5-pixel diamond).
    region
        ``(n_obs,)`` bool: only these cells take part (phenoptr's ``categories``); cells
        outside are neither counted nor touched.
    tile
        Tile edge in pixels (each side's cell image is dilated once per tile for all pairs).

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``phenotype1, phenotype2, total1, total2, p1_touch_p2, p2_touch_p1,
        touch_pairs, note`` (phenoptr's columns). ``note`` says when a phenotype has no cells
        (the counts are then 0, as phenoptr reports them) or when the two sides share cells.

    Notes
    -----
    For two sides without common cells this is phenoptr's algorithm exactly, including its
    grey-level (maximum) dilation: where several cells of one side meet within one kernel, only
    the largest label is paired at that pixel. When the sides share cells (``("CD8 T", "CD8 T")``)
    phenoptr's images overlap and every cell "touches" itself; here a cell never touches itself
    and the pairs are the ``"phenoptr"`` contact rule's pairs ``a != b`` (cells at most
    ``1 + membrane_width_px`` px apart, city-block).
    """
    from napari_carspatial.analysis.roles import _type_column
    from napari_carspatial.model.cell_types import resolve_cell_type_key

    _check_labels(labels)
    if membrane_width_px not in (1, 2):
        raise ValueError(f"membrane_width_px must be 1 or 2, got {membrane_width_px}")
    key = resolve_cell_type_key(adata, cluster_key).key
    codes, cats = _type_column(adata, key)
    keep = np.ones(adata.n_obs, bool) if region is None else np.asarray(region, bool)
    if keep.shape != (adata.n_obs,):
        raise ValueError(f"region has shape {keep.shape}, expected ({adata.n_obs},)")
    if pairs is None:
        present = [c for i, c in enumerate(cats) if np.any((codes == i) & keep)]
        pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1:]]
    elif isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        pairs = [pairs]
    ids, sids, order = _rows_of(adata)
    max_label = int(ids.max()) if ids.size else 0
    index = {c: i for i, c in enumerate(cats)}
    luts: dict[str, np.ndarray] = {}
    sel: dict[str, np.ndarray] = {}
    spec = []
    for pa, pb in pairs:
        (na, ta), (nb, tb) = _side(pa), _side(pb)
        for name, ts in ((na, ta), (nb, tb)):
            if name not in sel:
                sel[name] = np.isin(codes, [index[t] for t in ts if t in index]) & keep
                lut = np.zeros(max_label + 1, bool)
                lut[ids[sel[name]]] = True
                luts[name] = lut
        spec.append((na, nb))
    distinct = [(a, b) for a, b in spec if sel[a].any() and sel[b].any() and not np.any(sel[a] & sel[b])]
    found = _typed_pairs(labels, luts, list(dict.fromkeys(distinct)), int(membrane_width_px), tile) if distinct else {}
    rows = []
    all_pairs = None
    for na, nb in spec:
        tot_a, tot_b = int(sel[na].sum()), int(sel[nb].sum())
        notes = []
        for name, tot in ((na, tot_a), (nb, tot_b)):
            if tot == 0:
                notes.append(f"no {name} cells" + ("" if name in index or "+" in name else
                                                   f" ({name!r} is not a type in obs[{key!r}])"))
        if tot_a == 0 or tot_b == 0:
            rows.append((na, nb, tot_a, tot_b, 0, 0, 0, "; ".join(notes)))
            continue
        if (na, nb) in found:
            tp = found[(na, nb)]
            n_pairs = len(tp)
        else:
            if all_pairs is None:
                p = contact_pairs(labels, preset="phenoptr", membrane_width_px=membrane_width_px, tile=tile)
                all_pairs = p[(p <= max_label).all(1)]
            both = np.concatenate([all_pairs, all_pairs[:, ::-1]])
            tp = both[luts[na][both[:, 0]] & luts[nb][both[:, 1]]]
            # an unordered pair counts once even when both cells are on both sides
            n_pairs = len(np.unique(np.sort(tp, axis=1), axis=0))
            notes.append(f"{na} and {nb} share {int(np.sum(sel[na] & sel[nb]))} cells; a cell never touches itself")
        rows.append((na, nb, tot_a, tot_b, int(np.unique(tp[:, 0]).size), int(np.unique(tp[:, 1]).size),
                     int(n_pairs), "; ".join(notes)))
    df = pd.DataFrame(rows, columns=["phenotype1", "phenotype2", "total1", "total2", "p1_touch_p2", "p2_touch_p1",
                                     "touch_pairs", "note"])
    df.attrs["params"] = {"cluster_key": key, "membrane_width_px": int(membrane_width_px),
                          "definition": CONTACT_PRESETS["phenoptr"]["reference"]}
    return df
