"""Segmentation edit operations on a label crop, headless (numpy / scipy / scikit-image).

Each operation changes a numpy label crop *in place* and returns the set of affected ids. New
cells get ids from a ``new_id()`` callable (the editor hands out ``max id + 1``; ids are never
reused). Coordinates are (y, x) pixels of the crop.

:func:`merge_cells`, :func:`split_cell_by_line`, :func:`split_cell_by_seeds`,
:func:`delete_cells`, :func:`draw_cell`, :func:`grow_cell`, :func:`shrink_cell`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["delete_cells", "draw_cell", "grow_cell", "merge_cells", "shrink_cell", "split_cell_by_line",
           "split_cell_by_seeds"]


# =========================================================================== operations
def _ids(ids) -> np.ndarray:
    return np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).ravel())


def _box(mask: np.ndarray, pad: int = 0) -> tuple[slice, slice] | None:
    """Bounding box of ``mask`` grown by ``pad`` pixels (clipped to the crop), None when empty.

    Operations work on the box of the cells they change: one cell of a 4096 x 4096 region is
    then a few hundred pixels, not 16 million (a split took 21 s on a whole region)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad)),
            slice(max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad)))


def merge_cells(lab: np.ndarray, ids: Iterable[int], *, into: int | None = None) -> set[int]:
    """Merge ``ids`` into one cell (the largest in the crop unless ``into`` is given).

    One-pixel background gaps between the merged cells (pixels whose 4 neighbours include two of
    the merged cells) are filled, so the merged cell is one piece.
    """
    ids = _ids(ids)
    ids = ids[ids > 0]
    if ids.size < 2:
        return set()
    sel = np.isin(lab, ids)
    box = _box(sel, 1)
    if box is None:
        return set()
    sub, sel = lab[box], sel[box]          # a view: writes go to ``lab``
    if into is None:
        vals, counts = np.unique(sub[sel], return_counts=True)
        into = int(vals[np.argmax(counts)])
    sub[sel] = into
    gap = (sub == 0)
    m = sub == into
    up = np.zeros_like(m)
    down = np.zeros_like(m)
    left = np.zeros_like(m)
    right = np.zeros_like(m)
    up[1:] = m[:-1]
    down[:-1] = m[1:]
    left[:, 1:] = m[:, :-1]
    right[:, :-1] = m[:, 1:]
    sub[gap & ((up & down) | (left & right))] = into
    return {int(i) for i in ids}


def delete_cells(lab: np.ndarray, ids: Iterable[int]) -> set[int]:
    """Set the pixels of ``ids`` to background."""
    ids = _ids(ids)
    ids = ids[ids > 0]
    sel = np.isin(lab, ids)
    present = set(np.unique(lab[sel]).tolist())
    lab[sel] = 0
    return {int(i) for i in present}


def _polygon_mask(shape, polygon_yx) -> np.ndarray:
    from skimage.draw import polygon, polygon_perimeter

    p = np.asarray(polygon_yx, dtype=float)
    rr, cc = polygon(p[:, 0], p[:, 1], shape=shape)
    m = np.zeros(shape, bool)
    m[rr, cc] = True
    rr, cc = polygon_perimeter(np.round(p[:, 0]).astype(int), np.round(p[:, 1]).astype(int), shape=shape, clip=False)
    ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    m[rr[ok], cc[ok]] = True
    return m


def draw_cell(lab: np.ndarray, polygon_yx, new_id: int, *, overwrite: bool = False) -> set[int]:
    """Fill a polygon (crop (y, x) vertices) with the new id ``new_id``.

    Without ``overwrite`` only background pixels are filled (neighbours keep theirs).
    """
    m = _polygon_mask(lab.shape, polygon_yx)
    affected = set()
    if overwrite:
        affected |= {int(i) for i in np.unique(lab[m]) if i}
    else:
        m &= lab == 0
    if not m.any():
        return set()
    lab[m] = new_id
    return affected | {int(new_id)}


def _relabel_pieces(lab: np.ndarray, cell_id: int, pieces: np.ndarray, n: int, new_id: Callable[[], int]) -> set[int]:
    """Give ``pieces`` (1..n inside the cell) ids: the largest keeps ``cell_id``, others new ids
    (handed out in piece order), in one vectorised write."""
    if n < 2:
        return set()
    counts = np.bincount(pieces.ravel(), minlength=n + 1)
    counts[0] = 0
    keep = int(np.argmax(counts))
    out = {int(cell_id)}
    mapping = np.zeros(n + 1, dtype=np.int64)
    for p in range(1, n + 1):
        if p == keep or counts[p] == 0:
            continue
        mapping[p] = int(new_id())
        out.add(int(mapping[p]))
    sel = mapping[pieces] > 0
    lab[sel] = mapping[pieces[sel]].astype(lab.dtype, copy=False)
    return out


