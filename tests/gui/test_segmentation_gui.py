"""The Segmentation dock end to end on the demo: edit a region, commit, save, reopen."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial._napari import session_for
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.editing import segmentation as se
from napari_carspatial.model import get_log, instance_ids


@pytest.fixture()
def demo_files(tmp_path):
    from napari_carspatial.datasets import write_demo

    return write_demo(tmp_path / "demo", size=768)


def _touching_pair(lab, exclude=()):
    a, b = lab[:, :-1], lab[:, 1:]
    m = (a != b) & (a > 0) & (b > 0) & ~np.isin(a, exclude) & ~np.isin(b, exclude)
    i = np.flatnonzero(m.ravel())
    y, x = divmod(int(i[len(i) // 2]), a.shape[1])
    return int(a[y, x]), int(b[y, x])


def _inner_cells(lab, exclude, n):
    """``n`` cells not touching the crop edge and not in ``exclude``, largest first."""
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    ok = ~np.isin(ids, edge) & ~np.isin(ids, list(exclude))
    ids, counts = ids[ok], counts[ok]
    return [int(i) for i in ids[np.argsort(-counts)][:n]]


def test_segmentation_dock_workflow(make_napari_viewer_proxy, qtbot, demo_files, tmp_path):
    from napari_carspatial.io import read_sample
    from napari_carspatial.widgets.segmentation import SHORTCUTS, SegmentationWidget

    s = read_sample(demo_files["image"], mask=demo_files["mask"], table=demo_files["table"])
    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, s)
    sid = session_for(viewer).register(s)
    types0 = s.table.obs.set_index("cell_id")["cell_type"].astype(str)
    w = SegmentationWidget(viewer)
    qtbot.addWidget(w)
    assert w.sample_box.currentData() == sid
    assert all(k in w._bound for k in SHORTCUTS.values())
    # shortcuts go through the viewer's key dispatcher (the Curation dock's Ctrl+Z is not replaced)
    from napari_carspatial.widgets._keys import get_dispatcher

    keys = get_dispatcher(viewer)
    assert w in keys.owners()

    # "Edit current view": a region placed exactly over the slide. The first region of a sample
    # makes the editable copy of the mask in a worker (the sample is busy meanwhile)
    assert w.region_view.edit_view() is None
    assert w.busy and not w.session.busy(sid)   # the crop is read in a worker; the table is not written
    qtbot.waitUntil(lambda: w.region is not None and not w.busy, timeout=60_000)
    assert w.commit_view.last_thread not in (None, "MainThread")
    r = w.region
    assert r.data.size
    assert "µm" in w.region_view.region_label.text() and " px" not in w.region_view.region_label.text()
    slide = next(ly for ly in viewer.layers if ly.name == f"{s.name} cells")
    edit = next(ly for ly in viewer.layers if ly.name == f"{s.name} edit")
    np.testing.assert_allclose(np.asarray(edit.scale)[-2:], np.asarray(slide.scale)[-2:])
    np.testing.assert_allclose(np.asarray(edit.translate)[-2:],
                               np.asarray(slide.translate)[-2:] + np.array([r.y0, r.x0]) * np.asarray(slide.scale)[-2:])
    assert tuple(str(u) for u in edit.units) == tuple(str(u) for u in slide.units)

    # a fixed region for the rest; operations accumulate, then one commit
    r = w.region_view.edit_rect(200, 180, 520, 500, wait=True)
    assert (r.y0, r.x0) == (200, 180)
    edit = w.edit_layer
    assert edit.data is r.data or np.shares_memory(edit.data, r.data)
    assert edit.visible and edit.contour == 1   # shown as outlines (added hidden, then shown once)
    w.commit_view.auto_box.setChecked(False)
    lab = r.data

    # merge two neighbours (picked like a user would: toggling cells)
    a, b = _touching_pair(lab)
    for c in (a, b, 999_999_999, a, a):  # unknown id ignored; a toggled off and on again
        w.tools.toggle_cell(c)
    assert w.selection == [b, a]
    assert "2 selected" in w.tools.selection_label.text()
    merged = w.ops.merge()
    assert set(merged) == {a, b}
    kept = a if (lab == a).any() else b
    gone = b if kept == a else a
    assert not (lab == gone).any()

    # split a cell by a line drawn on the line layer
    c, d, e, f = _inner_cells(lab, {a, b}, 4)
    ys, xs = np.nonzero(lab == c)
    cy, cx = ys.mean(), xs.mean()
    horizontal = np.ptp(xs) >= np.ptp(ys)
    line = ([[cy - 30, cx], [cy + 30, cx]] if horizontal else [[cy, cx - 30], [cy, cx + 30]])
    w.ops.split_by_line()  # no line yet: activates the tool
    lyr = w.region_view.tool_layer("line")
    assert viewer.layers.selection.active.name == lyr.name
    assert lyr.mode == "add_path"
    lyr.add_paths([np.array(line, float)])
    out = w.ops.split_by_line()
    assert out
    assert c in out
    assert len(out) >= 2
    c_new = max(out)
    # the tool's hint is gone: the status says what happened, the edit layer is active again
    assert "Draw a line" not in w.status.text() and w.status.text().startswith("Split by line")
    assert viewer.layers.selection.active.name == w.edit_layer.name   # (the viewer proxy wraps layers)

    # draw a missed cell in the background
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(lab == 0)
    dist[:15], dist[-15:], dist[:, :15], dist[:, -15:] = 0, 0, 0, 0
    py, px = np.unravel_index(int(np.argmax(dist)), dist.shape)
    poly = np.array([[py - 4, px - 4], [py - 4, px + 4], [py + 4, px + 4], [py + 4, px - 4]], float)
    w.region_view.tool_layer("polygon").add_polygons([poly])
    drawn = w.ops.draw_cell()
    assert drawn
    assert len(drawn) == 1
    new_cell = drawn[0]
    assert lab[py, px] == new_cell
    assert new_cell > int(instance_ids(s.table).max())

    # delete debris, grow one cell, shrink another, undo the shrink
    w.tools.select_cells([d])
    assert w.ops.delete() == [d]
    assert not (lab == d).any()
    w.ops.n_spin.setValue(2)
    area_e = int((lab == e).sum())
    w.tools.select_cells([e])
    w.ops.grow()
    assert int((lab == e).sum()) > area_e
    before_shrink = lab.copy()
    w.tools.select_cells([f])
    w.ops.shrink(n=1)
    assert (lab != before_shrink).any()
    w.ops.undo()
    np.testing.assert_array_equal(lab, before_shrink)
    assert w.commit_view.redo_button.isEnabled()

    # napari's own paint on the edit layer is committed too
    paint_id = w.tools.new_label()
    edit.paint((py, px + 8), paint_id, refresh=True)
    assert (lab == paint_id).any()
    # each napari stroke is one step of the region's own undo stack (no napari private history)
    qtbot.waitUntil(lambda: w.edit.undo_name == "paint", timeout=20_000)
    w.ops.undo()
    assert not (lab == paint_id).any()
    w.ops.redo()
    assert (lab == paint_id).any()

    # commit in a worker thread
    assert w.commit_view.commit() is None
    qtbot.waitUntil(lambda: w.commit_view.last_result is not None and not w.busy, timeout=30_000)
    assert w.commit_view.last_thread != "MainThread"
    res = w.commit_view.last_result
    assert gone in res.removed
    assert d in res.removed
    assert {c_new, new_cell, paint_id} <= set(res.added)
    assert res.merged
    assert res.merged[0][0] == kept
    assert "merged" in w.commit_view.result_label.text()

    # the displayed pyramid shows the edits; the table follows the mask
    level0 = slide.data[0] if slide.multiscale else slide.data
    shown = np.asarray(level0[r.y0:r.bbox[2], r.x0:r.bbox[3]])
    np.testing.assert_array_equal(shown, lab)
    assert shown[py, px] == new_cell
    se.check_consistency(s.labels[0], s.table)
    t = s.table.obs.set_index("cell_id")
    assert t.loc[new_cell, "cell_type"] == se.UNASSIGNED
    assert t.loc[c_new, "cell_type"] == se.UNASSIGNED
    assert t.loc[kept, "cell_type"] in {types0[a], types0[b]}
    untouched = t.index.intersection(types0.index).difference(res.affected)
    assert (t.loc[untouched, "cell_type"].astype(str) == types0.loc[untouched]).all()
    # the edit layer's hover has the new cells now; the slide's (10^6 rows) follows at the close
    assert new_cell in set(w.edit_layer.features["index"].tolist())
    assert w.session.hover_stale(w.sid)
    audit = get_log(s.table)
    assert {"segmentation.edit", "segmentation.merge_type"} <= set(audit["action"])

    # save the corrected mask and the table (worker thread), reopen, find the edits
    w.commit_view.save(tmp_path / "corrected.h5ad")
    qtbot.waitUntil(lambda: w.commit_view.last_saved is not None and not w.busy, timeout=30_000)
    mask_out, table_out = w.commit_view.last_saved
    assert mask_out.name.endswith(".corrected.zarr")
    assert mask_out.parent == demo_files["mask"].parent
    s2 = read_sample(demo_files["image"], mask=mask_out, table=table_out)
    lab2 = np.asarray(s2.labels[0][r.y0:r.bbox[2], r.x0:r.bbox[3]])
    np.testing.assert_array_equal(lab2, lab)
    se.check_consistency(s2.labels[0], s2.table)
    t2 = s2.table.obs.set_index("cell_id")
    assert t2.loc[new_cell, "cell_type"] == se.UNASSIGNED
    assert gone not in t2.index
    assert "segmentation.merge_type" in set(get_log(s2.table)["action"])

    w.region_view.close_region()
    assert not any(ly.visible for ly in viewer.layers if ly.name.startswith(f"{s.name} edit"))   # hidden for reuse
    assert not w.session.hover_stale(w.sid)
    parked = [ly for ly in viewer.layers if ly.metadata.get("parked")]
    assert parked and all(not ly.visible and ly.name.endswith(w.region_view.PARKED) for ly in parked)
    assert list(viewer.layers)[: len(parked)] == parked          # at the bottom of the layer list
    # a second region takes them back: own names, on top, the frame still a rectangle
    w.region_view.edit_rect(200, 180, 300, 280, wait=True)
    frame = next(ly for ly in viewer.layers if ly.metadata.get("tool") == "frame")
    assert frame.shape_type == ["rectangle"] and frame.visible and not frame.metadata.get("parked")
    assert w.edit_layer.name == f"{s.name} edit" and viewer.layers[-1] in (w.edit_layer, frame)
    feats = slide.features
    assert new_cell in set(feats["index"].tolist())
    assert gone not in set(feats["index"].tolist())
    w.cleanup()
    assert w not in keys.owners()
