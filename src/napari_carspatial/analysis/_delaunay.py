"""Fast 2-D Delaunay triangulation (sweep-hull, a numba port of mapbox/delaunator) with a
certificate that the result is *the* Delaunay triangulation, else ``None`` (use qhull).

qhull (scipy, what squidpy calls) spends ~10 µs per point in 2-D; this sweep-hull needs about
1 µs. For points in general position the Delaunay triangulation is unique, so any correct
algorithm gives qhull's edges. The triangulation is accepted only if it is *certified*:

1. every point is a vertex (no duplicates were skipped),
2. every triangle is strictly positively oriented (its orientation determinant exceeds a
   rounding-error bound),
3. every interior edge is locally Delaunay with margin: the in-circle determinant of the
   opposite vertex is beyond a (generous, 1e-10 relative) error bound,
4. Euler's count ``n_triangles == 2 n - 2 - hull_size`` holds.

(2)+(3)+(4) imply a valid triangulation of the convex hull whose every edge is strictly
locally Delaunay, hence the unique Delaunay triangulation with no four (nearly) co-circular
points, which is what qhull returns too. Degenerate input (duplicates, lattice coordinates with
co-circular points, collinear sets) fails the certificate and the caller falls back to qhull.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_EPS = 2.0**-52
_STACK = 1 << 16


@numba.njit(cache=True, inline="always")
def _orient(ax, ay, bx, by, cx, cy):  # pragma: no cover - numba
    return (ay - cy) * (bx - cx) - (ax - cx) * (by - cy)


@numba.njit(cache=True, inline="always")
def _incircle_det(ax, ay, bx, by, cx, cy, px, py):  # pragma: no cover - numba
    dx = ax - px
    dy = ay - py
    ex = bx - px
    ey = by - py
    fx = cx - px
    fy = cy - py
    ap = dx * dx + dy * dy
    bp = ex * ex + ey * ey
    cp = fx * fx + fy * fy
    return dx * (ey * cp - bp * fy) - dy * (ex * cp - bp * fx) + ap * (ex * fy - ey * fx)


@numba.njit(cache=True, inline="always")
def _pseudo_angle(dx, dy):  # pragma: no cover - numba
    p = dx / (abs(dx) + abs(dy))
    if dy > 0:
        return (3.0 - p) / 4.0
    return (1.0 + p) / 4.0


@numba.njit(cache=True, inline="always")
def _hash_key(x, y, cx, cy, hash_size):  # pragma: no cover - numba
    return int(math.floor(_pseudo_angle(x - cx, y - cy) * hash_size)) % hash_size


@numba.njit(cache=True, inline="always")
def _link(halfedges, a, b):  # pragma: no cover - numba
    halfedges[a] = b
    if b != -1:
        halfedges[b] = a


@numba.njit(cache=True)
def _sweep(x, y):  # pragma: no cover - numba
    """delaunator's update(): returns (triangles, halfedges, n_tri3, hull_size, ok)."""
    n = x.shape[0]
    max_tri = max(2 * n - 5, 1)
    triangles = np.empty(max_tri * 3, dtype=np.int64)
    halfedges = np.full(max_tri * 3, -1, dtype=np.int64)
    hash_size = int(math.ceil(math.sqrt(n)))
    hull_prev = np.zeros(n, dtype=np.int64)
    hull_next = np.zeros(n, dtype=np.int64)
    hull_tri = np.zeros(n, dtype=np.int64)
    hull_hash = np.full(hash_size, -1, dtype=np.int64)
    stack = np.empty(_STACK, dtype=np.int64)

    minx = x.min()
    maxx = x.max()
    miny = y.min()
    maxy = y.max()
    cx = (minx + maxx) / 2.0
    cy = (miny + maxy) / 2.0

    i0 = 0
    md = np.inf
    for i in range(n):
        dx = cx - x[i]
        dy = cy - y[i]
        d = dx * dx + dy * dy
        if d < md:
            i0 = i
            md = d
    i0x = x[i0]
    i0y = y[i0]
    i1 = -1
    md = np.inf
    for i in range(n):
        if i == i0:
            continue
        dx = i0x - x[i]
        dy = i0y - y[i]
        d = dx * dx + dy * dy
        if d < md and d > 0:
            i1 = i
            md = d
    if i1 < 0:
        return triangles, halfedges, 0, 0, False, np.arange(n), x, y
    i1x = x[i1]
    i1y = y[i1]
    min_r = np.inf
    i2 = -1
    for i in range(n):
        if i in (i0, i1):
            continue
        dx = i1x - i0x
        dy = i1y - i0y
        ex = x[i] - i0x
        ey = y[i] - i0y
        bl = dx * dx + dy * dy
        cl = ex * ex + ey * ey
        den = dx * ey - dy * ex
        if den == 0:
            continue
        dd = 0.5 / den
        xx = (ey * bl - dy * cl) * dd
        yy = (dx * cl - ex * bl) * dd
        r = xx * xx + yy * yy
        if r < min_r:
            i2 = i
            min_r = r
    if i2 < 0 or min_r == np.inf:
        return triangles, halfedges, 0, 0, False, np.arange(n), x, y  # collinear: leave it to qhull
    i2x = x[i2]
    i2y = y[i2]
    if _orient(i0x, i0y, i1x, i1y, i2x, i2y) < 0:
        t_ = i1
        i1 = i2
        i2 = t_
        tx = i1x
        ty = i1y
        i1x = i2x
        i1y = i2y
        i2x = tx
        i2y = ty
    # circumcenter
    dx = i1x - i0x
    dy = i1y - i0y
    ex = i2x - i0x
    ey = i2y - i0y
    bl = dx * dx + dy * dy
    cl = ex * ex + ey * ey
    dd = 0.5 / (dx * ey - dy * ex)
    ccx = i0x + (ey * bl - dy * cl) * dd
    ccy = i0y + (dx * cl - ex * bl) * dd

    dists = np.empty(n, dtype=np.float64)
    for i in range(n):
        ddx = x[i] - ccx
        ddy = y[i] - ccy
        dists[i] = ddx * ddx + ddy * ddy
    ids = np.argsort(dists)
    # work on coordinates permuted into insertion order: memory locality for the sweep
    inv = np.empty(n, dtype=np.int64)
    for k in range(n):
        inv[ids[k]] = k
    x = x[ids]
    y = y[ids]
    i0 = inv[i0]
    i1 = inv[i1]
    i2 = inv[i2]

    hull_start = i0
    hull_size = 3
    hull_next[i0] = i1
    hull_prev[i2] = i1
    hull_next[i1] = i2
    hull_prev[i0] = i2
    hull_next[i2] = i0
    hull_prev[i1] = i0
    hull_tri[i0] = 0
    hull_tri[i1] = 1
    hull_tri[i2] = 2
    hull_hash[_hash_key(i0x, i0y, ccx, ccy, hash_size)] = i0
    hull_hash[_hash_key(i1x, i1y, ccx, ccy, hash_size)] = i1
    hull_hash[_hash_key(i2x, i2y, ccx, ccy, hash_size)] = i2

    tlen = 0
    # add seed triangle
    triangles[0] = i0
    triangles[1] = i1
    triangles[2] = i2
    tlen = 3
    ok = True
    xp = 0.0
    yp = 0.0
    for k in range(n):
        i = k
        px = x[i]
        py = y[i]
        if k > 0 and abs(px - xp) <= _EPS and abs(py - yp) <= _EPS:
            ok = False  # (near-)duplicate skipped
            continue
        xp = px
        yp = py
        if i in (i0, i1, i2):
            continue
        start = 0
        key = _hash_key(px, py, ccx, ccy, hash_size)
        for j in range(hash_size):
            start = hull_hash[(key + j) % hash_size]
            if start != -1 and start != hull_next[start]:
                break
        start = hull_prev[start]
        e = start
        while True:
            q = hull_next[e]
            if _orient(px, py, x[e], y[e], x[q], y[q]) >= 0:
                e = q
                if e == start:
                    e = -1
                    break
            else:
                break
        if e == -1:
            ok = False  # point not added
            continue

        # add the first triangle from the point
        t = tlen
        triangles[t] = e
        triangles[t + 1] = i
        triangles[t + 2] = hull_next[e]
        _link(halfedges, t, -1)
        _link(halfedges, t + 1, -1)
        _link(halfedges, t + 2, hull_tri[e])
        tlen += 3
        ar, hs_ok = _legalize(t + 2, triangles, halfedges, x, y, hull_tri, hull_prev, hull_start, stack)
        ok = ok and hs_ok
        hull_tri[i] = ar
        hull_tri[e] = t
        hull_size += 1

        nn = hull_next[e]
        while True:
            q = hull_next[nn]
            if _orient(px, py, x[nn], y[nn], x[q], y[q]) < 0:
                t = tlen
                triangles[t] = nn
                triangles[t + 1] = i
                triangles[t + 2] = q
                _link(halfedges, t, hull_tri[i])
                _link(halfedges, t + 1, -1)
                _link(halfedges, t + 2, hull_tri[nn])
                tlen += 3
                ar, hs_ok = _legalize(t + 2, triangles, halfedges, x, y, hull_tri, hull_prev, hull_start, stack)
                ok = ok and hs_ok
                hull_tri[i] = ar
                hull_next[nn] = nn
                hull_size -= 1
                nn = q
            else:
                break
        if e == start:
            while True:
                q = hull_prev[e]
                if _orient(px, py, x[q], y[q], x[e], y[e]) < 0:
                    t = tlen
                    triangles[t] = q
                    triangles[t + 1] = i
                    triangles[t + 2] = e
                    _link(halfedges, t, -1)
                    _link(halfedges, t + 1, hull_tri[e])
                    _link(halfedges, t + 2, hull_tri[q])
                    tlen += 3
                    _, hs_ok = _legalize(t + 2, triangles, halfedges, x, y, hull_tri, hull_prev, hull_start, stack)
                    ok = ok and hs_ok
                    hull_tri[q] = t
                    hull_next[e] = e
                    hull_size -= 1
                    e = q
                else:
                    break
        hull_start = e
        hull_prev[i] = e
        hull_next[e] = i
        hull_prev[nn] = i
        hull_next[i] = nn
        hull_hash[_hash_key(px, py, ccx, ccy, hash_size)] = i
        hull_hash[_hash_key(x[e], y[e], ccx, ccy, hash_size)] = e
    return triangles, halfedges, tlen, hull_size, ok, ids, x, y


