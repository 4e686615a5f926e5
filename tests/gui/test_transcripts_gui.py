"""The Transcripts dock and genes in every dock, as a user drives them: File > Open of the real
Xenium and CosMx crops (cells, genes and transcripts equal to the files'), density at overview,
points when zoomed in (debounced, in a worker when large, capped with a note), the searchable
gene list with colours, the quality filter, RNA cell types into a column the curation uses,
colouring cells by a gene in the Legend, the inspector's top genes, gating on counts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_carspatial._napari import ROLE_DENSITY, ROLE_POINTS, camera, session_for

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


def _real(sub):
    p = REAL / sub
    if not p.exists():
        pytest.skip(f"real data {p} is absent")
    return p


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """CosMx link folders and transcript indexes go to a temporary cache, not the user's."""
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def xenium_read():
    """The Xenium crop read once (5 s); each test gets a copy of its table."""
    from napari_carspatial.io import read_sample

    (s,) = read_sample(_real("xenium_crop"))
    return s


def _xenium(viewer, read):
    from napari_carspatial._napari import add_sample_layers
    from napari_carspatial.model import Sample

    s = Sample(read.name, image=[], channel_names=[], pixel_size_um=read.pixel_size_um, labels=read.labels,
               table=read.table.copy(), points=read.points, metadata=dict(read.metadata))
    add_sample_layers(viewer, s)
    return s


def _by_role(viewer, role):
    return [ly for ly in viewer.layers if ly.metadata.get("carspatial_role") == role]


def _dock(viewer, name="Transcripts"):
    _, w = viewer.window.add_plugin_dock_widget("napari-carspatial", name)
    return w


def _brute(sample, bbox, genes=None, qmin=None):
    pts = sample.points
    d = pts.query(columns=("x", "y", "gene", "quality"))
    y0, x0, y1, x1 = bbox
    keep = (d["x"] >= x0) & (d["x"] <= x1) & (d["y"] >= y0) & (d["y"] <= y1)
    if genes:
        keep &= np.isin(d["gene"], pts.gene_codes(genes))
    if qmin is not None:
        keep &= d["quality"] >= qmin
    return int(keep.sum())


def _zoom_to(viewer, sample, cx_px, cy_px, field_um):
    cam = camera(viewer)
    px = sample.pixel_size_um or 1.0
    cam.center = (cy_px * px, cx_px * px)
    cam.zoom = min(viewer.canvas.size) / field_um


def test_file_open_xenium_crop_cells_genes_transcripts(make_napari_viewer_proxy, qtbot):
    src = _real("xenium_crop")
    viewer = make_napari_viewer_proxy()
    viewer.open(str(src), plugin="napari-carspatial")
    sess = session_for(viewer)
    (sid,) = sess.samples()
    s = sess.sample(sid)
    # counts equal the files'
    cells = pd.read_parquet(src / "cells.parquet")
    tx = pd.read_parquet(src / "transcripts.parquet")
    import h5py

    with h5py.File(src / "cell_feature_matrix.h5") as f:
        n_features = len(f["matrix/features/name"])
    assert s.table.n_obs == len(cells) == 526
    assert s.table.n_vars == n_features == 30
    assert len(s.points) == len(tx) == 5260
    assert s.points.gene_counts() == {str(k): int(v) for k, v in tx["feature_name"].astype(str).value_counts().items()}
    (density,) = _by_role(viewer, ROLE_DENSITY)            # transcripts came with File > Open
    assert density.visible and tuple(density.units) == ("µm", "µm") or str(density.units[0]) in ("um", "micrometer")
    w = _dock(viewer)
    assert w.sample_id == sid and w.view is not None
    assert w.genes_view.model.rowCount() == s.points.n_genes
    # overview: too dense to tell molecules apart at this zoom -> density; zoomed in: the points in view
    w.set_mode("density")
    assert w.view.state.mode == "density" and density.visible
    w.set_mode("auto")
    _zoom_to(viewer, s, 1000, 1000, 60.0)
    qtbot.waitUntil(lambda: w.view.state.mode == "points" and w._worker is None, timeout=20_000)
    (pts,) = _by_role(viewer, ROLE_POINTS)
    st = w.view.state
    assert len(pts.data) == st.n_shown == _brute(s, st.bbox) > 0
    assert not density.visible
    assert "Showing all" in w.display_view.note.text()


