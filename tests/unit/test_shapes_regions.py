"""Regions from napari Shapes layers (_napari/shapes.py) through public layer attributes only, on
napari's Qt-free ViewerModel: shapes in µm on a sample placed in a montage, ellipses, holes by
the even-odd rule, and the union's area, compared with a hand computation in level-0 pixels."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from napari.components import ViewerModel  # noqa: E402

from napari_carspatial._napari import (  # noqa: E402
    add_sample_layers,
    session_for,
    shape_polygon_px,
    shapes_region,
)
from napari_carspatial.model import Sample  # noqa: E402

PX = 0.5                      # µm per pixel
OFFSET = (1000.0, 2000.0)     # world (y, x) µm: the sample sits in a montage


def _sample():
    yy, xx = np.mgrid[5:200:10, 5:200:10]       # a 20 x 20 grid of cells, 10 px apart
    xy = np.c_[xx.ravel(), yy.ravel()].astype(float)
    n = len(xy)
    lab = np.zeros((200, 200), np.uint32)
    for i, (x, y) in enumerate(xy.astype(int)):
        lab[y - 2:y + 3, x - 2:x + 3] = i + 1
    t = ad.AnnData(X=np.ones((n, 1), np.float32),
                   obs=pd.DataFrame({"cell_id": np.arange(1, n + 1),
                                     "cell_type": pd.Categorical(["T"] * n)}, index=[str(i) for i in range(n)]))
    t.var_names = ["DAPI"]
    t.obsm["spatial"] = xy
    return Sample("grid", image=[np.ones((1, 200, 200), np.float32)], channel_names=["DAPI"], pixel_size_um=PX,
                  labels=[lab], table=t)


def _world(yx_px):
    """Level-0 px (y, x) -> world µm of the placed sample."""
    return np.asarray(yx_px, float) * PX + np.asarray(OFFSET)


@pytest.fixture
def placed():
    viewer = ViewerModel()
    s = _sample()
    add_sample_layers(viewer, s, translate=OFFSET)
    session = session_for(viewer)
    return viewer, session, session.sid_of(s), s


def test_polygon_in_world_units_maps_to_level0_pixels(placed):
    viewer, session, sid, s = placed
    square_px = np.array([[40, 40], [40, 100], [100, 100], [100, 40]], float)
    # a Shapes layer with its own scale: data in 1/4 µm units, no translate
    lyr = viewer.add_shapes([_world(square_px) * 4], shape_type="polygon", scale=(0.25, 0.25))
    np.testing.assert_allclose(shape_polygon_px(session, sid, lyr, 0), square_px)
    r = shapes_region(session, sid, lyr)
    xy = s.table.obsm["spatial"]
    hand = (xy[:, 0] > 40) & (xy[:, 0] < 100) & (xy[:, 1] > 40) & (xy[:, 1] < 100)
    np.testing.assert_array_equal(r.mask, hand)
    assert r.area_px == pytest.approx(60 * 60)


def test_hole_by_even_odd_and_area_of_the_union(placed):
    viewer, session, sid, s = placed
    outer = np.array([[20, 20], [20, 180], [180, 180], [180, 20]], float)
    inner = np.array([[60, 60], [60, 140], [140, 140], [140, 60]], float)
    lyr = viewer.add_shapes([_world(outer), _world(inner)], shape_type="polygon")
    r = shapes_region(session, sid, lyr)
    xy = s.table.obsm["spatial"]
    x, y = xy[:, 0], xy[:, 1]
    in_outer = (x > 20) & (x < 180) & (y > 20) & (y < 180)
    in_inner = (x > 60) & (x < 140) & (y > 60) & (y < 140)
    np.testing.assert_array_equal(r.mask, in_outer & ~in_inner)
    assert r.area_px == pytest.approx(160 * 160 - 80 * 80)


def test_ellipse_and_lines(placed):
    viewer, session, sid, s = placed
    box = np.array([[50, 50], [50, 150], [150, 150], [150, 50]], float)   # circle of radius 50 px at (100, 100)
    lyr = viewer.add_shapes([_world(box)], shape_type="ellipse")
    viewer.layers[-1].add([_world(np.array([[0, 0], [199, 199]], float))], shape_type="line")
    r = shapes_region(session, sid, lyr)
    xy = s.table.obsm["spatial"]
    d = np.hypot(xy[:, 0] - 100, xy[:, 1] - 100)
    assert r.mask[d < 48].all()                   # inside the 64-gon
    assert not r.mask[d > 50].any()
    assert r.area_px == pytest.approx(np.pi * 50 ** 2, rel=0.01)
    assert shape_polygon_px(session, sid, lyr, 1) is None   # a line is not a region
