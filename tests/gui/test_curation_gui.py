"""The Curation dock on the demo, end to end: select, re-label, undo/redo, regions, audit trail,
save, close napari, reopen the saved table and find everything; blinded review; recovery."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_carspatial._napari import META_ROLE, session_for
from napari_carspatial._napari.coloring import get_coloring
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.io import read_sample
from napari_carspatial.model import get_log

REVIEWER = "Dr Ünal"


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    from napari_carspatial.datasets import write_demo

    return write_demo(tmp_path_factory.mktemp("demo ü"), size=768, seed=2)


@pytest.fixture(scope="module")
def two_demos(tmp_path_factory):
    """Two other demo slides (read only: tests open them and save elsewhere)."""
    from napari_carspatial.datasets import write_demo

    return (write_demo(tmp_path_factory.mktemp("a"), size=512, seed=3),
            write_demo(tmp_path_factory.mktemp("b"), size=512, seed=4))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _open(viewer, files, table=None):
    s = read_sample(files["image"], mask=files["mask"], table=table or files["table"])
    add_sample_layers(viewer, s)
    return s, session_for(viewer).register(s)


def _widget(viewer, qtbot, show=False):
    from napari_carspatial.widgets.curation import CurationWidget

    w = CurationWidget(viewer)
    qtbot.addWidget(w)
    if show:   # keys only reach a dock that is on screen
        w.show()
        qtbot.waitExposed(w)
    return w


def _press(viewer, key):
    """Press ``key`` as the canvas does (napari's keymap handler: active layer first, then viewer)."""
    return viewer.__wrapped__.window._qt_viewer._key_map_handler.press_key(key)


def test_curation_done_means(make_napari_viewer_proxy, qtbot, demo_files, cache):
    viewer = make_napari_viewer_proxy()
    s, sid = _open(viewer, demo_files)
    w = _widget(viewer, qtbot, show=True)
    w.set_reviewer(REVIEWER)
    sess = w.view
    assert sess is not None
    assert sess.sid == sid
    col = get_coloring(viewer, sid)
    assert col.key == "cell_type_curated"
    orig = s.table.obs["cell_type"].astype(str).to_numpy().copy()

    # 1. select the cells in a lasso drawn on the drawing layer (data coordinates = level-0 px)
    layer = w.cells.start_drawing("add_polygon_lasso")
    assert viewer.layers.selection.active.name == layer.name
    assert layer.mode == "add_polygon_lasso"
    poly = np.array([[50, 50], [50, 300], [300, 300], [300, 50]], float)
    layer.add([poly], shape_type="polygon")
    xy = s.table.obsm["spatial"]
    inside = (xy[:, 0] > 50) & (xy[:, 0] < 300) & (xy[:, 1] > 50) & (xy[:, 1] < 300)
    qtbot.waitUntil(lambda: sess.n_selected == int(inside.sum()), timeout=20_000)
    assert f"{inside.sum():,} cells selected" in w.cells.sel_label.text()
    assert col.highlight_layer("selection") is not None

    # 2. re-label them; the legend's colouring counts follow at once
    cats = list(col.categories)
    n_car_before = int(col.counts()[cats.index("CAR T")])
    w.cells.type_box.setEditText("CAR T")
    w.assign()
    assert (s.table.obs["cell_type_curated"][inside] == "CAR T").all()
    assert (s.table.obs["cell_type"].astype(str).to_numpy() == orig).all()  # original untouched
    n_car = int(col.counts()[col.categories.index("CAR T")])
    assert n_car == n_car_before + int((orig[inside] != "CAR T").sum())

    # a new type for one clicked cell (shift-click adds), then Alt+1 (first type)
    cid = int(s.table.obs["cell_id"].iloc[~inside.nonzero()[0][0] if False else np.flatnonzero(~inside)[0]])
    row = int(np.flatnonzero(s.table.obs["cell_id"].to_numpy() == cid)[0])
    lab = sess.labels_layer
    ys, xs = np.nonzero(np.asarray(s.labels[0]) == cid)
    world = lab.data_to_world((ys[len(ys) // 2], xs[len(xs) // 2]))
    assert w.cells.click_select(world) == cid
    assert sess.n_selected == 1
    w.cells.type_box.setEditText("Doublet")
    w.assign()
    assert s.table.obs["cell_type_curated"].iloc[row] == "Doublet"
    assert "Doublet" in col.categories
    viewer.layers.selection.active = lab   # the cells (Labels) layer active: its digits are its tools
    assert _press(viewer, "Alt-1")
    assert s.table.obs["cell_type_curated"].iloc[row] == sess.curation.categories[0]
    assert lab.mode == "pan_zoom"
    assert _press(viewer, "Control-Z")   # a Labels layer keeps its own Ctrl+Z: press on the viewer's
    assert s.table.obs["cell_type_curated"].iloc[row] == sess.curation.categories[0]
    viewer.layers.selection.active = viewer.layers[0]   # an image layer: the dock's Ctrl+Z
    assert _press(viewer, "Control-Z")
    assert s.table.obs["cell_type_curated"].iloc[row] == "Doublet"

    # exclude one cell as a fold
    w.exclude("fold")
    assert bool(s.table.obs["excluded"].iloc[row])
    assert s.table.obs["exclude_reason"].iloc[row] == "fold"

    # 3. undo / redo (buttons and Ctrl+Shift+Z)
    w.saving.undo_button.click()
    assert not s.table.obs["excluded"].any()
    assert _press(viewer, "Control-Shift-Z")
    assert bool(s.table.obs["excluded"].iloc[row])

    # 6. regions: a tumour core (polygon) and a margin (rectangle)
    for mode, name, cls, shape in (
        ("add_polygon", "core A", "Tumor core", np.array([[400, 400], [400, 700], [700, 700], [700, 400]], float)),
        ("add_rectangle", "margin A", "Invasive margin", np.array([[350, 350], [350, 750], [400, 750], [400, 350]], float)),
    ):
        w.regions.roi_name.setText(name)
        w.regions.roi_class.setCurrentText(cls)
        lyr = w.cells.start_drawing(mode, "roi")
        lyr.add([shape], shape_type="polygon" if mode == "add_polygon" else "rectangle")
        qtbot.waitUntil(lambda name=name: any(r.name == name for r in s.rois), timeout=20_000)
    roi_names = [r.name for r in s.rois]
    assert "core A" in roi_names
    assert "margin A" in roi_names
    assert sess.roi_layer is not None
    assert len(sess.roi_layer.data) == len(s.rois)
    assert "core A" in set(s.table.obs["roi"].dropna().astype(str))
    # all CAR T cells in the core: type filter + region
    w.regions.roi_table.selectRow(roi_names.index("core A"))
    w.cells.only_type.setCurrentIndex(w.cells.only_type.findData("CAR T"))
    w.regions.select_roi_cells()
    in_core = sess.curation.cells_in_roi(s.rois[roi_names.index("core A")].id)
    car = s.table.obs["cell_type_curated"].astype(str).to_numpy() == "CAR T"
    assert sess.n_selected == int((in_core & car).sum())
    w.confirm()
    w.regions.mark_roi_reviewed()
    assert s.table.obs["reviewed"].to_numpy()[in_core].all()
    from napari_carspatial.widgets.curation.regions import ROI_COLUMNS

    row = roi_names.index("core A")   # the Regions table gained an area column: columns by name
    w.tabs.setCurrentWidget(w.regions)   # a tab behind another is refreshed when brought to the front
    assert w.regions.roi_table.item(row, ROI_COLUMNS.index("done")).text() == "✓"
    assert w.regions.roi_table.item(row, ROI_COLUMNS.index("reviewed")).text() == "100%"

    # 4. audit trail: one table row per action, naming the reviewer
    log = get_log(s.table)
    w.tabs.setCurrentWidget(w.audit)
    assert w.audit.audit_table.rowCount() == len(log) >= 10
    assert set(log["reviewer"]) == {REVIEWER}
    assert {"assign", "undo", "redo", "exclude", "add_roi", "confirm", "mark_roi_reviewed"} <= set(log["action"])
    w.audit.export_csv(cache / "audit.csv")
    assert (cache / "audit.csv").read_text(encoding="utf-8").count(REVIEWER) == len(log)

    # 7. save: never over the source (not even with overwrite=True), then as a new file
    src_bytes = demo_files["table"].read_bytes() if demo_files["table"].is_file() else None
    assert w.saving.save(demo_files["table"]) is None
    assert w.saving.save(demo_files["table"], overwrite=True) is None
    assert "source file" in w.status.text()
    if src_bytes is not None:
        assert demo_files["table"].read_bytes() == src_bytes
    before_uns = {k: str(v) for k, v in s.table.uns["carspatial"].items()}
    w.autosave.now()   # a snapshot in a worker: the live table's uns is not touched
    qtbot.waitUntil(lambda: not w.autosave.busy(), timeout=10000)
    assert w.autosave.last is not None
    assert w.autosave.last.parent == cache / "cache" / "recovery"
    assert {k: str(v) for k, v in s.table.uns["carspatial"].items()} == before_uns
    out = w.saving.save(cache / "curated ü.h5ad", wait=True)   # (the dock's worker path: test_save_offthread.py)
    assert out is not None
    assert out.exists()
    curated = s.table.obs["cell_type_curated"].astype(str).to_numpy().copy()
    colors = list(s.table.uns["cell_type_curated_colors"])
    rois = [(r.name, r.cls) for r in s.rois]
    n_log = len(get_log(s.table))
    assert w.autosave.last.exists() is False   # saved: the recovery file is gone
    w.cleanup()
    from napari.utils.key_bindings import coerce_keybinding

    assert not any(coerce_keybinding(k) in viewer.keymap for k in ("Alt-1", "Control-Z"))   # unbound on close
    viewer.close()

    # "close napari", reopen the saved table: everything is back
    viewer2 = make_napari_viewer_proxy()
    s2, sid2 = _open(viewer2, demo_files, table=out)
    w2 = _widget(viewer2, qtbot)
    assert w2.view.sid == sid2
    t2 = s2.table
    assert (t2.obs["cell_type_curated"].astype(str).to_numpy() == curated).all()
    assert list(t2.uns["cell_type_curated_colors"]) == colors
    assert [(r.name, r.cls) for r in s2.rois] == rois
    assert w2.view.roi_layer is not None
    assert len(w2.view.roi_layer.data) == len(rois)
    assert w2.regions.roi_table.rowCount() == len(rois)
    log2 = get_log(t2)
    assert len(log2) == n_log
    assert set(log2["reviewer"]) == {REVIEWER}
    assert w2.audit.audit_table.rowCount() == n_log
    prov = t2.uns["carspatial"]["provenance"]
    assert len(prov["image"]["sha256"]) == 64
    assert len(prov["mask"]["sha256"]) == 64
    assert get_coloring(viewer2, sid2).key == "cell_type_curated"
    assert "Doublet" in w2.view.curation.categories


def test_blinded_review_and_recovery(make_napari_viewer_proxy, qtbot, demo_files, cache, monkeypatch):
    viewer = make_napari_viewer_proxy()
    s, sid = _open(viewer, demo_files)
    real = s.name
    w = _widget(viewer, qtbot)
    w.set_reviewer("blind reviewer")
    w.header.blind_box.setChecked(True)
    names = [lyr.name for lyr in session_for(viewer).layers_of(sid) if lyr.metadata.get(META_ROLE) != "image"]
    assert names
    assert all(real not in n for n in names)
    assert any("Sample A" in n for n in names)
    assert "post" not in w.header.meta_label.text()
    assert w.sample_box.currentText() == "Sample A"
    assert "timepoint" not in w.view.public_metadata()
    # an edit while blinded keeps the layers blinded
    w.view.select(np.arange(5))
    w.assign("CAR T")
    assert all(real not in lyr.name for lyr in session_for(viewer).layers_of(sid) if lyr.metadata.get(META_ROLE) != "image")
    w.header.blind_box.setChecked(False)
    assert any(real in lyr.name for lyr in session_for(viewer).layers_of(sid))
    assert s.name == real

    # autosave, "crash", reopen: recovery is offered (banner, no modal dialog) and restores the edit
    w.autosave.now()
    qtbot.waitUntil(lambda: not w.autosave.busy(), timeout=10000)
    rec = w.autosave.last
    assert rec is not None
    assert rec.exists()
    assert not (demo_files["table"].parent / (demo_files["table"].name + ".carspatial-recovery.h5ad")).exists()
    expected = s.table.obs["cell_type_curated"].astype(str).to_numpy().copy()
    w.cleanup()
    viewer.close()
    import os
    import time

    os.utime(rec, (time.time() + 5, time.time() + 5))
    _no_modal(monkeypatch)
    viewer2 = make_napari_viewer_proxy()
    s2, sid2 = _open(viewer2, demo_files)
    col2 = get_coloring(viewer2, sid2)
    w2 = _widget(viewer2, qtbot)
    assert w2.recovery.isHidden()          # not while the dock is being built
    qtbot.waitUntil(lambda: not w2.recovery.isHidden(), timeout=20_000)
    assert w2.recovery.recovery_file == rec
    assert "Recover" in w2.recovery.recover_button.text()
    assert (s2.table.obs["cell_type_curated"].astype(str).to_numpy() != expected).any()
    assert w2.recovery.recover_now()
    assert w2.recovery.isHidden()
    assert (s2.table.obs["cell_type_curated"].astype(str).to_numpy() == expected).all()
    assert w2.view.sample.table is s2.table
    assert w2.view.curation.adata is s2.table
    assert json.loads(get_log(s2.table)["cell_ids"].iloc[0]) == s2.table.obs["cell_id"].iloc[:5].tolist()
    # the hover features and the colouring follow the recovered table
    lab = session_for(viewer2).layers_of(sid2, "labels")[0]
    assert (lab.features["cell_type_curated"].to_numpy() == expected).all()
    assert int(col2.counts()[col2.categories.index("CAR T")]) == int((expected == "CAR T").sum())
    w2.cleanup()


def _no_modal(monkeypatch):
    """Any modal question fails the test."""
    from qtpy.QtWidgets import QMessageBox

    def _fail(*a, **k):
        raise AssertionError(f"modal dialog opened: {a[1:3]}")

    monkeypatch.setattr(QMessageBox, "question", _fail)


def test_recovery_not_now_keeps_the_file(make_napari_viewer_proxy, qtbot, demo_files, cache, monkeypatch):
    _no_modal(monkeypatch)
    viewer = make_napari_viewer_proxy()
    _open(viewer, demo_files)
    w = _widget(viewer, qtbot)
    w.set_reviewer("r")
    w.view.select(np.arange(3))
    w.assign("Doublet")
    w.autosave.now()
    qtbot.waitUntil(lambda: not w.autosave.busy(), timeout=10000)
    rec = w.autosave.last
    w.cleanup()
    viewer.close()
    import os
    import time

    os.utime(rec, (time.time() + 5, time.time() + 5))
    viewer2 = make_napari_viewer_proxy()
    s2, _ = _open(viewer2, demo_files)
    w2 = _widget(viewer2, qtbot, show=True)
    qtbot.waitUntil(lambda: w2.recovery.isVisible(), timeout=20_000)
    if os.environ.get("CARSPATIAL_SHOTS"):   # the screenshot in docs/curation.md
        w2.grab().save(os.path.join(os.environ["CARSPATIAL_SHOTS"], "curation_recovery.png"))
    w2.recovery.not_now_button.click()
    assert w2.recovery.isHidden()
    assert not rec.exists()
    assert rec.with_name(rec.name + ".declined").is_file()   # kept, set aside
    assert "Doublet" not in set(s2.table.obs["cell_type_curated"].astype(str))
    w2.cleanup()
    viewer2.close()
    # not offered again
    viewer3 = make_napari_viewer_proxy()
    _open(viewer3, demo_files)
    w3 = _widget(viewer3, qtbot)
    qtbot.wait(50)
    assert w3.recovery.isHidden()
    assert w3.recovery.recovery_file is None
    w3.cleanup()


def test_unsaved_sample_recovery_never_offered_for_another_table(make_napari_viewer_proxy, qtbot, two_demos,
                                                                 cache, monkeypatch):
    """Data without a source (the demo): the recovery key holds a fingerprint of the table."""
    import os
    import time

    _no_modal(monkeypatch)
    a, b = two_demos

    def open_unsaved(viewer, files):
        s = read_sample(files["image"], mask=files["mask"], table=files["table"])
        s.paths.clear()              # as if never saved (in-memory demo)
        s.name = "demo"
        add_sample_layers(viewer, s)
        return s, session_for(viewer).register(s)

    viewer = make_napari_viewer_proxy()
    open_unsaved(viewer, a)
    w = _widget(viewer, qtbot)
    w.set_reviewer("r")
    w.view.select(np.arange(3))
    w.assign("Doublet")
    w.autosave.now()
    qtbot.waitUntil(lambda: not w.autosave.busy(), timeout=10000)
    rec = w.autosave.last
    assert rec.parent == cache / "cache" / "recovery"
    os.utime(rec, (time.time() + 5, time.time() + 5))
    w.cleanup()
    viewer.close()
    # another table under the same name: nothing offered
    viewer2 = make_napari_viewer_proxy()
    open_unsaved(viewer2, b)
    w2 = _widget(viewer2, qtbot)
    qtbot.wait(50)
    assert w2.recovery.isHidden()
    w2.cleanup()
    viewer2.close()
    # the same table: offered
    viewer3 = make_napari_viewer_proxy()
    open_unsaved(viewer3, a)
    w3 = _widget(viewer3, qtbot)
    qtbot.waitUntil(lambda: not w3.recovery.isHidden(), timeout=20_000)
    assert w3.recovery.recovery_file == rec
    w3.cleanup()


def test_switching_sample_autosaves_the_outgoing_one(make_napari_viewer_proxy, qtbot, demo_files, two_demos,
                                                     cache, monkeypatch):
    _no_modal(monkeypatch)
    other = two_demos[0]   # any slide other than demo_files
    viewer = make_napari_viewer_proxy()
    s, _sid = _open(viewer, demo_files)
    w = _widget(viewer, qtbot)
    w.set_reviewer("r")
    w.view.select(np.arange(3))
    w.assign("Doublet")
    assert w.autosave.policy.pending == 1
    _s2, sid2 = _open(viewer, other)
    w.sample_box.setCurrentIndex(w.sample_box.findData(sid2))
    assert w.view.sid == sid2
    qtbot.waitUntil(lambda: not w.autosave.busy() and w.autosave.last is not None, timeout=10000)
    import anndata as ad

    back = ad.read_h5ad(w.autosave.last)
    assert (back.obs["cell_type_curated"].astype(str).to_numpy()[:3] == "Doublet").all()
    assert back.n_obs == s.table.n_obs
    w.cleanup()


def test_save_as_dialog_refuses_the_source(make_napari_viewer_proxy, qtbot, demo_files, cache, monkeypatch):
    """Choosing the source table in "Save as" writes nothing and asks nothing (no overwrite consent)."""
    from qtpy.QtWidgets import QFileDialog

    _no_modal(monkeypatch)
    viewer = make_napari_viewer_proxy()
    _open(viewer, demo_files)
    w = _widget(viewer, qtbot)
    w.set_reviewer("r")
    w.view.select(np.arange(3))
    w.assign("Doublet")
    src = demo_files["table"]
    mtime = src.stat().st_mtime_ns
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(src), ""))
    w.saving.save_as_dialog()
    assert src.stat().st_mtime_ns == mtime
    assert w.saving.saved_path is None
    assert "source file" in w.status.text()
    other = cache / "other.h5ad"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(other), ""))
    w.saving.save_as_dialog()
    qtbot.waitUntil(lambda: w.saving.saved_path == other, timeout=20000)   # written in a worker
    assert other.exists()
    w.cleanup()