def test_file_open_cosmx_crop_cells_genes_transcripts(make_napari_viewer_proxy):
    src = _real("cosmx_crop")
    viewer = make_napari_viewer_proxy()
    viewer.open(str(src), plugin="napari-carspatial")
    sess = session_for(viewer)
    (sid,) = sess.samples()
    s = sess.sample(sid)
    meta = pd.read_csv(src / "Run5642_S3_Quarter_metadata_file.csv")
    header = pd.read_csv(src / "Run5642_S3_Quarter_exprMat_file.csv", nrows=0).columns
    tx = pd.read_csv(src / "Run5642_S3_Quarter_tx_file.csv")
    assert s.table.n_obs == int((meta["cell_ID"] != 0).sum()) == 27
    assert s.table.n_vars == len([c for c in header if c not in ("fov", "cell_ID")]) == 960
    assert len(s.points) == len(tx) == 4188
    assert _by_role(viewer, ROLE_DENSITY)
    w = _dock(viewer)
    v = w.view
    assert not w.display_view.quality_check.isEnabled()     # CosMx gives no per-molecule quality
    w.set_quality(20.0)                                     # refused with a message, nothing hidden
    assert v.flt.min_quality is None
    _zoom_to(viewer, s, 2000, 2000, 800.0)                  # pixels (no pixel size in the files)
    w.update_view(wait=True)
    assert v.state.mode == "points" and v.state.n_shown == _brute(s, v.state.bbox)


def _synthetic(n=300_000, side=20_000, px=0.2125, seed=0):
    from napari_carspatial.model import Sample
    from napari_carspatial.model.points import transcripts_from_arrays

    rng = np.random.default_rng(seed)
    genes = ["CD3E", "IL18", "CAR", "MS4A1", "EPCAM"]
    x, y = rng.uniform(0, side - 1, n), rng.uniform(0, side - 1, n)
    pts = transcripts_from_arrays(x, y, rng.integers(0, len(genes), n), genes, quality=rng.uniform(0, 40, n),
                                  shape_yx=(side, side), quality_name="qv")
    # transcripts only (no image, no mask: a 20,000 px mask would cost more to draw than the points)
    return Sample("synthetic", image=[], channel_names=[], pixel_size_um=px, points=pts)


def test_large_reads_run_in_a_worker_and_the_cap_is_noted(make_napari_viewer_proxy, qtbot, monkeypatch):
    from napari_carspatial._napari import add_sample_layers
    from napari_carspatial.widgets.transcripts import dock as dock_mod

    monkeypatch.setattr(dock_mod, "SYNC_MAX_POINTS", 100)
    viewer = make_napari_viewer_proxy()
    s = _synthetic()
    add_sample_layers(viewer, s)
    w = _dock(viewer)
    v = w.view
    viewer.reset_view()
    w.update_view(wait=True)
    assert v.state.mode == "density" and "Zoom in" in w.display_view.note.text()
    # zoom to ~1/10 of the slide: ~3,000 in view -> points, read in a worker (SYNC_MAX_POINTS lowered)
    g0 = w._generation
    _zoom_to(viewer, s, 10_000, 10_000, 400.0)
    assert w._timer.isActive() and w._worker is None       # debounced: nothing read yet
    # the debounce fired and a worker read the points (every worker start is a new generation)
    qtbot.waitUntil(lambda: w._generation > g0 and w._worker is None and v.state.mode == "points", timeout=10_000)
    assert v.state.n_shown == _brute(s, v.state.bbox)
    # "points" mode over the whole slide: capped random subset, the note says so
    w.display_view.cap_spin.setValue(2_000)
    w.display_view.cap_spin.editingFinished.emit()
    w.display_view.mode_combo.setCurrentIndex(2)
    viewer.reset_view()
    qtbot.waitUntil(lambda: w._worker is None and v.state.capped and v.state.bbox is not None
                    and v.state.n_matching > 100_000, timeout=10_000)
    (pts,) = _by_role(viewer, ROLE_POINTS)
    assert len(pts.data) == 2_000
    assert "random 2,000 of" in w.display_view.note.text()


