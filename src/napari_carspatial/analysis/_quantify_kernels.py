"""numba kernels of :mod:`napari_carspatial.analysis.quantify` (one pass over a block of pixels).

Every kernel works on one block (a tile of a whole slide, or a crop around edited cells): the
labels of the block are mapped to *local* indices ``0..k-1`` (``-1`` = background) once, then
pixel counts, coordinate moments, bounding boxes and per-channel sums are accumulated in single
passes. No Python loop visits a cell or a pixel.

One module (543 lines) because every kernel follows the same block convention (local indices
``0..k-1``, ``-1`` = background, from :func:`local_index`) and the run-length kernels are compiled
twice (parallel and serial) from the same Python sources; they form one algorithm with
:mod:`napari_carspatial.analysis.quantify` and change together.
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
    return convex_from_extremes(left, right, off, k, bbox_local)


@numba.njit(cache=True, nogil=True)
def convex_from_extremes(left, right, off, k, bbox_local):
    """Convex-hull pixel counts from each cell's row extremes (see :func:`convex_areas`)."""
    heights = bbox_local[2] - bbox_local[0]
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


# =========================================================================== run-length path
# A block is cut into *runs*: maximal stretches of one row with the same non-zero label (and,
# with a nuclear mask, the same nucleus flag). Shape moments, boxes and row extremes follow per
# run in closed form; channel sums read each pixel once and add one value per run (integer
# images are summed in int64: exact, and no floating-point add chain), a block of channels per
# thread so that the run list is read once per block. Indices are unsigned: numba then emits no
# negative-index wrap-around in the inner loops.

#: rows per band of the parallel run finder
RUN_BAND_ROWS = 16


def _run_count_py(lab, flag, use_flag, band):  # pragma: no cover - numba
    """Number of foreground runs in each band of ``band`` rows."""
    H, W = lab.shape
    nb = (H + band - 1) // band
    out = np.zeros(nb, np.int64)
    for b in numba.prange(nb):
        c = 0
        for y in range(b * band, min(H, (b + 1) * band)):
            row = lab[y]
            if row[0] != 0:
                c += 1
            if use_flag:
                frow = flag[y]
                for x in range(1, W):
                    if row[x] != 0 and (row[x] != row[x - 1] or frow[x] != frow[x - 1]):
                        c += 1
            else:
                for x in range(1, W):
                    if row[x] != 0 and row[x] != row[x - 1]:
                        c += 1
        out[b] = c
    return out


def _run_fill_py(lab, flag, use_flag, band, offsets, run_start, run_len, run_lab, run_flag):  # pragma: no cover
    """Fill the foreground runs (flat start, length, label, flag) of each band at ``offsets[band]``."""
    H, W = lab.shape
    nb = (H + band - 1) // band
    for b in numba.prange(nb):
        k = offsets[b]
        for y in range(b * band, min(H, (b + 1) * band)):
            row = lab[y]
            start = 0
            for x in range(1, W + 1):
                brk = x == W
                if not brk:
                    brk = row[x] != row[x - 1]
                    if use_flag and not brk:
                        brk = flag[y, x] != flag[y, x - 1]
                if brk:
                    if row[start] != 0:
                        run_start[k] = np.uint64(y * W + start)
                        run_len[k] = x - start
                        run_lab[k] = np.int64(row[start])
                        run_flag[k] = flag[y, start] if use_flag else np.uint8(0)
                        k += 1
                    start = x


@numba.njit(cache=True, nogil=True)
def run_shape(run_start, run_len, local, width, k):  # pragma: no cover - numba
    """Per local cell, from the runs: count, sum y, sum x, sum yy, sum xx, sum xy (block
    coordinates, float64: exact for integer sums below 2**53) and the box (end exclusive)."""
    n = np.zeros(k, np.int64)
    mom = np.zeros((5, k), np.float64)
    bbox = np.empty((4, k), np.int64)
    for j in range(k):
        bbox[0, j] = 1 << 62
        bbox[1, j] = 1 << 62
        bbox[2, j] = -1
        bbox[3, j] = -1
    for r in range(run_len.shape[0]):
        L = np.int64(run_len[r])
        j = local[r]
        off = np.int64(run_start[r])
        y = off // width
        x0 = off - y * width
        n[j] += L
        fy = np.float64(y)
        fL = np.float64(L)
        fx0 = np.float64(x0)
        sx = fL * fx0 + fL * (fL - 1.0) / 2.0
        sxx = fL * fx0 * fx0 + fx0 * fL * (fL - 1.0) + (fL - 1.0) * fL * (2.0 * fL - 1.0) / 6.0
        mom[0, j] += fy * fL
        mom[1, j] += sx
        mom[2, j] += fy * fy * fL
        mom[3, j] += sxx
        mom[4, j] += fy * sx
        if y < bbox[0, j]:
            bbox[0, j] = y
        if x0 < bbox[1, j]:
            bbox[1, j] = x0
        if y + 1 > bbox[2, j]:
            bbox[2, j] = y + 1
        if x0 + L > bbox[3, j]:
            bbox[3, j] = x0 + L
    return n, mom, bbox


