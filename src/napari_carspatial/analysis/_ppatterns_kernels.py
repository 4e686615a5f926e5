"""numba kernels of :mod:`napari_carspatial.analysis.ppatterns` (Ripley's L, G, F).

Every kernel takes one point pattern (float64 coordinates) and a *prefix bucketing* of its
points: with ``sizes = s_0 < s_1 < ...`` the points ``0 .. s_b - 1`` form pattern ``b``, and
``bucket[i]`` is the smallest ``b`` with ``i < s_b``. A pattern of ``n`` independent uniform
points restricted to its first ``s`` points is a pattern of ``s`` independent uniform points,
so one simulated pattern of ``max(n_A)`` points serves every cell type at once (each type gets
the prefix of its own size). The observed statistics use the same kernels with one bucket.

Support: ``support = linspace(0, max_dist, n_steps)`` (float64, ``support[0] == 0``).

* ``pair_hist``: unordered pairs per (bucket of the pair, bin), bin ``b(d) = #{k: support[k] <= d}``
  (so ``d < support[k]`` iff ``b(d) <= k``; squidpy's strict ``<``); pairs with ``b = n_steps``
  are beyond the support.
* ``nn_hist``: per bucket, the nearest other point of each point of the prefix, binned with
  ``#{k: support[k] < d}`` (so ``d <= support[k]`` iff bin ``<= k``).
* ``empty_space_hist``: per bucket, the distance from each query point to the nearest point of
  the prefix, binned like ``nn_hist``.

Distances are ``sqrt(dx*dx + dy*dy)`` in float64 without contraction, as scipy's ``pdist``;
bins come from ``d / step`` and are checked against ``support`` where ``d`` is near an edge, so
they are exact.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from napari_carspatial.analysis._grid import cell_of, ring_span, row_span


@numba.njit(cache=True, nogil=True)
def _bin_right(d, support, inv_step):  # pragma: no cover - numba
    """``#{k : support[k] <= d}``."""
    n = support.shape[0]
    b = int(d * inv_step) + 1
    if b > n:
        b = n
    if b < 1:
        b = 1
    while b > 1 and support[b - 1] > d:
        b -= 1
    while b < n and support[b] <= d:
        b += 1
    return b


@numba.njit(cache=True, nogil=True)
def _bin_left(d, support, inv_step):  # pragma: no cover - numba
    """``#{k : support[k] < d}``."""
    n = support.shape[0]
    b = int(d * inv_step)
    if b > n:
        b = n
    if b < 0:
        b = 0
    while b > 0 and support[b - 1] >= d:
        b -= 1
    while b < n and support[b] < d:
        b += 1
    return b


