"""SpatialData elements onto one pixel grid: :class:`Grid`, the affines (:func:`to_grid_affine`,
with :data:`HALF_PIXEL` applied in exactly one place), lazy resampling (:func:`resample_to_grid`)
and the image / labels levels on a grid. Re-exported by :mod:`.spatialdata`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model import SampleError
from ._util import strided_pyramid

if TYPE_CHECKING:
    import dask.array as da

#: SpatialData puts the centre of pixel ``i`` at ``i + 0.5`` in an element's intrinsic frame
HALF_PIXEL = 0.5


@dataclass
class Grid:
    """The target pixel grid of a sample: coordinate system, affine and size.

    Attributes
    ----------
    coordinate_system
        The SpatialData coordinate system the affine starts from.
    affine
        3 x 3 matrix from ``(x, y, 1)`` in ``coordinate_system`` to the grid's intrinsic
        (SpatialData, pixel-corner) ``(x, y, 1)``.
    shape_yx
        Level-0 size of the grid.
    pixel_size_um
        µm per grid pixel, when known.
    origin_um
        (x, y) in µm of the grid's corner, when known (kept in ``Sample.metadata`` so exports
        can place the sample back on the slide).
    extras
        Reader-specific facts about the grid (free-form).
    """

    coordinate_system: str
    affine: np.ndarray
    shape_yx: tuple[int, int]
    pixel_size_um: float | None = None
    origin_um: tuple[float, float] | None = None
    extras: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- transformations
def _affine(element, cs: str) -> np.ndarray:
    from spatialdata.transformations import get_transformation

    t = get_transformation(element, to_coordinate_system=cs)
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), dtype=np.float64)


def _systems(element) -> dict:
    from spatialdata.transformations import get_transformation

    return get_transformation(element, get_all=True) or {}


def to_grid_affine(element: Any, grid: Grid) -> np.ndarray:
    """Affine from ``element``'s intrinsic (x, y) to the grid's pixel-centre (x, y) (our level 0).

    Parameters
    ----------
    element
        A SpatialData element (image, labels, shapes, points).
    grid
        The sample's grid.

    Returns
    -------
    numpy.ndarray
        3 x 3.
    """
    m = grid.affine @ _affine(element, grid.coordinate_system)
    shift = np.eye(3)
    shift[:2, 2] = -HALF_PIXEL
    return shift @ m


def _raster_to_grid(element, grid: Grid) -> np.ndarray:
    """Affine between intrinsic corner frames (raster element -> grid), no half-pixel shift."""
    return grid.affine @ _affine(element, grid.coordinate_system)


def _is_identity(m: np.ndarray, tol: float = 1e-6) -> bool:
    return bool(np.allclose(m, np.eye(3), atol=tol))


def _axis_aligned(m: np.ndarray, tol: float = 1e-9) -> bool:
    return abs(m[0, 1]) < tol and abs(m[1, 0]) < tol and m[0, 0] > 0 and m[1, 1] > 0


def resample_to_grid(arr: da.Array, m: np.ndarray, shape_yx: tuple[int, int], *, what: str, fill: float = 0,
                     chunk: int = 1024) -> da.Array:
    """Lazy nearest-neighbour resampling of a (..., Y, X) dask array onto a grid.

    Only axis-aligned maps (scale and translation) are supported; grid pixels that fall outside
    the source get ``fill``. Each output block reads only the source pixels it needs (one task
    per block).

    Parameters
    ----------
    arr
        The source (..., Y, X).
    m
        3 x 3 map from the array's intrinsic corner frame to the grid's.
    shape_yx
        Grid size.
    what
        Name for messages.
    fill
        Value outside the source.
    chunk
        Output block edge.

    Returns
    -------
    dask.array.Array
        (..., *shape_yx).

    Raises
    ------
    SampleError
        A rotation or shear.
    """
    import dask.array as da

    if not _axis_aligned(m):
        raise SampleError(f"the {what} is rotated or sheared relative to the sample's pixel grid "
                          f"(affine {np.round(m, 4).tolist()}); only scale and translation are supported.",
                          hint="Transform it to an axis-aligned image first (spatialdata.transform).")
    sx, tx, sy, ty = m[0, 0], m[0, 2], m[1, 1], m[1, 2]
    h, w = (int(s) for s in shape_yx)
    rows = np.floor((np.arange(h) + 0.5 - ty) / sy).astype(np.int64)
    cols = np.floor((np.arange(w) + 0.5 - tx) / sx).astype(np.int64)
    src_h, src_w = arr.shape[-2:]
    lead = tuple(arr.shape[:-2])
    fill_v = np.asarray(fill, dtype=arr.dtype)
    blocks = []
    for y0 in range(0, h, chunk):
        row = []
        for x0 in range(0, w, chunk):
            r = rows[y0:y0 + chunk]
            c = cols[x0:x0 + chunk]
            rv, cv = (r >= 0) & (r < src_h), (c >= 0) & (c < src_w)
            shape = (*lead, r.size, c.size)
            if not rv.any() or not cv.any():
                row.append(da.full(shape, fill_v, dtype=arr.dtype, chunks=shape))
                continue
            r0, r1 = int(r[rv].min()), int(r[rv].max()) + 1
            c0, c1 = int(c[cv].min()), int(c[cv].max()) + 1
            src = arr[..., r0:r1, c0:c1].rechunk(-1)
            lr, lc = np.clip(r - r0, 0, r1 - r0 - 1), np.clip(c - c0, 0, c1 - c0 - 1)

            def take(a, lr=lr, lc=lc, rv=rv, cv=cv):
                out = a[..., lr, :][..., lc]
                if not (rv.all() and cv.all()):
                    out = np.where(rv[:, None] & cv[None, :], out, fill_v)
                return out

            row.append(src.map_blocks(take, chunks=shape, dtype=arr.dtype))
        blocks.append(row)
    return da.block(blocks)


def grid_from_raster(element: Any, cs: str, *, pixel_size_um: float | None = None) -> Grid:
    """The level-0 grid of an image or labels element.

    Parameters
    ----------
    element
        Image or labels element (DataArray or DataTree).
    cs
        Coordinate system.
    pixel_size_um
        µm per grid pixel, when known.

    Returns
    -------
    Grid
    """
    from spatialdata import get_pyramid_levels

    lvl0 = get_pyramid_levels(element, attr="data", n=0) if _is_tree(element) else element.data
    m = _affine(element, cs)
    return Grid(coordinate_system=cs, affine=np.linalg.inv(m), shape_yx=tuple(int(s) for s in lvl0.shape[-2:]),
                pixel_size_um=pixel_size_um)


def _is_tree(element) -> bool:
    return type(element).__name__ == "DataTree"


def _levels(element) -> list:
    from spatialdata import get_pyramid_levels

    if _is_tree(element):
        return list(get_pyramid_levels(element, attr="data"))
    return [element.data]


def _image_levels(element, name: str, grid: Grid, *, channel_prefix: bool) -> tuple[list, list[str]]:
    from spatialdata.models import get_axes_names, get_channel_names

    axes = get_axes_names(element)
    if "z" in axes:
        raise SampleError(f"image {name!r} is 3-D ({axes}); only 2-D images are read.")
    names = [str(c) for c in get_channel_names(element)]
    if all(c.isdigit() for c in names):
        names = [name] if len(names) == 1 else [f"{name}_{c}" for c in names]
    elif channel_prefix:
        names = [f"{name}:{c}" for c in names]
    m = _raster_to_grid(element, grid)
    levels = _levels(element)
    if _is_identity(m) and tuple(levels[0].shape[-2:]) == tuple(grid.shape_yx):
        return levels, names
    lvl0 = resample_to_grid(levels[0], m, grid.shape_yx, what=f"image {name!r}")
    return strided_pyramid(lvl0), names


def _labels_levels(element, name: str, grid: Grid) -> list:
    m = _raster_to_grid(element, grid)
    levels = _levels(element)
    if _is_identity(m) and tuple(levels[0].shape[-2:]) == tuple(grid.shape_yx):
        return levels
    return strided_pyramid(resample_to_grid(levels[0], m, grid.shape_yx, what=f"labels {name!r}"))