@numba.njit(cache=True)
def _legalize(a, triangles, halfedges, x, y, hull_tri, hull_prev, hull_start, stack):  # pragma: no cover
    i = 0
    ar = 0
    ok = True
    while True:
        b = halfedges[a]
        a0 = a - a % 3
        ar = a0 + (a + 2) % 3
        if b == -1:
            if i == 0:
                break
            i -= 1
            a = stack[i]
            continue
        b0 = b - b % 3
        al = a0 + (a + 1) % 3
        bl = b0 + (b + 2) % 3
        p0 = triangles[ar]
        pr = triangles[a]
        pl = triangles[al]
        p1 = triangles[bl]
        illegal = _incircle_det(x[p0], y[p0], x[pr], y[pr], x[pl], y[pl], x[p1], y[p1]) < 0
        if illegal:
            triangles[a] = p1
            triangles[b] = p0
            hbl = halfedges[bl]
            if hbl == -1:
                e = hull_start
                while True:
                    if hull_tri[e] == bl:
                        hull_tri[e] = a
                        break
                    e = hull_prev[e]
                    if e == hull_start:
                        break
            _link(halfedges, a, hbl)
            _link(halfedges, b, halfedges[ar])
            _link(halfedges, ar, bl)
            br = b0 + (b + 1) % 3
            if i < stack.shape[0]:
                stack[i] = br
                i += 1
            else:
                ok = False
        else:
            if i == 0:
                break
            i -= 1
            a = stack[i]
    return ar, ok