def _run_sums_py(img, run_start, run_len, local, run_flag, k, split, integer, n_blocks):  # pragma: no cover
    """Per channel and local cell, the sum over its pixels (``img`` (C, N) flattened), and with
    ``split`` also over its flagged (nucleus) runs. Every pixel is read once; ``n_blocks``
    blocks of channels run in parallel, each going once through the run list."""
    c_n = img.shape[0]
    out = np.zeros((c_n, k), np.float64)
    out_f = np.zeros((c_n, k if split else 0), np.float64)
    n_runs = run_len.shape[0]
    cb = (c_n + n_blocks - 1) // n_blocks
    for blk in numba.prange(n_blocks):
        c0 = blk * cb
        c1 = min(c_n, c0 + cb)
        for r in range(n_runs):
            a = run_start[r]
            e = a + np.uint64(run_len[r])
            j = local[r]
            fl = split and run_flag[r] != 0
            for c in range(c0, c1):
                row = img[c]
                if integer:
                    s = np.int64(0)
                    for q in range(a, e):
                        s += np.int64(row[q])
                    v = np.float64(s)
                else:
                    t = 0.0
                    for q in range(a, e):
                        t += np.float64(row[q])
                    v = t
                out[c, j] += v
                if fl:
                    out_f[c, j] += v
    return out, out_f


@numba.njit(cache=True, nogil=True)
def run_count_flag(run_len, local, run_flag, k):  # pragma: no cover - numba
    n = np.zeros(k, np.int64)
    for r in range(run_len.shape[0]):
        if run_flag[r]:
            n[local[r]] += run_len[r]
    return n


@numba.njit(cache=True, nogil=True)
def run_extremes(run_start, run_len, local, width, k, bbox_local):  # pragma: no cover - numba
    """Leftmost / rightmost pixel of each cell in each of its rows (for :func:`convex_from_extremes`)."""
    heights = bbox_local[2] - bbox_local[0]
    off = np.zeros(k + 1, np.int64)
    for j in range(k):
        off[j + 1] = off[j] + heights[j]
    left = np.full(off[k], 1 << 62, np.int64)
    right = np.full(off[k], -1, np.int64)
    for r in range(run_len.shape[0]):
        L = np.int64(run_len[r])
        j = local[r]
        pos = np.int64(run_start[r])
        y = pos // width
        x0 = pos - y * width
        q = off[j] + y - bbox_local[0, j]
        if x0 < left[q]:
            left[q] = x0
        if x0 + L - 1 > right[q]:
            right[q] = x0 + L - 1
    return left, right, off


@numba.njit(cache=True, nogil=True)
def run_index(run_start, run_len, local, n_pixels):  # pragma: no cover - numba
    """The per-pixel local index (-1 = background) from the runs."""
    idx = np.full(n_pixels, -1, np.int32)
    for r in range(run_len.shape[0]):
        a = np.int64(run_start[r])
        for q in range(a, a + run_len[r]):
            idx[q] = local[r]
    return idx


@numba.njit(cache=True, nogil=True)
def hash_local(run_lab):  # pragma: no cover - numba
    """Local cell index of every run and the sorted ids, through an open-addressing hash table
    (any id range; one probe sequence per run instead of sorting the runs)."""
    n = run_lab.shape[0]
    bits = 1
    while (1 << bits) < 2 * n + 1:
        bits += 1
    size = 1 << bits
    mask = size - 1
    shift = np.uint64(64 - bits)
    keys = np.zeros(size, np.int64)  # 0 = empty (labels are non-zero)
    vals = np.empty(size, np.int32)
    local = np.empty(n, np.int32)
    ids = np.empty(n, np.int64)
    k = 0
    for r in range(n):
        v = run_lab[r]
        h = np.int64((np.uint64(v) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
        while keys[h] != 0 and keys[h] != v:
            h = (h + 1) & mask
        if keys[h] == 0:
            keys[h] = v
            vals[h] = k
            ids[k] = v
            k += 1
        local[r] = vals[h]
    ids = ids[:k].copy()
    order = np.argsort(ids)
    rank = np.empty(k, np.int32)
    for i in range(k):
        rank[order[i]] = i
    for r in range(n):
        local[r] = rank[local[r]]
    return local, ids[order]


# parallel versions for big blocks, serial ones for small crops (waking the thread pool costs
# more than the work there, and much more on a loaded machine)
run_count = numba.njit(cache=True, nogil=True, parallel=True)(_run_count_py)
run_fill = numba.njit(cache=True, nogil=True, parallel=True)(_run_fill_py)
run_sums = numba.njit(cache=True, nogil=True, parallel=True)(_run_sums_py)
run_count_serial = numba.njit(cache=True, nogil=True)(_run_count_py)
run_fill_serial = numba.njit(cache=True, nogil=True)(_run_fill_py)
run_sums_serial = numba.njit(cache=True, nogil=True)(_run_sums_py)
#: blocks with fewer pixels than this use the serial kernels
PARALLEL_MIN_PIXELS = 1 << 18
