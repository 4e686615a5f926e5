"""Issue 14 (append): a segmentation commit tells the session which rows it appended / dropped;
the colouring follows incrementally and equals the whole-column reference, the in-view counts
and centroids equal the table's, and the hover features wait for ``refresh_hover`` (once per
region) and then equal a full rebuild. Docks that ignore the new fields still see ``structure``."""

from __future__ import annotations

import numpy as np
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, session_for
from napari_carspatial._napari.layers import hover_features
from napari_carspatial._napari.lut import categories_and_codes, category_lut, codes_pyramid
from napari_carspatial.editing import SegmentationEditor
from napari_carspatial.editing.seg_ops import merge_cells, split_cell_by_line
from napari_carspatial.model import spatial_to_yx


def _check_against_reference(col):
    t = col.table
    cats, codes = categories_and_codes(t, col.key)
    assert cats == col.categories
    np.testing.assert_array_equal(col.codes, codes)
    ref = category_lut(col.ids(), codes, n_codes=2 * len(cats) + 1)
    got = col._states["cell_colours"][0].lut.dense
    np.testing.assert_array_equal(got[: ref.dense.size], ref.dense)
    assert not got[ref.dense.size:].any()
    layer = col.category_layer
    shown = np.asarray(layer.data[0] if layer.multiscale else layer.data)
    want = np.asarray(codes_pyramid(col.sample.labels, ref, outline_only=col.mode == "outline",
                                    interior=len(cats))[0])
    np.testing.assert_array_equal(shown, want)
    # centroids and counts: the same as computed from the table
    (sy, sx), (ty, tx), _ = col.session.geometry(col.sid)
    want_yx = spatial_to_yx(np.asarray(t.obsm["spatial"], float)) * np.array([sy, sx]) + np.array([ty, tx])
    np.testing.assert_allclose(col.cell_yx_world(), want_yx)
    view = col.in_view()
    np.testing.assert_array_equal(col.counts(view), np.bincount(codes[view][codes[view] >= 0],
                                                                minlength=len(cats))[: len(cats)])


def test_commits_append_and_drop_rows_incrementally(make_napari_viewer_proxy, monkeypatch):
    from napari_carspatial._napari import coloring

    viewer = make_napari_viewer_proxy()
    sample = grid_sample(markers=["DAPI", "CD3"])
    add_sample_layers(viewer, sample)
    s = session_for(viewer)
    sid = s.sid_of(sample)
    view = s.curation(sid)                 # colours by the curated type
    view.core.autosaver.enabled = False
    col = s.coloring(sid)
    assert col.key == view.core.curated_key
    col.cell_yx_world()
    events = []
    s.events.table_changed.connect(lambda e: events.append(e))
    full = []   # whole-column rebuilds of the colouring (the selection's highlight has its own lut)
    rebuild = coloring.CellColoring.color_by_category
    monkeypatch.setattr(coloring.CellColoring, "color_by_category",
                        lambda self, *a, **k: full.append(1) or rebuild(self, *a, **k))
    ed = SegmentationEditor(sample)
    region = ed.region(0, 60, 0, 60)

    def commit(op, *args, **kw):
        _, res = ed.apply(region, op, *args, **kw)
        s.labels_changed(sid, res.bbox)
        upd = ed.row_positions(res.updated)
        s.table_changed(sid, structure=True, rows_added=res.rows_added, rows_removed=res.rows_removed,
                        rows=upd[upd >= 0], reason="test")
        return res

    # a region over the first two cells and one curation edit before the commits
    view.core.add_roi(np.array([[-1, -1], [-1, 21], [11, 21], [11, -1]], float), name="R1", cls="Tumor")
    view.select(np.array([1]))
    view.assign("CAR T")
    # split cell 3 (rows 0-9, cols 0-9) by a vertical line: one row appended
    n0 = sample.table.n_obs
    res = commit(split_cell_by_line, 3, [(-1, 4.5), (11, 4.5)], ed.new_id)
    assert res.added and res.rows_added == list(range(n0, n0 + len(res.added)))
    assert sample.table.n_obs == n0 + len(res.added)
    assert not full, "a row append rebuilt the whole lut"
    assert "unassigned (new cell)" in col.categories     # a category added at the end, incrementally
    _check_against_reference(col)
    e = events[-1]
    assert e.structure and list(e.rows_added) == res.rows_added and not len(e.rows_removed)
    # the slide's hover waits; refresh_hover makes it equal a full rebuild
    assert s.hover_stale(sid)
    # the curation follows the new table: a new cell can be selected and assigned
    assert view.core.curation.adata is sample.table
    assert sample.table.obs["roi"].iloc[n0] == "R1"        # the new cell's region
    assert len(view.core.curation.undo_stack) == 2          # an append keeps the undo stack
    view.select(np.array([n0]))
    view.assign("Tumor")
    assert sample.table.obs[view.core.curated_key].iloc[n0] == "Tumor"
    view.undo()
    view.undo()                                             # the edit made before the split
    assert sample.table.obs[view.core.curated_key].iloc[1] == sample.table.obs["cell_type"].iloc[1]
    _check_against_reference(col)
    col.set_mode("outline")
    # merge two cells (6 and 9 sit side by side): a row dropped, the kept cell re-measured
    res = commit(merge_cells, [6, 9])
    assert res.rows_removed and res.updated
    assert not full
    _check_against_reference(col)
    assert list(events[-1].rows_removed) == res.rows_removed
    # split it again and merge two others in one commit: rows dropped and appended at once
    merge_cells(region.data, [12, 15])
    res = commit(split_cell_by_line, 6, [(-1, 19.5), (11, 19.5)], ed.new_id)
    assert res.rows_added and res.rows_removed
    _check_against_reference(col)
    assert not full
    lyr = s.labels_layer(sid)
    assert s.refresh_hover(sid) and not s.hover_stale(sid)
    want = hover_features(sample)
    got = lyr.features
    assert list(got.columns) == list(want.columns) and len(want.columns) >= 2
    for c in want.columns:
        np.testing.assert_array_equal(got[c].astype(str).to_numpy(), want[c].astype(str).to_numpy())
    assert not s.refresh_hover(sid)                      # nothing left to do
    # an old-style structural change: no row fields, and the colouring stays right
    s.table_changed(sid, structure=True, reason="test: a dock replaced the table")
    assert events[-1].structure and events[-1].rows_added is None and events[-1].rows_removed is None
    _check_against_reference(col)


