"""numba kernels of :mod:`napari_carspatial.analysis.quantify` (one pass over a block of pixels).

Every kernel works on one block (a tile of a whole slide, or a crop around edited cells): the
labels of the block are mapped to *local* indices ``0..k-1`` (``-1`` = background) once, then
pixel counts, coordinate moments, bounding boxes and per-channel sums are accumulated in single
passes. No Python loop visits a cell or a pixel.
"""

from __future__ import annotations

import numba
import numpy as np

#: use a dense id -> local index table while the id range of a block is at most this many
#: times its pixel count (and below 2**27); else ``numpy.unique``
DENSE_RANGE_FACTOR = 8
DENSE_RANGE_MAX = 1 << 27


@numba.njit(cache=True, nogil=True)
def _minmax_nonzero(lab):
    lo = np.int64(-1)
    hi = np.int64(0)
    flat = lab.ravel()
    for i in range(flat.size):
        v = np.int64(flat[i])
        if v != 0:
            if lo < 0 or v < lo:
                lo = v
            if v > hi:
                hi = v
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _local_index_dense(lab, lo, hi):
    """Local index per pixel (first-seen order) and the ids, with a dense table over [lo, hi]."""
    table = np.full(hi - lo + 1, -1, np.int32)
    flat = lab.ravel()
    idx = np.empty(flat.size, np.int32)
    ids = np.empty(min(flat.size, hi - lo + 1), np.int64)
    k = 0
    for i in range(flat.size):
        v = np.int64(flat[i])
        if v == 0:
            idx[i] = -1
            continue
        j = table[v - lo]
        if j < 0:
            j = k
            table[v - lo] = k
            ids[k] = v
            k += 1
        idx[i] = j
    return idx, ids[:k].copy()


