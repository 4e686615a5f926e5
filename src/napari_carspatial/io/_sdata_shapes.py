"""Shapes (polygons, circles) rasterized into a lazy label mask on a sample's grid
(:func:`rasterize_shapes`). Re-exported by :mod:`.spatialdata`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _ShapeRaster:
    """Polygons / circles in grid pixels, drawn block by block (an STR tree finds a block's cells)."""

    def __init__(self, gdf, ids: np.ndarray, m: np.ndarray):
        import shapely

        self.ids = np.asarray(ids, dtype=np.int64)
        geoms = np.asarray(gdf.geometry.values)
        self.radius = gdf["radius"].to_numpy(float) if "radius" in gdf.columns else None
        scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
        aff = [m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]]
        from shapely import affinity

        g = np.array([None if x is None else affinity.affine_transform(x, aff) for x in geoms], dtype=object)
        if self.radius is not None:
            self.radius = self.radius * scale
            g = np.array([x if x is None or x.geom_type != "Point" else x.buffer(r, quad_segs=8)
                          for x, r in zip(g, self.radius, strict=True)], dtype=object)
        self.geoms = g
        self.area = np.nan_to_num(shapely.area(g), nan=0.0)
        self.centroids = shapely.get_coordinates(shapely.centroid(g))
        self.tree = shapely.STRtree(g)
        self.dtype = np.uint16 if self.ids.max(initial=0) < 2**16 else np.uint32

    def block(self, y0: int, x0: int, h: int, w: int, factor: float = 1.0) -> np.ndarray:
        """Labels of the block ``[y0, y0 + h) x [x0, x0 + w)`` of the grid downsampled by ``factor``."""
        import shapely
        from skimage.draw import polygon

        out = np.zeros((h, w), dtype=self.dtype)
        f = float(factor)
        box = shapely.box((x0 - 1) * f, (y0 - 1) * f, (x0 + w + 1) * f, (y0 + h + 1) * f)
        idx = self.tree.query(box)
        if idx.size == 0:
            return out
        idx = idx[np.argsort(-self.area[idx], kind="stable")]
        for i in idx:
            g = self.geoms[i]
            if g is None or g.is_empty:
                continue
            for part in getattr(g, "geoms", [g]):
                xy = np.asarray(part.exterior.coords)
                # level-0 pixel coords -> this level's (pixel j at level-0 j * f, as a strided pyramid
                # and napari's multiscale place it), then block-local
                rr, cc = polygon(xy[:, 1] / f - y0, xy[:, 0] / f - x0, shape=(h, w))
                out[rr, cc] = self.ids[i]
        if f == 1.0:  # level 0 keeps every cell: one whose outline holds no pixel centre gets its centroid pixel
            lost = idx[~np.isin(self.ids[idx], np.unique(out))]
            for i in lost:
                r, c = int(round(self.centroids[i, 1])) - y0, int(round(self.centroids[i, 0])) - x0
                if 0 <= r < h and 0 <= c < w:
                    out[r, c] = self.ids[i]
        return out


def rasterize_shapes(gdf: Any, ids: np.ndarray, m: np.ndarray, shape_yx: tuple[int, int], *, chunk: int = 2048,
                     min_size: int = 2048) -> list:
    """Lazy label pyramid of polygons / circles (``radius`` column) with the given ids.

    Each pyramid level is drawn at its own resolution block by block (dask), so an overview
    never draws level 0. Larger cells are drawn first, so a small cell overlapping a large one
    keeps its pixels; at level 0 a cell whose outline contains no pixel centre gets the pixel
    under its centroid, so every id is in the mask.

    Parameters
    ----------
    gdf
        GeoDataFrame of polygons or points (circles with a ``radius`` column).
    ids
        Label of each shape.
    m
        3 x 3 map from the shapes' coordinates to our pixel-centre grid.
    shape_yx
        Level-0 size.
    chunk
        Block edge.
    min_size
        Levels are added until the smallest is at most this size.

    Returns
    -------
    list of dask.array.Array
        The label pyramid, level 0 first.
    """
    import dask
    import dask.array as da

    r = _ShapeRaster(gdf, ids, m)
    h, w = (int(s) for s in shape_yx)
    levels, f = [], 1
    while True:
        lh, lw = -(-h // f), -(-w // f)
        rows = []
        for y0 in range(0, lh, chunk):
            row = []
            for x0 in range(0, lw, chunk):
                bh, bw = min(chunk, lh - y0), min(chunk, lw - x0)
                blk = dask.delayed(r.block, pure=True)(y0, x0, bh, bw, float(f))
                row.append(da.from_delayed(blk, shape=(bh, bw), dtype=r.dtype))
            rows.append(row)
        levels.append(da.block(rows))
        if max(lh, lw) <= min_size:
            break
        f *= 2
    return levels
