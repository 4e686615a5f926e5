"""Tissue layout of the synthetic demo: smooth fields on a coarse grid (µm units).

The layout depends only on the seed and the physical slide size, never on the timepoint, so
the "pre" and "post" samples of one demo patient share tumour nests, stroma, vessels and the
tertiary lymphoid structure (TLS). Everything here works on a coarse grid (``grid_um`` per
node) and is sampled at cell positions by bilinear interpolation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

log = logging.getLogger(__name__)

#: coarse grid step of the layout fields, µm
GRID_UM = 8.0


@dataclass
class Layout:
    """Coarse layout fields; node ``(i, j)`` sits at ``(i * grid_um, j * grid_um)`` µm (y, x)."""

    grid_um: float
    tissue: np.ndarray  # bool, cells may sit here
    tumor: np.ndarray  # bool, tumour nests
    dist_um: np.ndarray  # float32, signed distance to the tumour boundary (negative inside)
    fiber_c2: np.ndarray  # cos(2*angle) of the stroma fibre direction (tangent to nests)
    fiber_s2: np.ndarray  # sin(2*angle)
    vessel: np.ndarray  # float32 in [0, 1], 1 on vessel centre lines
    vessel_c2: np.ndarray
    vessel_s2: np.ndarray
    patch: np.ndarray  # float32, antigen-negative subclone propensity (higher = more likely)
    tls: np.ndarray  # bool, tertiary lymphoid structure(s)

    def sample(self, name: str, y_um: np.ndarray, x_um: np.ndarray, order: int = 1) -> np.ndarray:
        """Interpolate field ``name`` at positions given in µm."""
        field = getattr(self, name)
        coords = np.stack([np.asarray(y_um) / self.grid_um, np.asarray(x_um) / self.grid_um])
        out = ndi.map_coordinates(field.astype(np.float32, copy=False), coords, order=order, mode="nearest")
        return out.astype(field.dtype if field.dtype == bool else np.float32)


def _smooth_noise(rng: np.random.Generator, shape, sigma_nodes: float) -> np.ndarray:
    """Gaussian-filtered white noise, normalised to zero mean and unit standard deviation."""
    f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_nodes, mode="reflect")
    sd = float(f.std()) or 1.0
    return (f - f.mean()) / sd


def _tangent(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin of twice the angle of the iso-lines of ``field`` (x, y plane, radians)."""
    gy, gx = np.gradient(ndi.gaussian_filter(field, 1.5))
    ang = np.arctan2(gy, gx) + np.pi / 2
    return np.cos(2 * ang).astype(np.float32), np.sin(2 * ang).astype(np.float32)


def make_layout(rng: np.random.Generator, height_um: float, width_um: float, *, tumor_fraction: float = 0.38,
                grid_um: float = GRID_UM) -> Layout:
    """Build the coarse tissue layout for a slide of ``height_um`` x ``width_um``.

    Parameters
    ----------
    rng
        Random generator (the layout stream of the demo seed).
    height_um, width_um
        Physical slide size.
    tumor_fraction
        Target fraction of the tissue area covered by tumour nests.
    grid_um
        Coarse grid step.

    Returns
    -------
    Layout
    """
    shape = (int(np.ceil(height_um / grid_um)) + 2, int(np.ceil(width_um / grid_um)) + 2)
    s = 1.0 / grid_um
    # tumour nests: large irregular blobs with rough edges (several per mm²)
    f = (_smooth_noise(rng, shape, 200 * s) + 0.35 * _smooth_noise(rng, shape, 55 * s)
         + 0.15 * _smooth_noise(rng, shape, 18 * s))
    tumor = f > np.quantile(f, 1 - tumor_fraction)
    min_nodes = int((110 * s) ** 2)
    tumor = _drop_small(tumor, min_nodes)
    tumor = ~_drop_small(~tumor, int((40 * s) ** 2))  # fill tiny holes
    if not tumor.any():  # degenerate tiny slide: one central nest
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        tumor = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (0.3 * min(shape)) ** 2
    d_out = ndi.distance_transform_edt(~tumor)
    d_in = ndi.distance_transform_edt(tumor)
    dist = np.where(tumor, -(d_in - 0.5), d_out - 0.5).astype(np.float32) * grid_um

    # holes (fat, tears, gland lumina) only in stroma far from tumour
    h = _smooth_noise(rng, shape, 70 * s) + 0.3 * _smooth_noise(rng, shape, 20 * s)
    holes = (h > np.quantile(h, 0.93)) & (dist > 60)
    tissue = ~holes

    # tertiary lymphoid structures: round dense aggregates far from tumour
    area_mm2 = height_um * width_um / 1e6
    n_tls = max(1, int(round(area_mm2 / 3.0)))
    far = max(80.0, min(220.0, 0.6 * float(dist.max())))
    cand = np.flatnonzero(((dist > far) & tissue).ravel())
    tls = np.zeros(shape, bool)
    if cand.size:
        yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
        centers = rng.choice(cand, size=min(n_tls, cand.size), replace=False)
        for c in centers:  # a handful of structures per slide, not per cell
            cy, cx = divmod(int(c), shape[1])
            r = rng.uniform(90, 140) * s
            e = rng.uniform(0.75, 1.0)
            th = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
            v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
            tls |= (u / r) ** 2 + (v / (r * e)) ** 2 < 1
        tls &= dist > 40
    tissue |= tls

    # vessels: zero-crossings of a smooth field, in stroma
    vf = _smooth_noise(rng, shape, 45 * s)
    vessel = np.exp(-(vf / 0.08) ** 2).astype(np.float32) * (dist > 25)
    vessel_c2, vessel_s2 = _tangent(vf)
    fiber_c2, fiber_s2 = _tangent(dist)

    # antigen-negative subclone: a few contiguous patches inside the nests
    patch = (_smooth_noise(rng, shape, 110 * s) + 0.25 * _smooth_noise(rng, shape, 25 * s)).astype(np.float32)

    log.debug("layout %s nodes: tumour %.2f, TLS %d, holes %.2f", shape, tumor.mean(), int(tls.any()), holes.mean())
    return Layout(grid_um=grid_um, tissue=tissue, tumor=tumor, dist_um=dist, fiber_c2=fiber_c2, fiber_s2=fiber_s2,
                  vessel=vessel, vessel_c2=vessel_c2, vessel_s2=vessel_s2, patch=patch, tls=tls)


def _drop_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[lab]