def test_gene_list_search_colours_and_quality(make_napari_viewer_proxy, qtbot):
    from napari_carspatial._napari import add_sample_layers

    viewer = make_napari_viewer_proxy()
    s = _synthetic(n=50_000)
    add_sample_layers(viewer, s)
    w = _dock(viewer)
    v = w.view
    gl = w.genes_view
    gl.search.setText("cd3")                       # case-insensitive search
    assert gl.proxy.rowCount() == 1
    from qtpy.QtCore import Qt

    (it,) = gl.model.findItems("CD3E", flags=Qt.MatchStartsWith)
    it.setCheckState(Qt.Checked)                   # as a click on its box
    assert v.flt.genes == ("CD3E",) and "1 of 5 genes" in gl.summary.text()
    assert it.data(Qt.DecorationRole) is not None  # its colour swatch
    _zoom_to(viewer, s, 5000, 5000, 300.0)
    w.update_view(wait=True)
    st = v.state
    assert st.mode == "points" and st.n_shown == _brute(s, st.bbox, ["CD3E"])
    from matplotlib.colors import to_rgba

    (pts,) = _by_role(viewer, ROLE_POINTS)
    np.testing.assert_allclose(np.asarray(pts.face_color)[:, :3], np.tile(to_rgba(v.colors["CD3E"])[:3], (len(pts.data), 1)),
                               atol=1e-6)
    w.display_view.quality_check.setChecked(True)      # qv >= 20 (the spin's default)
    w.update_view(wait=True)
    assert v.state.n_shown == _brute(s, v.state.bbox, ["CD3E"], 20.0)
    gl.clear()
    assert v.flt.genes is None and "all 5 genes" in gl.summary.text()


def test_rna_cell_types_legend_gene_inspector_top_genes(make_napari_viewer_proxy, qtbot, xenium_read):
    viewer = make_napari_viewer_proxy()
    s = _xenium(viewer, xenium_read)
    sess = session_for(viewer)
    sid = sess.sid_of(s)
    t = s.table
    # Legend: colour the cells by a gene typed in the gene search (values from the sparse counts)
    legend = _dock(viewer, "Legend")
    qtbot.waitUntil(lambda: legend.gene_search.isVisibleTo(legend), timeout=20_000)
    assert legend.gene_search.genes[0] == "LEF1"             # most abundant gene first (7,019 counts)
    assert legend.gene_search.choose("cd3d")
    col = sess.coloring(sid)
    assert col.key == "CD3D" and col.kind == "numeric"
    np.testing.assert_array_equal(col.values, t[:, "CD3D"].X.toarray().ravel().astype(np.float32))
    # Inspector: the top genes of a cell, from its row only
    from napari_carspatial.analysis.genes import top_genes
    from napari_carspatial.model import instance_ids

    insp = _dock(viewer, "Cell inspector")
    cid = int(instance_ids(t)[10])
    assert insp.show_cell(cid)
    top = top_genes(t, 10, n=12)
    assert insp.table.horizontalHeaderItem(0).text() == "top 12 genes"
    assert insp.table.rowCount() == len(top)
    assert insp.table.item(0, 0).text() == top["gene"].iloc[0]
    # Transcripts dock: cell types from genes, in a worker, into a column the curation uses
    w = _dock(viewer)
    ct = w.celltypes_view
    assert "T cell: CD3D, CD3E" in ct.markers_edit.toPlainText() and ct.key_edit.text() == "cell_type"
    ct.floor_spin.setValue(-2.0)
    events = []
    sess.events.table_changed.connect(lambda e: events.append(e))
    worker = ct.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: ct.last_outcome is not None, timeout=20_000)
    assert "cell_type" in t.obs and set(t.obs["cell_type"].cat.categories) >= {"T cell", "B cell"}
    assert events and events[-1].columns == ("cell_type",)
    assert sess.coloring(sid).key == "cell_type"
    assert "T cell" in ct.result_label.text()
    from napari_carspatial.model import get_log

    assert get_log(t).iloc[-1]["action"] == "cell_typing.marker_scores"
    assert ct.key_edit.text() == "cell_type_rna"            # the next run goes beside it
    cur = sess.curation(sid)
    assert cur.core.curation.type_key == "cell_type"