@numba.njit(parallel=True, cache=True)
def _certify(x, y, triangles, halfedges, tlen, rel):  # pragma: no cover - numba
    """Count triangles failing strict orientation and interior edges failing strict Delaunay."""
    nt = tlen // 3
    bad = np.zeros(nt, dtype=np.int64)
    for t in numba.prange(nt):
        a = triangles[3 * t]
        b = triangles[3 * t + 1]
        c = triangles[3 * t + 2]
        # the sweep makes every triangle with _orient(a, b, c) > 0
        dl = (y[a] - y[c]) * (x[b] - x[c])
        dr = (x[a] - x[c]) * (y[b] - y[c])
        det = dl - dr
        if not (det > rel * (abs(dl) + abs(dr))):
            bad[t] += 1
        for k in range(3):
            e = 3 * t + k
            h = halfedges[e]
            if h > e:  # interior edge, checked once
                a0 = e - e % 3
                ar = a0 + (e + 2) % 3
                al = a0 + (e + 1) % 3
                bl = h - h % 3 + (h + 2) % 3
                p0 = triangles[ar]
                pr = triangles[e]
                pl = triangles[al]
                p1 = triangles[bl]
                ax = x[p0] - x[p1]
                ay = y[p0] - y[p1]
                bx = x[pr] - x[p1]
                by = y[pr] - y[p1]
                cx = x[pl] - x[p1]
                cy = y[pl] - y[p1]
                ap = ax * ax + ay * ay
                bp = bx * bx + by * by
                cp = cx * cx + cy * cy
                det = ax * (by * cp - bp * cy) - ay * (bx * cp - bp * cx) + ap * (bx * cy - by * cx)
                perm = ((abs(by * cp) + abs(bp * cy)) * abs(ax) + (abs(bx * cp) + abs(bp * cx)) * abs(ay)
                        + (abs(bx * cy) + abs(by * cx)) * ap)
                # legal means det > 0 (p1 strictly outside the circumcircle), beyond rounding
                if not (det > rel * perm):
                    bad[t] += 1
    return bad.sum()