def local_index(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map a 2-D label block to (flat local index per pixel, int32, -1 = 0; ids of the k cells)."""
    lab = np.ascontiguousarray(lab)
    if lab.size == 0:
        return np.empty(0, np.int32), np.empty(0, np.int64)
    lo, hi = _minmax_nonzero(lab)
    if lo < 0:
        return np.full(lab.size, -1, np.int32), np.empty(0, np.int64)
    if hi - lo + 1 <= max(DENSE_RANGE_FACTOR * lab.size, 1 << 16) and hi - lo + 1 <= DENSE_RANGE_MAX:
        return _local_index_dense(lab, lo, hi)
    ids, inv = np.unique(lab.ravel(), return_inverse=True)
    inv = inv.astype(np.int32)
    if ids[0] == 0:
        inv -= 1
        ids = ids[1:]
    return inv, ids.astype(np.int64)


@numba.njit(cache=True, nogil=True)
def accumulate_shape(idx, width, k, y0, x0):
    """Per local cell: count, sum y, sum x, sum yy, sum xx, sum xy (relative to the block origin)
    and the bounding box (global, end exclusive)."""
    n = np.zeros(k, np.int64)
    mom = np.zeros((5, k), np.float64)
    bbox = np.empty((4, k), np.int64)
    for j in range(k):
        bbox[0, j] = 1 << 62
        bbox[1, j] = 1 << 62
        bbox[2, j] = -1
        bbox[3, j] = -1
    for i in range(idx.size):
        j = idx[i]
        if j < 0:
            continue
        y = i // width
        x = i - y * width
        n[j] += 1
        fy = np.float64(y)
        fx = np.float64(x)
        mom[0, j] += fy
        mom[1, j] += fx
        mom[2, j] += fy * fy
        mom[3, j] += fx * fx
        mom[4, j] += fy * fx
        if y < bbox[0, j]:
            bbox[0, j] = y
        if x < bbox[1, j]:
            bbox[1, j] = x
        if y >= bbox[2, j]:
            bbox[2, j] = y + 1
        if x >= bbox[3, j]:
            bbox[3, j] = x + 1
    for j in range(k):
        bbox[0, j] += y0
        bbox[2, j] += y0
        bbox[1, j] += x0
        bbox[3, j] += x0
    return n, mom, bbox


@numba.njit(cache=True, nogil=True, parallel=True)
def channel_sums(idx, img, k, sel):
    """Per channel and local cell: the sum of the pixel values (float64), over pixels where
    ``sel`` is true (``sel`` of size 0 means every pixel). ``img`` is (C, N) flattened."""
    c_n = img.shape[0]
    out = np.zeros((c_n, k), np.float64)
    use_sel = sel.size > 0
    for c in numba.prange(c_n):
        row = img[c]
        acc = out[c]
        for i in range(idx.size):
            j = idx[i]
            if j < 0:
                continue
            if use_sel and not sel[i]:
                continue
            acc[j] += np.float64(row[i])
    return out


@numba.njit(cache=True, nogil=True)
def count_where(idx, sel, k):
    n = np.zeros(k, np.int64)
    for i in range(idx.size):
        j = idx[i]
        if j >= 0 and sel[i]:
            n[j] += 1
    return n


@numba.njit(cache=True, nogil=True)
def _cross(oy, ox, ay, ax, by, bx):
    return (ay - oy) * (bx - ox) - (ax - ox) * (by - oy)


@numba.njit(cache=True, nogil=True)
def convex_areas(idx, width, k, bbox_local):
    """Pixel count of each cell's convex hull image, as scikit-image computes it.

    scikit-image (``regionprops`` ``area_convex``) represents every pixel by the 4 mid-points of
    its edges (``offset_coordinates``), takes their convex hull and counts the grid points inside
    or on it. Only the leftmost and rightmost pixel of each row can contribute hull vertices, so
    per cell and half-row level ``y`` (in steps of 0.5) we keep the extreme ``x``, build the left
    and right chains (monotone chain) and count, per row, the integers between them.

    ``bbox_local`` is (4, k) (y0, x0, y1, x1) in block coordinates.
    """
    heights = bbox_local[2] - bbox_local[0]
    off = np.zeros(k + 1, np.int64)
    for j in range(k):
        off[j + 1] = off[j] + heights[j]
    left = np.full(off[k], 1 << 62, np.int64)
    right = np.full(off[k], -1, np.int64)
    for i in range(idx.size):
        j = idx[i]
        if j < 0:
            continue
        y = i // width
        x = i - y * width
        r = off[j] + y - bbox_local[0, j]
        if x < left[r]:
            left[r] = x
        if x > right[r]:
            right[r] = x
    out = np.zeros(k, np.int64)
    tol = 1e-9
    for j in range(k):
        h = heights[j]
        if h <= 0:
            continue
        nlev = 2 * h + 1  # levels y = ymin - 0.5 + 0.5 * t, t = 0..2h
        ly = np.empty(nlev, np.float64)
        lx = np.empty(nlev, np.float64)
        rx = np.empty(nlev, np.float64)
        has = np.zeros(nlev, np.bool_)
        for t in range(nlev):
            lx[t] = 1e300
            rx[t] = -1e300
            ly[t] = bbox_local[0, j] - 0.5 + 0.5 * t
        for rr in range(h):
            a = left[off[j] + rr]
            b = right[off[j] + rr]
            if b < 0:
                continue
            # row rr at level t = 2 rr + 1: edge mid-points x = a - 0.5, b + 0.5
            t = 2 * rr + 1
            has[t] = True
            lx[t] = min(lx[t], a - 0.5)
            rx[t] = max(rx[t], b + 0.5)
            for t2 in (2 * rr, 2 * rr + 2):  # top / bottom mid-points of the extreme pixels
                has[t2] = True
                lx[t2] = min(lx[t2], np.float64(a))
                rx[t2] = max(rx[t2], np.float64(b))
        # left chain: x as a convex-from-the-left function of y (lower hull in (y, x))
        m = 0
        for t in range(nlev):
            if has[t]:
                m += 1
        py = np.empty(m, np.float64)
        pl = np.empty(m, np.float64)
        pr = np.empty(m, np.float64)
        q = 0
        for t in range(nlev):
            if has[t]:
                py[q] = ly[t]
                pl[q] = lx[t]
                pr[q] = rx[t]
                q += 1
        hl_y = np.empty(m, np.float64)
        hl_x = np.empty(m, np.float64)
        nl = 0
        for q in range(m):
            while nl >= 2 and _cross(hl_y[nl - 2], hl_x[nl - 2], hl_y[nl - 1], hl_x[nl - 1], py[q], pl[q]) <= 0:
                nl -= 1
            hl_y[nl] = py[q]
            hl_x[nl] = pl[q]
            nl += 1
        hr_y = np.empty(m, np.float64)
        hr_x = np.empty(m, np.float64)
        nr = 0
        for q in range(m):
            while nr >= 2 and _cross(hr_y[nr - 2], hr_x[nr - 2], hr_y[nr - 1], hr_x[nr - 1], py[q], pr[q]) >= 0:
                nr -= 1
            hr_y[nr] = py[q]
            hr_x[nr] = pr[q]
            nr += 1
        total = 0
        sl = 0
        sr = 0
        for rr in range(h):
            y = np.float64(bbox_local[0, j] + rr)
            if y < hl_y[0] or y > hl_y[nl - 1]:
                continue
            while sl < nl - 2 and hl_y[sl + 1] < y:
                sl += 1
            while sr < nr - 2 and hr_y[sr + 1] < y:
                sr += 1
            dy = hl_y[sl + 1] - hl_y[sl]
            xl = hl_x[sl] if dy == 0 else hl_x[sl] + (hl_x[sl + 1] - hl_x[sl]) * (y - hl_y[sl]) / dy
            dy = hr_y[sr + 1] - hr_y[sr]
            xr = hr_x[sr] if dy == 0 else hr_x[sr] + (hr_x[sr + 1] - hr_x[sr]) * (y - hr_y[sr]) / dy
            lo = np.int64(np.ceil(xl - tol))
            hi = np.int64(np.floor(xr + tol))
            if hi >= lo:
                total += hi - lo + 1
        out[j] = total
    return out


@numba.njit(cache=True, nogil=True)
def cell_order(idx, k):
    """Pixel positions grouped by local cell (counting sort): (offsets (k+1), positions)."""
    cnt = np.zeros(k + 1, np.int64)
    for i in range(idx.size):
        j = idx[i]
        if j >= 0:
            cnt[j + 1] += 1
    for j in range(k):
        cnt[j + 1] += cnt[j]
    pos = np.empty(cnt[k], np.int64)
    fill = cnt[:k].copy()
    for i in range(idx.size):
        j = idx[i]
        if j >= 0:
            pos[fill[j]] = i
            fill[j] += 1
    return cnt, pos


@numba.njit(cache=True, nogil=True, parallel=True)
def channel_medians(img, off, pos, k):
    """Median of each channel over each cell's pixels (``off``/``pos`` from :func:`cell_order`)."""
    c_n = img.shape[0]
    out = np.full((c_n, k), np.nan, np.float64)
    for c in numba.prange(c_n):
        row = img[c]
        for j in range(k):
            a = off[j]
            b = off[j + 1]
            if b <= a:
                continue
            vals = np.empty(b - a, np.float64)
            for q in range(b - a):
                vals[q] = row[pos[a + q]]
            out[c, j] = np.median(vals)
    return out