def test_gating_on_counts_apply_always_visible_and_counts_not_cut(make_napari_viewer_proxy, qtbot, xenium_read):
    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 700)           # a short window: the dock's content needs scrolling
    _xenium(viewer, xenium_read)
    g = _dock(viewer, "Gating")
    g.set_marker("CD3D")
    assert g.model.unit() == "counts" and g.gate_view.transform_combo.currentText() == "log"
    g.set_threshold(0.5)
    assert g.gate_view.count_label.text() == "CD3D ≥ 1 count:  383 positive / 526 cells (72.8%)"
    g.add_gate()
    g.add_rule("CD3+", "CD3D+")
    qtbot.wait(100)
    # Apply lives below the scroll area: on screen whatever the scroll position (issue 14, item 10)
    from qtpy.QtWidgets import QScrollArea

    scroll = g.findChild(QScrollArea)
    assert not scroll.widget().isAncestorOf(g.rules_view.apply_button)
    assert scroll.verticalScrollBar().maximum() > 0          # the sections do not fit: they scroll
    scroll.verticalScrollBar().setValue(0)
    qtbot.wait(20)
    assert not g.rules_view.apply_button.visibleRegion().isEmpty()
    # the count wraps instead of running off the right edge (item 9)
    lbl = g.gate_view.count_label
    assert lbl.wordWrap() and lbl.heightForWidth(lbl.width()) <= lbl.height()
    assert lbl.mapTo(scroll.viewport(), lbl.rect().topRight()).x() <= scroll.viewport().width()
    assert scroll.widget().minimumWidth() < g.minimumWidth()
    res = g.apply_rules()
    assert res["counts"]["CD3+"] == 383
    assert not g.rules_view.result_label.visibleRegion().isEmpty()


def test_transcripts_stay_above_a_cell_colouring_added_later(make_napari_viewer_proxy, qtbot):
    """A colouring layer added after the transcripts (a gene, a cell type) does not paint over the
    molecules: the dock moves the density and points layers back to the top."""
    from napari_carspatial._napari import add_sample_layers

    viewer = make_napari_viewer_proxy()
    s = _synthetic(n=20_000, side=4_000)
    add_sample_layers(viewer, s)
    w = _dock(viewer)
    _zoom_to(viewer, s, 2000, 2000, 100.0)
    w.update_view(wait=True)
    (pts,) = _by_role(viewer, ROLE_POINTS)
    (dens,) = _by_role(viewer, ROLE_DENSITY)
    viewer.add_image(np.zeros((8, 8), np.float32), name="cells coloured by a gene", opacity=0.7)
    top2 = lambda: {viewer.layers[-1].name, viewer.layers[-2].name} == {pts.name, dens.name}  # noqa: E731
    qtbot.waitUntil(top2, timeout=20_000)
    assert viewer.layers.index(pts) > viewer.layers.index(dens)       # their own order kept
    assert not w.view.raise_layers()                                   # nothing left to move