def split_cell_by_line(lab: np.ndarray, cell_id: int, line_yx, new_id: Callable[[], int]) -> set[int]:
    """Cut ``cell_id`` along a polyline (crop (y, x) vertices, e.g. a napari Shapes path).

    The line is rasterised one pixel wide (8-connected, so the pieces are 4-disconnected), the
    cell minus the line is split into 4-connected pieces; the largest keeps ``cell_id``, the
    others get new ids, and line pixels go to the nearest piece (area is conserved).
    """
    from scipy import ndimage as ndi
    from skimage.draw import line

    if int(cell_id) <= 0:
        return set()
    box = _box(lab == cell_id, 1)
    if box is None:
        return set()
    sub = lab[box]                          # a view: writes go to ``lab``
    cell = sub == cell_id
    off = np.array([box[0].start, box[1].start])
    p = np.round(np.asarray(line_yx, dtype=float)).astype(int) - off
    cut = np.zeros(sub.shape, bool)
    for (y0, x0), (y1, x1) in zip(p[:-1], p[1:], strict=False):
        rr, cc = line(y0, x0, y1, x1)
        ok = (rr >= 0) & (rr < sub.shape[0]) & (cc >= 0) & (cc < sub.shape[1])
        cut[rr[ok], cc[ok]] = True
    pieces, n = ndi.label(cell & ~cut)
    if n < 2:
        return set()
    # line pixels of the cell join the nearest piece (every piece lies in the box: same result
    # as on the whole crop)
    _, (iy, ix) = ndi.distance_transform_edt(pieces == 0, return_indices=True)
    filled = np.where(cell, pieces[iy, ix], 0)
    return _relabel_pieces(sub, cell_id, filled, n, new_id)


def split_cell_by_seeds(lab: np.ndarray, cell_id: int, seeds_yx, new_id: Callable[[], int],
                        intensity: np.ndarray | None = None) -> set[int]:
    """Split ``cell_id`` by a watershed from ``seeds_yx`` (crop (y, x), one per new cell).

    The landscape is the inverted, lightly smoothed ``intensity`` (the nuclear channel: DAPI
    by default in the GUI), or the inverted distance to the cell border when ``intensity`` is
    ``None``. The basin with the most pixels keeps ``cell_id``.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    if int(cell_id) <= 0:
        return set()
    # the box of the cell with room for the smoothing (sigma 1, truncated at 4 sigma)
    box = _box(lab == cell_id, 5)
    if box is None:
        return set()
    sub = lab[box]
    cell = sub == cell_id
    off = np.array([box[0].start, box[1].start])
    seeds = np.round(np.asarray(seeds_yx, dtype=float)).astype(int).reshape(-1, 2) - off
    markers = np.zeros(sub.shape, np.int32)
    k = 0
    for y, x in seeds:
        if 0 <= y < sub.shape[0] and 0 <= x < sub.shape[1] and cell[y, x]:
            k += 1
            markers[y, x] = k
    if k < 2:
        return set()
    if intensity is not None:
        land = -ndi.gaussian_filter(np.asarray(intensity, dtype=np.float64)[box], 1.0)
    else:
        land = -ndi.distance_transform_edt(cell)
    pieces = watershed(land, markers, mask=cell)
    return _relabel_pieces(sub, cell_id, pieces, k, new_id)


def grow_cell(lab: np.ndarray, cell_id: int, n: int) -> set[int]:
    """Grow ``cell_id`` by ``n`` px (Euclidean) into the background (never over other cells)."""
    from scipy import ndimage as ndi

    if n <= 0:
        return set()
    box = _box(lab == cell_id, int(np.ceil(n)) + 1)
    if box is None:
        return set()
    sub = lab[box]
    cell = sub == cell_id
    d = ndi.distance_transform_edt(~cell)
    sub[(d <= n) & (sub == 0)] = cell_id
    return {int(cell_id)}


def shrink_cell(lab: np.ndarray, cell_id: int, n: int) -> set[int]:
    """Shrink ``cell_id`` by ``n`` px (pixels within ``n`` of the outside become background).

    The crop edge counts as inside (the crop must contain the cell with a margin).
    """
    from scipy import ndimage as ndi

    if n <= 0:
        return set()
    box = _box(lab == cell_id, int(np.ceil(n)) + 1)
    if box is None:
        return set()
    sub = lab[box]
    cell = sub == cell_id
    # the crop edge counts as inside; the box's other sides are > n away from the cell
    d = ndi.distance_transform_edt(np.pad(cell, 1, constant_values=True))[1:-1, 1:-1]
    sub[cell & (d <= n)] = 0
    return {int(cell_id)}