@numba.njit(cache=True)
def _edges_csr(triangles, halfedges, tlen, n):  # pragma: no cover - numba
    deg = np.zeros(n, dtype=np.int64)
    for e in range(tlen):
        h = halfedges[e]
        if h == -1 or e < h:
            a = triangles[e]
            b = triangles[e - e % 3 + (e + 1) % 3]
            deg[a] += 1
            deg[b] += 1
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        indptr[i + 1] = indptr[i] + deg[i]
    fill = indptr[:-1].copy()
    indices = np.empty(indptr[n], dtype=np.int64)
    for e in range(tlen):
        h = halfedges[e]
        if h == -1 or e < h:
            a = triangles[e]
            b = triangles[e - e % 3 + (e + 1) % 3]
            indices[fill[a]] = b
            fill[a] += 1
            indices[fill[b]] = a
            fill[b] += 1
    for i in range(n):
        s = indptr[i]
        t = indptr[i + 1]
        for p in range(s + 1, t):  # insertion sort: rows are short (mean degree < 6)
            v = indices[p]
            q = p - 1
            while q >= s and indices[q] > v:
                indices[q + 1] = indices[q]
                q -= 1
            indices[q + 1] = v
    return indptr, indices


def delaunay_edges_certified(xy: np.ndarray, *, rel: float = 1e-10):
    """CSR ``(indptr, indices)`` of the Delaunay edges, or ``None`` if not certified unique."""
    xy = np.asarray(xy, dtype=np.float64)
    n = xy.shape[0]
    if n < 4:
        return None
    x = np.ascontiguousarray(xy[:, 0])
    y = np.ascontiguousarray(xy[:, 1])
    triangles, halfedges, tlen, hull_size, ok, ids, xs, ys = _sweep(x, y)
    if not ok or tlen == 0:
        return None
    if tlen // 3 != 2 * n - 2 - hull_size:
        return None
    if _certify(xs, ys, triangles, halfedges, tlen, rel) != 0:
        return None
    triangles = ids[triangles[:tlen]]  # back to the caller's point order
    indptr, indices = _edges_csr(triangles, halfedges, tlen, n)
    if (np.diff(indptr) == 0).any():
        return None
    return indptr, indices
