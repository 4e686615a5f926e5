"""Cells of the synthetic demo: positions, true types, shapes, mask and marker expression.

Everything is vectorised over cells; the only per-pixel loops are numba kernels.

One module (529 lines) because it is one generation pipeline (lattice, types, shapes, mask,
expression) run in that order by the demo builder; the in-memory and the tiled rasterisers are the
same stamping algorithm in two numba variants (whole image, per tile) that must draw every cell
identically, so they are kept side by side with the relabelling kernel they share.
"""

from __future__ import annotations

import logging

import numba
import numpy as np

from ..model.palette import default_colors as _default_colors
from ._layout import Layout

log = logging.getLogger(__name__)

#: channels of the demo panel, in image order
CHANNELS = ("DAPI", "PanCK", "MSLN", "CD3", "CD4", "CD8", "CAR", "CD68", "CD163", "PD-L1", "PD-1",
            "Ki-67", "CD20", "SMA")
#: true cell types (categories of ``obs["cell_type"]``), in category order
CELL_TYPES = ("Tumor", "Tumor (antigen-neg)", "CAR T", "CD8 T", "CD4 T", "Macrophage", "B cell", "Stroma",
              "Endothelial", "Other")
#: one colour per cell type (aligned with :data:`CELL_TYPES`): the palette policy's
#: (:mod:`napari_carspatial.model.palette`: CAR T pops, tumour is muted, no class looks like a
#: channel colour, distinguishable with the common colour-vision deficiencies).
CELL_TYPE_COLORS = tuple(_default_colors(CELL_TYPES))
#: tissue compartments (ground truth, ``obs["compartment"]``)
COMPARTMENTS = ("Tumor core", "Invasive margin", "Stroma", "TLS")

T = {name: i for i, name in enumerate(CELL_TYPES)}
C = {name: i for i, name in enumerate(CHANNELS)}

#: lattice spacing of candidate nucleus positions, µm (dense lymphocyte packing)
LATTICE_UM = 7.0
#: invasive margin: from ``-MARGIN_IN_UM`` (inside) to ``+MARGIN_OUT_UM`` (outside the nests)
MARGIN_IN_UM = 50.0
MARGIN_OUT_UM = 100.0


# --------------------------------------------------------------------------- positions
def lattice(height_px: int, width_px: int, pixel_size_um: float, rng: np.random.Generator) -> np.ndarray:
    """Jittered hexagonal lattice of candidate nucleus centres, (n, 2) (y, x) px, row-major order."""
    s = LATTICE_UM / pixel_size_um
    dy = s * np.sqrt(3) / 2
    ny = int(np.ceil(height_px / dy))
    nx = int(np.ceil(width_px / s))
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    y = (j + 0.5) * dy
    x = (i + 0.25 + 0.5 * (j % 2)) * s
    pts = np.stack([y.ravel(), x.ravel()], axis=1)
    pts += rng.uniform(-0.3, 0.3, size=pts.shape) * s
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < height_px - 1) & (pts[:, 1] >= 0) & (pts[:, 1] < width_px - 1)
    return pts[inside]


def keep_probability(lay: Layout, y_um: np.ndarray, x_um: np.ndarray) -> np.ndarray:
    """Probability that a lattice point holds a cell (sets the local cell density)."""
    d = lay.sample("dist_um", y_um, x_um)
    tissue = lay.sample("tissue", y_um, x_um, order=0)
    tls = lay.sample("tls", y_um, x_um, order=0)
    p = np.where(d < 0, 0.55, 0.30 + 0.25 * np.exp(-(np.maximum(d, 0) / 80.0) ** 2))
    p = np.where(tls, 0.97, p)
    return np.where(tissue, p, 0.0).astype(np.float64)