def test_a_commit_on_a_multiscale_mask_swaps_the_levels_and_shows_the_reference(make_napari_viewer_proxy):
    """napari hands a multiscale layer's levels back as a ``MultiScaleData``, not a list: the
    colouring's level swap after a commit failed on it and every commit replaced the layer's data
    (napari then slices twice). Now the layer keeps its level objects, which read the new mask,
    and every level shows what the whole-column reference computes."""
    viewer = make_napari_viewer_proxy()
    sample = grid_sample(markers=["DAPI", "CD3"], n_side=8)
    lab = sample.labels[0]
    sample.labels = [lab, lab[::2, ::2].copy()]
    add_sample_layers(viewer, sample)
    s = session_for(viewer)
    sid = s.sid_of(sample)
    view = s.curation(sid)
    view.core.autosaver.enabled = False
    col = s.coloring(sid)
    layer = col.category_layer
    assert layer.multiscale
    levels = list(layer.data)
    data_events = []
    layer.events.data.connect(lambda e: data_events.append(e))
    ed = SegmentationEditor(sample)
    region = ed.region(0, 40, 0, 40)
    _, res = ed.apply(region, split_cell_by_line, 3, [(-1, 4.5), (11, 4.5)], ed.new_id)
    s.labels_changed(sid, res.bbox)
    upd = ed.row_positions(res.updated)
    s.table_changed(sid, structure=True, rows_added=res.rows_added, rows_removed=res.rows_removed,
                    rows=upd[upd >= 0], reason="test")
    assert res.added
    assert not data_events and all(a is b for a, b in zip(layer.data, levels, strict=True))
    cats, codes = categories_and_codes(col.table, col.key)
    ref = category_lut(col.ids(), codes, n_codes=2 * len(cats) + 1)
    want = codes_pyramid(col.sample.labels, ref, outline_only=col.mode == "outline", interior=len(cats))
    for k in range(2):
        np.testing.assert_array_equal(np.asarray(layer.data[k]), np.asarray(want[k]))
    new_px = np.isin(np.asarray(col.sample.labels[0]), res.added)
    assert new_px.any() and (np.asarray(layer.data[0])[new_px] > 0).all()   # the new cell is coloured