@numba.njit(cache=True, nogil=True)
def _grid(x, y, n, cell):  # pragma: no cover - numba
    """Counting sort of the first ``n`` points into square cells: order, cell_start, cx, cy, nx, ny, x0, y0."""
    x0 = np.inf
    y0 = np.inf
    x1 = -np.inf
    y1 = -np.inf
    for i in range(n):
        x0 = min(x0, x[i])
        y0 = min(y0, y[i])
        x1 = max(x1, x[i])
        y1 = max(y1, y[i])
    if n == 0:
        x0 = 0.0
        y0 = 0.0
        x1 = 0.0
        y1 = 0.0
    # at most ~4 cells per point
    while (math.floor((x1 - x0) / cell) + 1) * (math.floor((y1 - y0) / cell) + 1) > 4 * n + 16:
        cell *= 2.0
    nx = int(math.floor((x1 - x0) / cell)) + 1
    ny = int(math.floor((y1 - y0) / cell)) + 1
    cx = np.empty(n, np.int64)
    cy = np.empty(n, np.int64)
    cnt = np.zeros(nx * ny + 1, np.int64)
    for i in range(n):
        a = min(int((x[i] - x0) / cell), nx - 1)
        b = min(int((y[i] - y0) / cell), ny - 1)
        cx[i] = a
        cy[i] = b
        cnt[b * nx + a + 1] += 1
    for g in range(nx * ny):
        cnt[g + 1] += cnt[g]
    fill = cnt[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        g = cy[i] * nx + cx[i]
        order[fill[g]] = i
        fill[g] += 1
    return order, cnt, cx, cy, nx, ny, x0, y0, cell


def pair_params(support: np.ndarray, dtype) -> np.ndarray:
    """``par`` of :func:`pair_hist` for coordinates of ``dtype`` (float32 or float64)."""
    dtype = np.dtype(dtype)
    # far above the rounding of d / step, in bins (a few ulps of n_steps)
    eps = max(1e-5, 4e-7 * support.size) if dtype == np.float32 else max(1e-9, 1e-15 * support.size)
    return np.array([(support.size - 1) / support[-1], eps, 1 - eps, support.size + 0.5], dtype=dtype)


@numba.njit(cache=True, nogil=True, inline="always")
def _pair_run(xi, yi, bi, xr, yr, br, buf, h4, kk, nb1_32, ns_32, inv_step, eps, one_eps, fb, nb1,
              support):  # pragma: no cover - numba
    """Pairs of one point with a contiguous run of points (views: non-negative indices)."""
    c = xr.shape[0]
    for q in range(c):  # vectorised: distance and bin, -1 near a bin edge
        dx = xi - xr[q]
        dy = yi - yr[q]
        f = min(math.sqrt(dx * dx + dy * dy) * inv_step, fb)
        fl = np.floor(f)
        g = f - fl
        v = max(bi, br[q]) * nb1_32 + min(np.int32(fl) + np.int32(1), ns_32)
        buf[q] = v if (g >= eps) & (g <= one_eps) else np.int32(-1)
    n4 = c // 4
    for k in range(n4):
        for u in range(4):
            q = 4 * k + u
            v = buf[q]
            if v < 0:
                v = _exact_pair_bin(xi, yi, bi, xr[q], yr[q], br[q], nb1, support, inv_step)
            h4[u * kk + v] += 1
    for q in range(4 * n4, c):
        v = buf[q]
        if v < 0:
            v = _exact_pair_bin(xi, yi, bi, xr[q], yr[q], br[q], nb1, support, inv_step)
        h4[v] += 1


@numba.njit(cache=True, nogil=True)
def _exact_pair_bin(xi, yi, bi, xj, yj, bj, nb1, support, inv_step):  # pragma: no cover - numba
    """Exact (bucket, bin) index of a pair near a bin edge (the distance recomputed: rare)."""
    dx = xi - xj
    dy = yi - yj
    d = math.sqrt(dx * dx + dy * dy)
    return max(bi, bj) * nb1 + _bin_right(np.float64(d), support, np.float64(inv_step))


@numba.njit(cache=True, nogil=True)
def pair_hist(x, y, bucket, n_buckets, support, n, par):  # pragma: no cover - numba
    """``(n_buckets, n_steps + 1)`` int64 unordered pair counts of the first ``n`` points.

    ``x, y`` float64 (exact, for observed patterns) or float32 (simulated patterns: twice the
    SIMD width; a relative 6e-8 rounding of the distance, far below the simulation noise);
    ``par`` (same dtype): ``[(n_steps - 1) / max_dist, eps, 1 - eps, n_steps + 0.5]`` with
    ``eps`` the margin (in bins) within which a bin edge is checked exactly (:func:`pair_params`).
    """
    n_steps = support.shape[0]
    nb1 = n_steps + 1
    out = np.zeros(n_buckets * nb1, np.int64)
    if n < 2 or n_steps < 2:
        return out.reshape(n_buckets, nb1)
    rmax = support[n_steps - 1]
    order, cs, cx, cy, nx, ny, _x0, _y0, cell = _grid(x, y, n, max(rmax / 4.0, 1e-300))
    mr = rmax / cell
    m = int(math.ceil(mr))
    halfw = np.empty(m + 1, np.int64)
    for d in range(m + 1):
        e = max(d - 1, 0)
        halfw[d] = min(m, int(math.floor(math.sqrt(max(mr * mr - e * e, 0.0)))) + 1)
    xs = np.empty(n, x.dtype)
    ys = np.empty(n, y.dtype)
    bs = np.empty(n, np.int32)
    for p in range(n):
        xs[p] = x[order[p]]
        ys[p] = y[order[p]]
        bs[p] = bucket[order[p]]
    kk = out.shape[0]
    h4 = np.zeros(4 * kk, np.int64)
    inv_step = par[0]
    eps = par[1]
    one_eps = par[2]
    fb = par[3]
    nb1_32 = np.int32(nb1)
    ns_32 = np.int32(n_steps)
    buf = np.empty(n, np.int32)
    for pos in range(n):
        i = order[pos]
        xi = xs[pos]
        yi = ys[pos]
        bi = bs[pos]
        gx = cx[i]
        gy = cy[i]
        for dyc in range(min(m, ny - 1 - gy) + 1):
            w = halfw[dyc]
            p0, p1 = row_span(cs, nx, gy + dyc, gx - w, gx + w)
            if dyc == 0:
                p0 = pos + 1
            if p1 > p0:
                _pair_run(xi, yi, bi, xs[p0:p1], ys[p0:p1], bs[p0:p1], buf, h4, kk, nb1_32, ns_32,
                          inv_step, eps, one_eps, fb, nb1, support)
    for k in range(kk):
        out[k] = h4[k] + h4[kk + k] + h4[2 * kk + k] + h4[3 * kk + k]
    return out.reshape(n_buckets, nb1)


@numba.njit(cache=True, nogil=True)
def _flush_pairs(out, b, h2, h1, nb1):  # pragma: no cover - numba
    """Add the two-pair table ``h2[v1 * nb1 + v2]`` and the single counts ``h1`` to ``out[b]``; zero them."""
    for v1 in range(nb1):
        for v2 in range(nb1):
            c = h2[v1 * nb1 + v2]
            if c:
                out[b, v1] += c
                out[b, v2] += c
                h2[v1 * nb1 + v2] = 0
        out[b, v1] += h1[v1]
        h1[v1] = 0


@numba.njit(cache=True, nogil=True)
def pair_hist_all(x, y, bucket, n_buckets, support, n, par):  # pragma: no cover - numba
    """:func:`pair_hist` for a support that spans the window: every pair, by index, no grid.

    Equal to :func:`pair_hist` on bins ``0 .. n_steps - 1`` (the last column, beyond the
    support, holds every remaining pair here, only the nearby ones there). ``bucket`` must be
    non-decreasing (prefix buckets): pair ``j < i`` belongs to ``bucket[i]``, so each point
    counts its pairs with the points before it into one bucket, and the bins of two pairs are
    added to a ``(n_steps + 1)^2`` table in one increment (half the scattered increments of
    :func:`pair_hist`, whose bucket of a pair varies pair by pair; the table stays in L1).
    Per simulated pattern of 2772 points at squidpy's default support: 5.0 -> 3.4 ms CPU.
    """
    n_steps = support.shape[0]
    nb1 = n_steps + 1
    out = np.zeros((n_buckets, nb1), np.int64)
    if n < 2 or n_steps < 2:
        return out
    h2 = np.zeros(nb1 * nb1, np.int32)  # <= n^2 / 4 pairs of pairs per bucket: int32 up to n ~ 90k
    h1 = np.zeros(nb1, np.int64)
    buf = np.empty(n, np.int32)
    inv_step = par[0]
    eps = par[1]
    one_eps = par[2]
    fb = par[3]
    ns_32 = np.int32(n_steps)
    cur = bucket[0]
    for i in range(1, n):
        bi = bucket[i]
        if bi != cur:
            _flush_pairs(out, cur, h2, h1, nb1)
            cur = bi
        xi = x[i]
        yi = y[i]
        for j in range(i):  # vectorised: distance and bin, -1 near a bin edge
            dx = xi - x[j]
            dy = yi - y[j]
            f = min(math.sqrt(dx * dx + dy * dy) * inv_step, fb)
            t = np.int32(f)
            g = f - np.float32(t)  # t < 2^24: exact in either precision
            v = min(t + np.int32(1), ns_32)
            buf[j] = v if (g >= eps) & (g <= one_eps) else np.int32(-1)
        for k in range(i // 2):
            v1 = buf[2 * k]
            v2 = buf[2 * k + 1]
            if (v1 | v2) < 0:  # rare: a distance near a bin edge, recomputed exactly
                if v1 < 0:
                    v1 = _exact_pair_bin(xi, yi, 0, x[2 * k], y[2 * k], 0, nb1, support, inv_step)
                if v2 < 0:
                    v2 = _exact_pair_bin(xi, yi, 0, x[2 * k + 1], y[2 * k + 1], 0, nb1, support, inv_step)
            h2[v1 * nb1 + v2] += 1
        if i & 1:
            v = buf[i - 1]
            if v < 0:
                v = _exact_pair_bin(xi, yi, 0, x[i - 1], y[i - 1], 0, nb1, support, inv_step)
            h1[v] += 1
    _flush_pairs(out, cur, h2, h1, nb1)
    return out


@numba.njit(cache=True, nogil=True)
def hull_points(u, a, e1, e2, cum):  # pragma: no cover - numba
    """Uniform points in a fan of triangles from ``u`` (``(m, 3)`` uniform numbers): triangle
    ``searchsorted(cum, u0, "right")`` (clipped), then ``(s, t) = (u1, u2)`` folded into it.
    Same arithmetic as the numpy expression it replaces (one pass instead of eight temporaries)."""
    m = u.shape[0]
    nt = cum.shape[0]
    x = np.empty(m, np.float64)
    y = np.empty(m, np.float64)
    for i in range(m):
        u0 = u[i, 0]
        lo = 0
        hi = nt
        while lo < hi:  # searchsorted(side="right")
            mid = (lo + hi) >> 1
            if cum[mid] <= u0:
                lo = mid + 1
            else:
                hi = mid
        tri = min(lo, nt - 1)
        s = u[i, 1]
        t = u[i, 2]
        if s + t > 1:
            s = 1 - s
            t = 1 - t
        x[i] = a[0] + s * e1[tri, 0] + t * e2[tri, 0]
        y[i] = a[1] + s * e1[tri, 1] + t * e2[tri, 1]
    return x, y


def spans_window(support: np.ndarray, area: float) -> bool:
    """Whether pair counting should take every pair (:func:`pair_hist_all`) rather than the grid:
    the support's disc covers the window's area (most pairs are within the support)."""
    return bool(np.pi * float(support[-1]) ** 2 >= float(area))


@numba.njit(cache=True, nogil=True)
def _inv_step(support):  # pragma: no cover - numba
    """``(n_steps - 1) / max_dist`` (0 for a degenerate support)."""
    n_steps = support.shape[0]
    return (n_steps - 1) / support[n_steps - 1] if n_steps > 1 and support[n_steps - 1] > 0 else 0.0


@numba.njit(cache=True, nogil=True)
def nn_hist(x, y, sizes, support):  # pragma: no cover - numba
    """``(len(sizes), n_steps + 1)``: per prefix, nearest-other-point distances binned (left).

    Each prefix on its own: :func:`nn_hist_joint` of its points as one bucket."""
    out = np.zeros((sizes.shape[0], support.shape[0] + 1), np.int64)
    for b in range(sizes.shape[0]):
        n = sizes[b]
        out[b] = nn_hist_joint(x[:n], y[:n], np.zeros(n, np.int64), 1, support)[0]
    return out


@numba.njit(cache=True, nogil=True)
def empty_space_hist(x, y, sizes, qx, qy, support):  # pragma: no cover - numba
    """``(len(sizes), n_steps + 1)``: per prefix, query-to-nearest-point distances binned (left).

    Each prefix on its own: :func:`empty_space_hist_joint` of its points as one bucket."""
    out = np.zeros((sizes.shape[0], support.shape[0] + 1), np.int64)
    for b in range(sizes.shape[0]):
        n = sizes[b]
        out[b] = empty_space_hist_joint(x[:n], y[:n], np.zeros(n, np.int64), 1, qx, qy, support)[0]
    return out


@numba.njit(cache=True, nogil=True)
def _nn_joint(qx, qy, qb, xs, ys, bs, cs, nx, ny, x0, y0, cell, skip, best):  # pragma: no cover - numba
    """Nearest point of every prefix ``b >= qb`` at once (one ring search), into ``best`` (d^2).

    A candidate of bucket ``bj`` belongs to every prefix ``b >= max(qb, bj)``; ``best`` is
    non-increasing in ``b`` (nested prefixes), so an update stops at the first prefix it does not
    improve. The search ends when the sparsest needed prefix (``qb``) cannot improve any more.
    """
    nb = best.shape[0]
    for b in range(qb, nb):
        best[b] = np.inf
    cx = cell_of(qx, x0, cell, nx)
    cy = cell_of(qy, y0, cell, ny)
    for r in range(max(nx, ny) + 1):
        for t in range(4 * r + 2):
            p0, p1 = ring_span(cs, nx, ny, cx, cy, r, t)
            for p in range(p0, p1):
                if p == skip:
                    continue
                dx = qx - xs[p]
                dy = qy - ys[p]
                d2 = dx * dx + dy * dy
                b = max(qb, bs[p])
                while b < nb and d2 < best[b]:
                    best[b] = d2
                    b += 1
        lim = r * cell
        if best[qb] <= lim * lim:
            break


@numba.njit(cache=True, nogil=True)
def _joint_grid(x, y, bucket, n):  # pragma: no cover - numba
    """Grid of the first ``n`` points for the nearest-point search (about 2 points per cell):
    ``xs, ys, bs, cell_start, nx, ny, x0, y0, cell``, coordinates (float64) and buckets in cell order."""
    xmin, xmax, ymin, ymax = np.inf, -np.inf, np.inf, -np.inf
    for i in range(n):
        xmin = min(xmin, x[i])
        xmax = max(xmax, x[i])
        ymin = min(ymin, y[i])
        ymax = max(ymax, y[i])
    span = max(xmax - xmin, ymax - ymin, 1e-300)
    order, cs, _cx, _cy, nx, ny, x0, y0, cell = _grid(x, y, n, span / max(1.0, math.sqrt(n / 2.0)))
    xs = np.empty(n, np.float64)
    ys = np.empty(n, np.float64)
    bs = np.empty(n, np.int64)
    for p in range(n):
        xs[p] = x[order[p]]
        ys[p] = y[order[p]]
        bs[p] = bucket[order[p]]
    return xs, ys, bs, cs, nx, ny, x0, y0, cell


@numba.njit(cache=True, nogil=True)
def nn_hist_joint(x, y, bucket, n_buckets, support):  # pragma: no cover - numba
    """:func:`nn_hist` of every prefix in one pass over the whole pattern (``bucket`` of each
    point; the pattern is all points): each point searches once for the nearest point of every
    prefix it belongs to."""
    out = np.zeros((n_buckets, support.shape[0] + 1), np.int64)
    n = x.shape[0]
    if n < 2:
        return out
    inv_step = _inv_step(support)
    xs, ys, bs, cs, nx, ny, x0, y0, cell = _joint_grid(x, y, bucket, n)
    best = np.empty(n_buckets, np.float64)
    for p in range(n):
        qb = bs[p]
        _nn_joint(xs[p], ys[p], qb, xs, ys, bs, cs, nx, ny, x0, y0, cell, p, best)
        for b in range(qb, n_buckets):
            if best[b] < np.inf:
                out[b, _bin_left(math.sqrt(best[b]), support, inv_step)] += 1
    return out


@numba.njit(cache=True, nogil=True)
def empty_space_hist_joint(x, y, bucket, n_buckets, qx, qy, support):  # pragma: no cover - numba
    """:func:`empty_space_hist` of every prefix in one pass (one ring search per query point)."""
    out = np.zeros((n_buckets, support.shape[0] + 1), np.int64)
    n = x.shape[0]
    if n < 1:
        return out
    inv_step = _inv_step(support)
    xs, ys, bs, cs, nx, ny, x0, y0, cell = _joint_grid(x, y, bucket, n)
    best = np.empty(n_buckets, np.float64)
    for q in range(qx.shape[0]):
        _nn_joint(qx[q], qy[q], 0, xs, ys, bs, cs, nx, ny, x0, y0, cell, -1, best)
        for b in range(n_buckets):
            out[b, _bin_left(math.sqrt(best[b]), support, inv_step)] += 1
    return out


def simulate(mode: int, xs: np.ndarray, ys: np.ndarray, bucket: np.ndarray, sizes: np.ndarray,
             support: np.ndarray, qx: np.ndarray, qy: np.ndarray, *, workers: int | None = None,
             all_pairs: bool = False) -> np.ndarray:
    """One statistic histogram per simulated pattern ``xs[s], ys[s]``, patterns in parallel threads
    (the kernels release the GIL).

    ``mode`` 0 = pairs (L), 1 = nearest neighbour (G), 2 = empty space (F).
    Returns ``(n_sims, len(sizes), n_steps + 1)`` int64 (pairs: per bucket of the pair, not cumulative).
    G and F search all prefixes at once (:func:`nn_hist_joint`); prefixes much smaller than the
    whole pattern (under 1/16 of it: their nearest neighbours are far) get their own search.
    ``all_pairs``: pairs by :func:`pair_hist_all` (every pair; for a support spanning the window,
    :func:`spans_window`), else by the grid (:func:`pair_hist`); equal on the support's bins.
    """
    from concurrent.futures import ThreadPoolExecutor

    n = xs.shape[1]
    nb = sizes.shape[0]
    par = pair_params(support, xs.dtype)
    small = np.flatnonzero(sizes * 16 < n)
    b0 = int(small[-1]) + 1 if small.size else 0  # first bucket of the joint search
    rel = np.maximum(bucket - b0, 0).astype(np.int64)  # points of small prefixes belong to prefix b0 too

    def one(s):
        if mode == 0:
            return (pair_hist_all if all_pairs else pair_hist)(xs[s], ys[s], bucket, nb, support, n, par)
        out = np.zeros((nb, support.size + 1), np.int64)
        x, y = xs[s], ys[s]
        if small.size:
            out[:b0] = (nn_hist(x, y, sizes[:b0], support) if mode == 1 else
                        empty_space_hist(x, y, sizes[:b0], qx, qy, support))
        if b0 < nb:
            out[b0:] = (nn_hist_joint(x, y, rel, nb - b0, support) if mode == 1 else
                        empty_space_hist_joint(x, y, rel, nb - b0, qx, qy, support))
        return out

    workers = workers or max(1, numba.get_num_threads())
    if workers == 1 or xs.shape[0] == 1:
        return np.stack([one(s) for s in range(xs.shape[0])])
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return np.stack(list(ex.map(one, range(xs.shape[0]))))
