"""The segmentation operations before issue 14 (whole-crop versions), kept verbatim as the
reference the box-restricted operations of :mod:`napari_carspatial.editing.seg_ops` must equal."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


def ref_ids(ids) -> np.ndarray:
    return np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).ravel())


def ref_merge_cells(lab: np.ndarray, ids: Iterable[int], *, into: int | None = None) -> set[int]:
    """Merge ``ids`` into one cell (the largest in the crop unless ``into`` is given).

    One-pixel background gaps between the merged cells (pixels whose 4 neighbours include two of
    the merged cells) are filled, so the merged cell is one piece.
    """
    ids = ref_ids(ids)
    ids = ids[ids > 0]
    if ids.size < 2:
        return set()
    sel = np.isin(lab, ids)
    if into is None:
        vals, counts = np.unique(lab[sel], return_counts=True)
        into = int(vals[np.argmax(counts)])
    lab[sel] = into
    gap = (lab == 0)
    m = lab == into
    up = np.zeros_like(m)
    down = np.zeros_like(m)
    left = np.zeros_like(m)
    right = np.zeros_like(m)
    up[1:] = m[:-1]
    down[:-1] = m[1:]
    left[:, 1:] = m[:, :-1]
    right[:, :-1] = m[:, 1:]
    lab[gap & ((up & down) | (left & right))] = into
    return {int(i) for i in ids}


def ref_delete_cells(lab: np.ndarray, ids: Iterable[int]) -> set[int]:
    """Set the pixels of ``ids`` to background."""
    ids = ref_ids(ids)
    ids = ids[ids > 0]
    sel = np.isin(lab, ids)
    present = set(np.unique(lab[sel]).tolist())
    lab[sel] = 0
    return {int(i) for i in present}


def ref_polygon_mask(shape, polygon_yx) -> np.ndarray:
    from skimage.draw import polygon, polygon_perimeter

    p = np.asarray(polygon_yx, dtype=float)
    rr, cc = polygon(p[:, 0], p[:, 1], shape=shape)
    m = np.zeros(shape, bool)
    m[rr, cc] = True
    rr, cc = polygon_perimeter(np.round(p[:, 0]).astype(int), np.round(p[:, 1]).astype(int), shape=shape, clip=False)
    ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    m[rr[ok], cc[ok]] = True
    return m


def ref_draw_cell(lab: np.ndarray, polygon_yx, new_id: int, *, overwrite: bool = False) -> set[int]:
    """Fill a polygon (crop (y, x) vertices) with the new id ``new_id``.

    Without ``overwrite`` only background pixels are filled (neighbours keep theirs).
    """
    m = ref_polygon_mask(lab.shape, polygon_yx)
    affected = set()
    if overwrite:
        affected |= {int(i) for i in np.unique(lab[m]) if i}
    else:
        m &= lab == 0
    if not m.any():
        return set()
    lab[m] = new_id
    return affected | {int(new_id)}


def ref_relabel_pieces(lab: np.ndarray, cell_id: int, pieces: np.ndarray, n: int, new_id: Callable[[], int]) -> set[int]:
    """Give ``pieces`` (1..n inside the cell) ids: the largest keeps ``cell_id``, others new ids."""
    if n < 2:
        return set()
    counts = np.bincount(pieces.ravel(), minlength=n + 1)
    counts[0] = 0
    keep = int(np.argmax(counts))
    out = {int(cell_id)}
    for p in range(1, n + 1):
        if p == keep or counts[p] == 0:
            continue
        nid = int(new_id())
        lab[pieces == p] = nid
        out.add(nid)
    return out


def ref_split_cell_by_line(lab: np.ndarray, cell_id: int, line_yx, new_id: Callable[[], int]) -> set[int]:
    """Cut ``cell_id`` along a polyline (crop (y, x) vertices, e.g. a napari Shapes path).

    The line is rasterised one pixel wide (8-connected, so the pieces are 4-disconnected), the
    cell minus the line is split into 4-connected pieces; the largest keeps ``cell_id``, the
    others get new ids, and line pixels go to the nearest piece (area is conserved).
    """
    from scipy import ndimage as ndi
    from skimage.draw import line

    cell = lab == cell_id
    if not cell.any():
        return set()
    p = np.round(np.asarray(line_yx, dtype=float)).astype(int)
    cut = np.zeros(lab.shape, bool)
    for (y0, x0), (y1, x1) in zip(p[:-1], p[1:], strict=False):
        rr, cc = line(y0, x0, y1, x1)
        ok = (rr >= 0) & (rr < lab.shape[0]) & (cc >= 0) & (cc < lab.shape[1])
        cut[rr[ok], cc[ok]] = True
    pieces, n = ndi.label(cell & ~cut)
    if n < 2:
        return set()
    # line pixels of the cell join the nearest piece
    _, (iy, ix) = ndi.distance_transform_edt(pieces == 0, return_indices=True)
    filled = np.where(cell, pieces[iy, ix], 0)
    return ref_relabel_pieces(lab, cell_id, filled, n, new_id)


def ref_split_cell_by_seeds(lab: np.ndarray, cell_id: int, seeds_yx, new_id: Callable[[], int],
                        intensity: np.ndarray | None = None) -> set[int]:
    """Split ``cell_id`` by a watershed from ``seeds_yx`` (crop (y, x), one per new cell).

    The landscape is the inverted, lightly smoothed ``intensity`` (the nuclear channel: DAPI
    by default in the GUI), or the inverted distance to the cell border when ``intensity`` is
    ``None``. The basin with the most pixels keeps ``cell_id``.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    cell = lab == cell_id
    seeds = np.round(np.asarray(seeds_yx, dtype=float)).astype(int).reshape(-1, 2)
    markers = np.zeros(lab.shape, np.int32)
    k = 0
    for y, x in seeds:
        if 0 <= y < lab.shape[0] and 0 <= x < lab.shape[1] and cell[y, x]:
            k += 1
            markers[y, x] = k
    if k < 2:
        return set()
    if intensity is not None:
        land = -ndi.gaussian_filter(np.asarray(intensity, dtype=np.float64), 1.0)
    else:
        land = -ndi.distance_transform_edt(cell)
    pieces = watershed(land, markers, mask=cell)
    return ref_relabel_pieces(lab, cell_id, pieces, k, new_id)


def ref_grow_cell(lab: np.ndarray, cell_id: int, n: int) -> set[int]:
    """Grow ``cell_id`` by ``n`` px (Euclidean) into the background (never over other cells)."""
    from scipy import ndimage as ndi

    cell = lab == cell_id
    if not cell.any() or n <= 0:
        return set()
    d = ndi.distance_transform_edt(~cell)
    lab[(d <= n) & (lab == 0)] = cell_id
    return {int(cell_id)}


def ref_shrink_cell(lab: np.ndarray, cell_id: int, n: int) -> set[int]:
    """Shrink ``cell_id`` by ``n`` px (pixels within ``n`` of the outside become background).

    The crop edge counts as inside (the crop must contain the cell with a margin).
    """
    from scipy import ndimage as ndi

    cell = lab == cell_id
    if not cell.any() or n <= 0:
        return set()
    d = ndi.distance_transform_edt(np.pad(cell, 1, constant_values=True))[1:-1, 1:-1]
    lab[cell & (d <= n)] = 0
    return {int(cell_id)}
