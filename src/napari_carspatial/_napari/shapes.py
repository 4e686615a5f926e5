"""Regions drawn as napari Shapes layers, in a sample's level-0 pixels. Public napari API only. No Qt.

A shape's vertices are in its layer's data coordinates; ``layer.scale`` / ``layer.translate``
(public) take them to world coordinates, and the sample's geometry (its labels layer's scale and
translate, :meth:`ViewerSession.geometry`) takes world to level-0 pixels, where the table's
centroids (``obsm["spatial"]``) live. Ellipses become 64-gons; lines and paths are not regions.
"""

from __future__ import annotations

import numpy as np

#: shape types that enclose no area
LINE_TYPES = ("line", "path", "polyline")


def ellipse_polygon(corners: np.ndarray, n: int = 64) -> np.ndarray:
    """A napari ellipse (its 4 bounding-box corners) as an ``n``-gon (same leading axes)."""
    corners = np.asarray(corners, float)
    c = corners[:, -2:].mean(axis=0)
    r = (corners[:, -2:].max(axis=0) - corners[:, -2:].min(axis=0)) / 2
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    poly = np.stack([c[0] + r[0] * np.sin(t), c[1] + r[1] * np.cos(t)], axis=1)
    if corners.shape[1] > 2:
        poly = np.hstack([np.repeat(corners[:1, :-2], n, axis=0), poly])
    return poly


def shape_vertices(shapes_layer, i: int, *, n_ellipse: int = 64) -> np.ndarray | None:
    """Vertices of shape ``i`` as a polygon in the layer's data coordinates; None for lines."""
    kind = shapes_layer.shape_type[i]
    if kind in LINE_TYPES:
        return None
    verts = np.asarray(shapes_layer.data[i], float)
    if kind == "ellipse":
        verts = ellipse_polygon(verts, n_ellipse)
    return verts if len(verts) >= 3 else None


def data_to_world(layer, verts: np.ndarray) -> np.ndarray:
    """(y, x) world coordinates of a layer's data points (its public ``scale`` and ``translate``)."""
    v = np.asarray(verts, float)[:, -2:]
    return v * np.asarray(layer.scale[-2:], float) + np.asarray(layer.translate[-2:], float)


def world_to_px(session, sid: str, world_yx) -> np.ndarray:
    """World (y, x) points -> the sample's level-0 pixel (y, x)."""
    (sy, sx), (ty, tx), _ = session.geometry(sid)
    w = np.atleast_2d(np.asarray(world_yx, float))[:, -2:]
    return (w - np.asarray((ty, tx))) / np.asarray((sy, sx))


def px_to_world(session, sid: str, yx_px) -> np.ndarray:
    """The sample's level-0 pixel (y, x) -> world (y, x)."""
    (sy, sx), (ty, tx), _ = session.geometry(sid)
    p = np.atleast_2d(np.asarray(yx_px, float))[:, -2:]
    return p * np.asarray((sy, sx)) + np.asarray((ty, tx))


def shape_polygon_px(session, sid: str, shapes_layer, i: int) -> np.ndarray | None:
    """Shape ``i`` of any Shapes layer as a (y, x) level-0 pixel polygon of sample ``sid``."""
    verts = shape_vertices(shapes_layer, i)
    if verts is None:
        return None
    return world_to_px(session, sid, data_to_world(shapes_layer, verts))


def layer_polygons_px(session, sid: str, shapes_layer) -> list[np.ndarray]:
    """Every area shape of a Shapes layer as a level-0 pixel polygon (lines skipped)."""
    out = []
    for i in range(len(shapes_layer.data)):
        p = shape_polygon_px(session, sid, shapes_layer, i)
        if p is not None:
            out.append(p)
    return out


def selected_polygons_world(viewer) -> list[np.ndarray]:
    """World (y, x) vertices of the selected area shapes of every visible Shapes layer."""
    from napari.layers import Shapes

    out = []
    for layer in viewer.layers:
        if not isinstance(layer, Shapes) or not layer.visible:
            continue
        for i in sorted(layer.selected_data):
            if i >= len(layer.data):
                continue
            verts = shape_vertices(layer, i)
            if verts is not None:
                out.append(data_to_world(layer, verts))
    return out


def shapes_region(session, sid: str, shapes_layer):
    """The cells of a Shapes layer as an analysis :class:`~napari_carspatial.analysis.regions.Region`.

    Cells by centroid in polygon; the layer's polygons combine with the even-odd rule (a polygon
    drawn inside another cuts a hole, as in QuPath). ``region.area_px`` is the area of that
    union in level-0 px² (outer polygons minus the ones nested an odd number of times).
    """
    from matplotlib.path import Path as MPath

    from ..analysis.regions import Region, cells_in_polygon, polygon_area_px

    adata = session.sample(sid).table
    mask = np.zeros(adata.n_obs, bool)
    polys = layer_polygons_px(session, sid, shapes_layer)
    for px in polys:
        mask ^= cells_in_polygon(adata, px)
    area_px = 0.0
    for i, p in enumerate(polys):
        depth = sum(MPath(q[:, ::-1]).contains_point(p[0][::-1]) for j, q in enumerate(polys) if j != i)
        area_px += polygon_area_px(p) * (1 if depth % 2 == 0 else -1)
    r = Region(shapes_layer.name, mask, None, "shapes")
    r.area_px = area_px
    return r
