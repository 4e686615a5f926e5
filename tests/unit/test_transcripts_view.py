"""Transcripts on the slide (``_napari/transcripts.py``) on napari's Qt-free ViewerModel: the
density at overview, the points in view only when zoomed in, the cap with its note, the gene and
quality filters, and the read-nothing pans; every number against a brute-force count."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from napari.components import ViewerModel  # noqa: E402

from napari_carspatial._napari import add_sample_layers, camera, session_for  # noqa: E402
from napari_carspatial._napari.transcripts import (  # noqa: E402
    ROLE_DENSITY,
    DensityRequest,
    PointsRequest,
    TranscriptFilter,
    TranscriptsView,
    density_levels,
    estimate_in_view,
    fetch_points,
    summed_area,
)
from napari_carspatial.model import Sample  # noqa: E402
from napari_carspatial.model.points import transcripts_from_arrays  # noqa: E402

GENES = ["CD3E", "IL18", "MS4A1", "CAR"]


def _sample(n=20_000, size=2000, seed=0, px=0.25):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, size - 1, n)
    y = rng.uniform(0, size - 1, n)
    g = rng.integers(0, len(GENES), n)
    q = rng.uniform(0, 40, n)
    pts = transcripts_from_arrays(x, y, g, GENES, quality=q, shape_yx=(size, size), quality_name="qv")
    lab = np.zeros((size, size), np.uint32)
    lab[10:20, 10:20] = 1
    table = ad.AnnData(X=np.ones((1, len(GENES)), np.float32), obs=pd.DataFrame({"cell_id": [1]}, index=["c1"]))
    table.var_names = GENES
    table.obsm["spatial"] = np.array([[15.0, 15.0]])
    s = Sample("tx", image=[], channel_names=[], pixel_size_um=px, labels=[lab], table=table, points=pts)
    return s.validate(), (x, y, g, q)


def _view(sample):
    v = ViewerModel()
    add_sample_layers(v, sample)
    sess = session_for(v)
    sid = sess.sid_of(sample)
    return v, sess, sid, TranscriptsView(sess, sid)


def _brute(raw, bbox, genes=None, qmin=None):
    x, y, g, q = raw
    y0, x0, y1, x1 = bbox
    keep = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    if genes is not None:
        keep &= np.isin(g, [GENES.index(n) for n in genes])
    if qmin is not None:
        keep &= q.astype(np.float32) >= qmin
    return int(keep.sum())


def test_density_levels_are_means_with_the_same_total_per_area():
    s, raw = _sample()
    lv = density_levels(s.points, TranscriptFilter(), pixel_size_um=s.pixel_size_um)
    bin_um2 = (s.points.bin_px * s.pixel_size_um) ** 2
    # level 0 = transcripts per 100 µm² per bin: its sum over bins times the bin area is the total
    assert np.isclose(lv[0].sum() * bin_um2 / 100.0, len(raw[0]), rtol=1e-5)
    for k in range(1, len(lv)):   # every level has the same mean density (means, not sums)
        h, w = lv[k - 1].shape
        assert np.isclose(lv[k].sum() * 4, lv[k - 1].sum(), rtol=1e-5), (k, h, w)
    one = density_levels(s.points, TranscriptFilter.make(["IL18"], 20.0), pixel_size_um=s.pixel_size_um)
    assert np.isclose(one[0].sum() * bin_um2 / 100.0, _brute(raw, (-1, -1, 1e9, 1e9), ["IL18"], 20.0), rtol=1e-5)


def test_estimate_in_view_is_an_upper_bound_from_bins_and_fetch_is_exact():
    s, raw = _sample()
    pts = s.points
    for flt in (TranscriptFilter(), TranscriptFilter.make(["CD3E", "CAR"]), TranscriptFilter.make(["IL18"], 25.0)):
        counts = pts.density(genes=None if flt.genes is None else list(flt.genes))
        sat = summed_area(counts)
        for bbox in ((100, 130, 400, 700), (0, 0, 1999, 1999), (1500.5, 20.2, 1999, 90.7)):
            est = estimate_in_view(pts, bbox, sat)
            exact = _brute(raw, bbox, flt.genes, flt.min_quality)
            assert est >= exact
            assert est == _brute(raw, _bins_box(pts, bbox), flt.genes)   # whole bins, no quality
            b = fetch_points(pts, PointsRequest(bbox, flt, max_points=10**9))
            assert b.n_matching == len(b) == exact
            capped = fetch_points(pts, PointsRequest(bbox, flt, max_points=50))
            assert len(capped) == min(50, exact) and capped.n_matching == exact
            assert capped.capped == (exact > 50)


def _bins_box(pts, bbox):
    b = pts.bin_px
    r0, c0 = (np.floor((v + 0.5) / b) for v in bbox[:2])
    r1, c1 = (np.floor((v + 0.5) / b) for v in bbox[2:])
    return (r0 * b - 0.5, c0 * b - 0.5, (r1 + 1) * b - 0.5 - 1e-4, (c1 + 1) * b - 0.5 - 1e-4)


def test_overview_shows_density_zoomed_in_shows_the_points_in_view_only():
    s, raw = _sample(n=60_000)
    v, sess, sid, tv = _view(s)
    assert any(lyr.metadata.get("carspatial_role") == ROLE_DENSITY for lyr in v.layers)  # came with the sample
    v.reset_view()
    st = tv.refresh()
    assert st.mode == "density" and st.n_in_view == 60_000
    assert tv.points_layer is None or len(tv.points_layer.data) == 0
    assert "Zoom in" in st.note()
    # zoom on a 100 x 100 µm window: 400 px of 0.25 µm
    cam = camera(v)
    cam.center = (0.0, 100.0 * 0.25 + 50.0, 100.0 * 0.25 + 50.0)[-2:]
    cam.zoom = 8.0      # 800 x 600 canvas -> 100 x 75 µm
    st = tv.refresh()
    assert st.mode == "points"
    lyr = tv.points_layer
    assert lyr is not None and lyr.visible and not tv.density_layer.visible
    assert st.n_shown == st.n_matching == _brute(raw, st.bbox) == len(lyr.data)
    assert st.n_shown < 60_000 / 10   # never the whole table
    y0, x0, y1, x1 = tv.view_bbox_px()
    assert st.bbox[0] <= y0 and st.bbox[2] >= y1
    # points are placed in world coordinates like the cells (scale = pixel size)
    assert tuple(lyr.scale) == (0.25, 0.25)


def test_pan_inside_the_margin_reads_nothing_and_leaving_it_refetches():
    s, raw = _sample(n=60_000)
    v, sess, sid, tv = _view(s)
    cam = camera(v)
    cam.center = (60.0, 60.0)
    cam.zoom = 8.0
    tv.refresh()
    first = tv.state.bbox
    cam.center = (61.0, 61.0)            # 1 µm pan: inside the margin
    assert tv.request() is None
    cam.center = (200.0, 200.0)          # far: a new read
    req = tv.request()
    assert isinstance(req, PointsRequest) and req.bbox != first
    tv.apply(req, tv.compute(req))
    assert tv.state.n_shown == _brute(raw, tv.state.bbox)


def test_cap_note_and_gene_and_quality_filters():
    s, raw = _sample(n=60_000)
    v, sess, sid, tv = _view(s)
    tv.mode = "points"
    tv.max_points = 1000
    v.reset_view()
    st = tv.refresh(force=True)
    assert st.mode == "points" and st.capped and st.n_shown == 1000
    assert st.n_matching == _brute(raw, st.bbox)
    assert "random 1,000 of" in st.note()
    tv.set_filter(["IL18"], 30.0)
    tv.mode = "auto"
    tv.max_points = 50_000
    cam = camera(v)
    cam.center = (100.0, 100.0)
    cam.zoom = 4.0
    st = tv.refresh()
    assert st.mode == "points"
    assert st.n_shown == _brute(raw, st.bbox, ["IL18"], 30.0)
    col = np.asarray(tv.points_layer.face_color)
    assert np.allclose(col, col[0])          # one gene, one colour
    assert tv.colors["IL18"].startswith("#")
    with pytest.raises(KeyError, match="NOPE"):
        tv.set_filter(["NOPE"])


def test_density_request_when_the_filter_changes_at_overview():
    s, raw = _sample(n=60_000)
    v, sess, sid, tv = _view(s)
    v.reset_view()
    tv.refresh()
    tv.set_filter(["CAR"], 10.0)     # 15,000 in view would be points in "auto": ask for the density
    tv.mode = "density"
    req = tv.request()
    assert isinstance(req, DensityRequest) and req.flt == tv.flt
    levels = tv.compute(req)
    tv.apply(req, levels)
    d = tv.density_layer
    assert d.visible and "CAR" in d.name and "quality ≥ 10" in d.name
    bin_um2 = (s.points.bin_px * 0.25) ** 2
    lvl0 = np.asarray(d.data[0] if d.multiscale else d.data)
    assert lvl0.shape == s.points.bins_shape
    assert np.isclose(lvl0.sum() * bin_um2 / 100, _brute(raw, (-1, -1, 1e9, 1e9), ["CAR"], 10.0),
                      rtol=1e-5)


def test_no_quality_platform_refuses_a_quality_threshold():
    s, _ = _sample(n=100)
    s.points.quality_name = None
    v, sess, sid, tv = _view(s)
    with pytest.raises(ValueError, match="no quality"):
        tv.set_filter(None, 20.0)


def test_a_view_never_hands_napari_more_than_the_cap():
    s, raw = _sample(n=60_000)
    v, sess, sid, tv = _view(s)
    tv.max_points = 5000
    for zoom in (0.2, 0.5, 1, 2, 4, 8, 16):
        camera(v).zoom = zoom
        tv.refresh()
        lyr = tv.points_layer
        assert lyr is None or len(lyr.data) <= 5000