# --------------------------------------------------------------------------- types
def assign_types(lay: Layout, yx_px: np.ndarray, pixel_size_um: float, timepoint: str,
                 rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw the true cell type of every cell from its position in the layout.

    Returns the type codes (int8, index into :data:`CELL_TYPES`) and the sampled layout
    values (``dist_um``, ``tls``, ``vessel``, ...) reused later.
    """
    post = timepoint == "post"
    y_um, x_um = yx_px[:, 0] * pixel_size_um, yx_px[:, 1] * pixel_size_um
    d = lay.sample("dist_um", y_um, x_um)
    tls = lay.sample("tls", y_um, x_um, order=0)
    vessel = lay.sample("vessel", y_um, x_um)
    n = len(d)
    P = np.zeros((n, len(CELL_TYPES)), np.float64)
    inside = d < 0
    e_in = np.exp(np.minimum(d, 0) / 40.0)  # 1 at the boundary, -> 0 in the core
    m = np.exp(-(np.maximum(d, 0) / 90.0) ** 2)  # margin weight outside the nests
    mac_boost = 1.5 if post else 1.0
    # inside tumour nests
    P[:, T["CAR T"]] = np.where(inside, 0.01 + 0.09 * e_in, 0.02 + 0.25 * m) * post
    P[:, T["CD8 T"]] = np.where(inside, 0.012 + 0.03 * e_in, 0.03 + 0.07 * m)
    P[:, T["CD4 T"]] = np.where(inside, 0.004, 0.04 + 0.05 * m)
    P[:, T["Macrophage"]] = np.where(inside, 0.02 + 0.03 * e_in, 0.035 + 0.08 * m) * mac_boost
    P[:, T["B cell"]] = np.where(inside, 0.0, 0.008)
    P[:, T["Endothelial"]] = np.where(inside, 0.0, 0.65 * vessel)
    P[:, T["Other"]] = np.where(inside, 0.01, 0.07)
    P[:, T["Stroma"]] = np.where(inside, 0.015, 0.0)
    rest = np.clip(1 - P.sum(axis=1), 0.02, None)
    P[:, T["Tumor"]] = np.where(inside, rest, 0.0)
    P[:, T["Stroma"]] += np.where(inside, 0.0, rest)
    # tertiary lymphoid structure: B-cell follicle with CD4 T cells
    if tls.any():
        tl = np.zeros(len(CELL_TYPES))
        tl[[T["B cell"], T["CD4 T"], T["CD8 T"], T["Macrophage"], T["Endothelial"], T["Other"], T["Stroma"]]] = (
            0.62, 0.22, 0.05, 0.03, 0.02, 0.03, 0.03)
        P[tls] = tl
    P /= P.sum(axis=1, keepdims=True)
    cum = np.cumsum(P, axis=1)
    u = rng.random(n)[:, None]
    types = np.minimum((u > cum).sum(axis=1), len(CELL_TYPES) - 1).astype(np.int8)

    if post:  # macrophages gather around CAR T cells at the margin
        car = types == T["CAR T"]
        cand = np.flatnonzero(((types == T["Stroma"]) | (types == T["Other"])) & ~tls)
        if car.any() and cand.size:
            from scipy.spatial import cKDTree

            r_px = 22.0 / pixel_size_um
            dd, _ = cKDTree(yx_px[car]).query(yx_px[cand], k=1, distance_upper_bound=r_px)
            near = cand[np.isfinite(dd)]
            flip = near[rng.random(near.size) < 0.25]
            types[flip] = T["Macrophage"]

    # antigen-negative subclone: contiguous patches of the nests (nested pre -> post)
    tum = np.flatnonzero(types == T["Tumor"])
    if tum.size:
        patch = lay.sample("patch", y_um[tum], x_um[tum])
        frac = 0.30 if post else 0.05
        thr = np.quantile(patch, 1 - frac)
        neg = patch >= thr
        flip = rng.random(tum.size)
        neg = np.where(neg, flip > 0.04, flip < 0.005)  # a little heterogeneity at the edges
        types[tum[neg]] = T["Tumor (antigen-neg)"]

    comp = np.full(n, COMPARTMENTS.index("Stroma"), np.int8)
    comp[(d >= -MARGIN_IN_UM) & (d <= MARGIN_OUT_UM)] = COMPARTMENTS.index("Invasive margin")
    comp[d < -MARGIN_IN_UM] = COMPARTMENTS.index("Tumor core")
    comp[tls] = COMPARTMENTS.index("TLS")
    info = {"dist_um": d.astype(np.float32), "compartment": comp}
    return types, info


# --------------------------------------------------------------------------- shapes
# per type: nucleus long semi-axis mean / sd (µm), short/long ratio, lobularity, cytoplasm (µm),
# orientation (0 random, 1 along stroma fibres, 2 along vessels)
_SHAPE = {
    "Tumor": (4.3, 0.5, 0.80, 0.10, 3.6, 0),
    "Tumor (antigen-neg)": (4.3, 0.5, 0.80, 0.10, 3.6, 0),
    "CAR T": (3.2, 0.3, 0.90, 0.05, 1.4, 0),
    "CD8 T": (2.8, 0.25, 0.90, 0.05, 1.1, 0),
    "CD4 T": (2.8, 0.25, 0.90, 0.05, 1.1, 0),
    "Macrophage": (4.0, 0.4, 0.70, 0.20, 5.0, 0),
    "B cell": (2.7, 0.2, 0.92, 0.04, 1.0, 0),
    "Stroma": (6.5, 1.0, 0.30, 0.05, 2.2, 1),
    "Endothelial": (5.5, 0.7, 0.30, 0.05, 1.6, 2),
    "Other": (3.6, 0.4, 0.80, 0.10, 2.5, 0),
}


def cell_shapes(types: np.ndarray, lay: Layout, yx_px: np.ndarray, pixel_size_um: float,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-cell nucleus ellipse (px), lobularity, orientation and cytoplasm width (px)."""
    tab = np.array([_SHAPE[t] for t in CELL_TYPES], dtype=np.float64)
    n = len(types)
    a = np.clip(tab[types, 0] + tab[types, 1] * rng.standard_normal(n), 1.8, None)
    ratio = np.clip(tab[types, 2] * (1 + 0.1 * rng.standard_normal(n)), 0.2, 1.0)
    k3 = tab[types, 3] * rng.uniform(0.3, 1.5, n)
    ext = tab[types, 4] * rng.uniform(0.7, 1.3, n)
    mode = tab[types, 5].astype(np.int8)
    phi = rng.uniform(0, np.pi, n)
    y_um, x_um = yx_px[:, 0] * pixel_size_um, yx_px[:, 1] * pixel_size_um
    for m, (cn, sn) in ((1, ("fiber_c2", "fiber_s2")), (2, ("vessel_c2", "vessel_s2"))):
        sel = np.flatnonzero(mode == m)
        if sel.size:
            c2 = lay.sample(cn, y_um[sel], x_um[sel])
            s2 = lay.sample(sn, y_um[sel], x_um[sel])
            phi[sel] = 0.5 * np.arctan2(s2, c2) + 0.25 * rng.standard_normal(sel.size)
    inv = 1.0 / pixel_size_um
    return {"a": (a * inv).astype(np.float32), "b": (a * ratio * inv).astype(np.float32),
            "k3": k3.astype(np.float32), "psi": rng.uniform(0, 2 * np.pi, n).astype(np.float32),
            "cphi": np.cos(phi).astype(np.float32), "sphi": np.sin(phi).astype(np.float32),
            "ext": (ext * inv).astype(np.float32)}


@numba.njit(cache=True, parallel=True)
def _stamp(lab, best, cy, cx, a, b, cphi, sphi, k3, psi, ext, hy, hx, lo, hi, strip):  # pragma: no cover
    """Additively weighted Voronoi of irregular nuclei, limited to each cell's cytoplasm width.

    A pixel goes to the cell whose nucleus boundary is closest (``w = (rho - 1) * sqrt(a b)``,
    ``rho`` the normalised elliptic radius with a 3-lobed wobble) when ``w < ext``; ``w < 0``
    marks nucleus pixels. ``lab`` receives cell index + 1. Horizontal strips run in parallel;
    within a strip cells are visited in index order, so ties resolve as in a serial run.
    """
    H, W = lab.shape
    for s in numba.prange(lo.shape[0]):
        ys0 = s * strip
        ys1 = min(H, ys0 + strip)
        for i in range(lo[s], hi[s]):
            yc = cy[i]
            xc = cx[i]
            y0 = max(ys0, int(np.floor(yc - hy[i])))
            y1 = min(ys1, int(np.ceil(yc + hy[i])) + 1)
            if y0 >= y1:
                continue
            x0 = max(0, int(np.floor(xc - hx[i])))
            x1 = min(W, int(np.ceil(xc + hx[i])) + 1)
            g = np.sqrt(a[i] * b[i])
            ia = 1.0 / a[i]
            ib = 1.0 / b[i]
            kk = k3[i]
            cps = np.cos(psi[i])
            sps = np.sin(psi[i])
            lim = (1.0 + ext[i] / g) * (1.0 + kk)
            lim2 = lim * lim
            for y in range(y0, y1):
                dy = y - yc
                for x in range(x0, x1):
                    dx = x - xc
                    u = (dx * cphi[i] + dy * sphi[i]) * ia
                    v = (-dx * sphi[i] + dy * cphi[i]) * ib
                    r2 = u * u + v * v
                    if r2 >= lim2:
                        continue
                    rho = np.sqrt(r2)
                    if kk > 0 and rho > 0:
                        c = u / rho
                        sn = v / rho
                        c3 = 4 * c * c * c - 3 * c
                        s3 = 3 * sn - 4 * sn * sn * sn
                        rho = rho / (1.0 + kk * (c3 * cps - s3 * sps))
                    w = (rho - 1.0) * g
                    if w < ext[i] and w < best[y, x]:
                        best[y, x] = w
                        lab[y, x] = i + 1


@numba.njit(cache=True, nogil=True)
def _finish(lab, best, nuc, n):  # pragma: no cover - numba
    """Nucleus flags and per-cell pixel count, nucleus count, sum of y and x (one pass)."""
    H, W = lab.shape
    cnt = np.zeros(n + 1, np.int64)
    ncnt = np.zeros(n + 1, np.int64)
    sy = np.zeros(n + 1, np.float64)
    sx = np.zeros(n + 1, np.float64)
    for y in range(H):
        for x in range(W):
            k = lab[y, x]
            if k:
                cnt[k] += 1
                sy[k] += y
                sx[k] += x
                if best[y, x] < 0:
                    nuc[y, x] = True
                    ncnt[k] += 1
    return cnt[1:], ncnt[1:], sy[1:], sx[1:]


@numba.njit(cache=True, nogil=True)
def _relabel(lab, lut):  # pragma: no cover - numba
    H, W = lab.shape
    for y in range(H):
        for x in range(W):
            lab[y, x] = lut[lab[y, x]]


def rasterize(shape_yx: tuple[int, int], yx_px: np.ndarray, shp: dict[str, np.ndarray]):
    """Mask of cell index + 1 (uint32), nucleus flags and per-cell stats.

    Returns
    -------
    lab, nuc, count, nuc_count, mean_y, mean_x
    """
    H, W = shape_yx
    lab = np.zeros((H, W), np.uint32)
    best = np.full((H, W), np.inf, np.float32)
    cy = yx_px[:, 0].astype(np.float32)
    cx = yx_px[:, 1].astype(np.float32)
    a, b, ext, k3 = shp["a"], shp["b"], shp["ext"], shp["k3"]
    g = np.sqrt(a * b)
    f = (1 + ext / g) * (1 + k3)  # extent in units of the nucleus semi-axes
    A, B = a * f, b * f
    c, sn = shp["cphi"], shp["sphi"]
    hx = (np.sqrt((A * c) ** 2 + (B * sn) ** 2) + 1).astype(np.float32)
    hy = (np.sqrt((A * sn) ** 2 + (B * c) ** 2) + 1).astype(np.float32)
    strip = max(64, int(np.ceil(H / 64)))
    ns = int(np.ceil(H / strip))
    reach = float(hy.max()) + 1
    pmax = np.maximum.accumulate(cy)
    smin = np.minimum.accumulate(cy[::-1])[::-1]
    ys0 = np.arange(ns) * strip
    lo = np.searchsorted(pmax, ys0 - reach, side="left").astype(np.int64)
    hi = np.searchsorted(smin, ys0 + strip + reach, side="right").astype(np.int64)
    _stamp(lab, best, cy, cx, a, b, c, sn, k3, shp["psi"], ext, hy, hx, lo, hi, strip)
    nuc = np.zeros((H, W), np.bool_)
    cnt, ncnt, sy, sx = _finish(lab, best, nuc, len(cy))
    del best
    with np.errstate(invalid="ignore", divide="ignore"):
        my, mx = sy / cnt, sx / cnt
    return lab, nuc, cnt, ncnt, my, mx


@numba.njit(cache=True, nogil=True)
def _stamp_tile(lab, best, ty0, tx0, cy, cx, a, b, cphi, sphi, k3, psi, ext, hy, hx, lo, hi):  # pragma: no cover
    """:func:`_stamp` restricted to one tile (``lab``/``best`` hold rows ``ty0..`` and columns
    ``tx0..``): the same cells in the same index order and the same arithmetic per pixel, so the
    tiles join into exactly the mask :func:`_stamp` makes of the whole slide."""
    th, tw = lab.shape
    ys0 = ty0
    ys1 = ty0 + th
    for i in range(lo, hi):
        yc = cy[i]
        xc = cx[i]
        y0 = max(ys0, int(np.floor(yc - hy[i])))
        y1 = min(ys1, int(np.ceil(yc + hy[i])) + 1)
        if y0 >= y1:
            continue
        x0 = max(tx0, int(np.floor(xc - hx[i])))
        x1 = min(tx0 + tw, int(np.ceil(xc + hx[i])) + 1)
        if x0 >= x1:
            continue
        g = np.sqrt(a[i] * b[i])
        ia = 1.0 / a[i]
        ib = 1.0 / b[i]
        kk = k3[i]
        cps = np.cos(psi[i])
        sps = np.sin(psi[i])
        lim = (1.0 + ext[i] / g) * (1.0 + kk)
        lim2 = lim * lim
        for y in range(y0, y1):
            dy = y - yc
            for x in range(x0, x1):
                dx = x - xc
                u = (dx * cphi[i] + dy * sphi[i]) * ia
                v = (-dx * sphi[i] + dy * cphi[i]) * ib
                r2 = u * u + v * v
                if r2 >= lim2:
                    continue
                rho = np.sqrt(r2)
                if kk > 0 and rho > 0:
                    c = u / rho
                    sn = v / rho
                    c3 = 4 * c * c * c - 3 * c
                    s3 = 3 * sn - 4 * sn * sn * sn
                    rho = rho / (1.0 + kk * (c3 * cps - s3 * sps))
                w = (rho - 1.0) * g
                if w < ext[i] and w < best[y - ty0, x - tx0]:
                    best[y - ty0, x - tx0] = w
                    lab[y - ty0, x - tx0] = i + 1


@numba.njit(cache=True, nogil=True)
def _finish_tile(lab, best, nuc, ty0, tx0, lut, lo, hi):  # pragma: no cover - numba
    """One pass over a stamped tile: nucleus flags, per-cell stats of cells ``lo..hi-1`` (pixel
    count, nucleus count, sum of y and x in slide coordinates) and the tile relabelled with ``lut``."""
    th, tw = lab.shape
    k = hi - lo
    cnt = np.zeros(k, np.int64)
    ncnt = np.zeros(k, np.int64)
    sy = np.zeros(k, np.float64)
    sx = np.zeros(k, np.float64)
    ids = np.empty((th, tw), np.uint32)
    for y in range(th):
        for x in range(tw):
            v = lab[y, x]
            ids[y, x] = lut[v]
            if v:
                j = v - 1 - lo
                cnt[j] += 1
                sy[j] += y + ty0
                sx[j] += x + tx0
                if best[y, x] < 0:
                    nuc[y, x] = True
                    ncnt[j] += 1
    return ids, cnt, ncnt, sy, sx


def rasterize_tiled(shape_yx: tuple[int, int], yx_px: np.ndarray, shp: dict[str, np.ndarray], lut: np.ndarray, *,
                    chunk: int, keep_nuc: bool, workers: int | None = None):
    """The mask of :func:`rasterize` (relabelled with ``lut``), made and kept tile by tile.

    Each ``chunk`` x ``chunk`` tile is stamped with the cells that can reach it (in index order,
    as the whole-slide kernel), relabelled and compressed (:class:`._tiles.TileStore`), together
    with its strided sub-samplings for the labels pyramid (``level_f = level_0[::f, ::f]``, for
    every ``f`` dividing ``chunk``). Memory is a few tiles per worker plus the compressed mask,
    instead of the mask, the distance buffer and the nucleus flags of the whole slide.

    Returns
    -------
    levels, nuc, count, nuc_count, mean_y, mean_x
        ``levels``: ``{f: TileStore}`` for ``f = 1, 2, 4, ...`` while the level is larger than
        1024 px (only the factors dividing ``chunk``); ``nuc``: a bool TileStore of level 0 or
        ``None`` (``keep_nuc=False``).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from ._tiles import TileStore

    H, W = shape_yx
    n = len(yx_px)
    cy = yx_px[:, 0].astype(np.float32)
    cx = yx_px[:, 1].astype(np.float32)
    a, b, ext, k3 = shp["a"], shp["b"], shp["ext"], shp["k3"]
    g = np.sqrt(a * b)
    f = (1 + ext / g) * (1 + k3)
    A, B = a * f, b * f
    c, sn = shp["cphi"], shp["sphi"]
    hx = (np.sqrt((A * c) ** 2 + (B * sn) ** 2) + 1).astype(np.float32)
    hy = (np.sqrt((A * sn) ** 2 + (B * c) ** 2) + 1).astype(np.float32)
    reach = float(hy.max()) + 1 if n else 1.0
    pmax = np.maximum.accumulate(cy) if n else cy
    smin = np.minimum.accumulate(cy[::-1])[::-1] if n else cy
    factors, fct = [1], 1
    while max(-(-H // fct), -(-W // fct)) > 1024 and chunk % (fct * 2) == 0:
        fct *= 2
        factors.append(fct)
    levels = {fc: TileStore((-(-H // fc), -(-W // fc)), np.uint32, chunk // fc) for fc in factors}
    nuc_store = TileStore((H, W), np.bool_, chunk) if keep_nuc else None
    lut = lut.astype(np.uint32)
    psi = shp["psi"]

    def one(t):
        ty, tx = t
        y0, x0 = ty * chunk, tx * chunk
        th, tw = min(chunk, H - y0), min(chunk, W - x0)
        lo = int(np.searchsorted(pmax, y0 - reach, side="left"))
        hi = int(np.searchsorted(smin, y0 + chunk + reach, side="right"))
        lab = np.zeros((th, tw), np.uint32)
        best = np.full((th, tw), np.inf, np.float32)
        _stamp_tile(lab, best, y0, x0, cy, cx, a, b, c, sn, k3, psi, ext, hy, hx, lo, max(lo, hi))
        nuc = np.zeros((th, tw), np.bool_)
        ids, cnt, ncnt, sy, sx = _finish_tile(lab, best, nuc, y0, x0, lut, lo, max(lo, hi))
        for fc, store in levels.items():
            store.put(ty, tx, ids[::fc, ::fc])
        if nuc_store is not None:
            nuc_store.put(ty, tx, nuc)
        nz = np.flatnonzero(cnt)
        return nz + lo, cnt[nz], ncnt[nz], sy[nz], sx[nz]

    tiles = [(ty, tx) for ty in range(-(-H // chunk)) for tx in range(-(-W // chunk))]
    cnt = np.zeros(n, np.int64)
    ncnt = np.zeros(n, np.int64)
    sy = np.zeros(n, np.float64)
    sx = np.zeros(n, np.float64)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as ex:
        for idx, c1, c2, s1, s2 in ex.map(one, tiles):
            cnt[idx] += c1
            ncnt[idx] += c2
            sy[idx] += s1
            sx[idx] += s2
    with np.errstate(invalid="ignore", divide="ignore"):
        my, mx = sy / cnt, sx / cnt
    return levels, nuc_store, cnt, ncnt, my, mx


def relabel_inplace(lab: np.ndarray, lut: np.ndarray) -> None:
    """``lab[...] = lut[lab]`` without a temporary copy."""
    _relabel(lab, lut.astype(np.uint32))


# --------------------------------------------------------------------------- expression
#: brightness of a positive cell per channel (arbitrary counts)
LEVEL = np.array([2200, 1300, 1000, 900, 650, 800, 1100, 900, 700, 600, 650, 1200, 1000, 1100], np.float32)
#: autofluorescence per channel
BACKGROUND = np.array([60, 90, 70, 50, 45, 50, 40, 80, 70, 55, 45, 40, 50, 85], np.float32)
#: (nucleus, cytoplasm/membrane) weight per channel
NUCLEAR = {"DAPI", "Ki-67"}


def pattern() -> tuple[np.ndarray, np.ndarray]:
    """Weights of each channel in nucleus pixels and in cytoplasm pixels."""
    nucw = np.array([1.0 if ch in NUCLEAR else 0.40 for ch in CHANNELS], np.float32)
    cytw = np.array([0.04 if ch in NUCLEAR else 1.0 for ch in CHANNELS], np.float32)
    return nucw, cytw


def positivity(timepoint: str) -> np.ndarray:
    """(type, channel) probability that a cell of a type is positive for a marker."""
    post = timepoint == "post"
    P = np.zeros((len(CELL_TYPES), len(CHANNELS)), np.float32)
    P[:, C["DAPI"]] = 1.0
    P[:, C["Ki-67"]] = 0.05

    def s(t, **kw):
        for ch, v in kw.items():
            P[T[t], C[ch]] = v

    s("Tumor", PanCK=0.97, MSLN=0.93)
    P[T["Tumor"], C["PD-L1"]] = 0.25 if post else 0.08
    P[T["Tumor"], C["Ki-67"]] = 0.35
    s("Tumor (antigen-neg)", PanCK=0.97, MSLN=0.0)
    P[T["Tumor (antigen-neg)"], C["PD-L1"]] = 0.25 if post else 0.08
    P[T["Tumor (antigen-neg)"], C["Ki-67"]] = 0.45
    s("CAR T", CD3=0.97, CAR=0.97, CD8=0.75)
    P[T["CAR T"], C["CD4"]] = 0.25
    P[T["CAR T"], C["PD-1"]] = 0.45
    P[T["CAR T"], C["Ki-67"]] = 0.30
    s("CD8 T", CD3=0.97, CD8=0.95)
    P[T["CD8 T"], C["PD-1"]] = 0.20
    s("CD4 T", CD3=0.97, CD4=0.95)
    P[T["CD4 T"], C["PD-1"]] = 0.10
    s("Macrophage", CD68=0.95, CD163=0.65)
    P[T["Macrophage"], C["PD-L1"]] = 0.55 if post else 0.20
    P[T["Macrophage"], C["CD4"]] = 0.5  # dim CD4 on monocytes/macrophages
    s("B cell", CD20=0.97)
    P[T["B cell"], C["Ki-67"]] = 0.20
    s("Stroma", SMA=0.85)
    s("Endothelial", SMA=0.35)
    return P


def expression(types: np.ndarray, timepoint: str, rng: np.random.Generator) -> np.ndarray:
    """Per-cell mean marker level before PSF/noise, (n, channels) float32.

    Positive cells get ``LEVEL`` times a log-normal factor; negative cells a faint non-specific
    level. A per-cell brightness factor (section plane, fixation) is shared by all channels.
    """
    n = len(types)
    P = positivity(timepoint)[types]
    pos = rng.random(P.shape, dtype=np.float32) < P
    var = np.exp(0.35 * rng.standard_normal(P.shape, dtype=np.float32))
    bright = np.exp(0.2 * rng.standard_normal((n, 1), dtype=np.float32))
    E = np.where(pos, 1.0, 0.025).astype(np.float32) * var * bright * LEVEL
    dim = (types == T["Macrophage"])  # CD4 on macrophages is dim
    E[dim, C["CD4"]] *= 0.3
    E[:, C["MSLN"]] *= np.exp(0.3 * rng.standard_normal(n, dtype=np.float32))  # heterogeneous target
    return E.astype(np.float32)
