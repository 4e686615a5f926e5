"""Issue 14 latency (lat): the fast paths of an edit give the same colours, selection and table as
the reference paths, and hovering a cell's inside in outline mode names its category (as in
filled mode) instead of "background"."""

from __future__ import annotations

import numpy as np
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, session_for
from napari_carspatial._napari.lut import categories_and_codes, category_lut, codes_pyramid


def _setup(make_napari_viewer_proxy):
    """A sample in a viewer with its curation view (what the Curation dock drives; no dock: the
    colouring follows the session's table_changed, whoever edits)."""
    viewer = make_napari_viewer_proxy()
    sample = grid_sample(markers=["DAPI", "CD3", "CAR"])   # few channel layers: a quick viewer
    add_sample_layers(viewer, sample)
    s = session_for(viewer)
    sid = s.sid_of(sample)
    view = s.curation(sid)
    view.core.autosaver.enabled = False
    return viewer, sample, view, s, sid, s.coloring(sid)


def _check_against_reference(col):
    """The layer's lut and pixels equal the whole-column reference (category_lut + codes_pyramid)."""
    t = col.table
    cats, codes = categories_and_codes(t, col.key)
    assert cats == col.categories
    np.testing.assert_array_equal(col.codes, codes)
    ref = category_lut(col.ids(), codes, n_codes=2 * len(cats) + 1)
    state = col._states["cell_colours"][0]
    got = state.lut.dense
    np.testing.assert_array_equal(got[: ref.dense.size], ref.dense)
    assert not got[ref.dense.size:].any()
    layer = col.category_layer
    shown = np.asarray(layer.data[0] if layer.multiscale else layer.data)
    want = np.asarray(codes_pyramid(col.sample.labels, ref, outline_only=col.mode == "outline",
                                    interior=len(cats))[0])
    np.testing.assert_array_equal(shown, want)


def test_edits_recolour_like_the_reference(make_napari_viewer_proxy, monkeypatch):
    from napari_carspatial._napari import coloring

    viewer, sample, view, s, sid, col = _setup(make_napari_viewer_proxy)
    full = []
    monkeypatch.setattr(coloring, "category_lut", lambda *a, **k: full.append(1) or category_lut(*a, **k))
    # the selection layer exists (hidden) before the first selection: the first lasso adds no layer
    sel = col.highlight_layer("selection")
    assert sel is not None and not sel.visible
    n_layers = len(viewer.layers)
    before = sample.table.obs[view.core.curated_key].astype(str).to_numpy().copy()
    rows = np.arange(0, sample.table.n_obs, 5)
    view.select(rows)
    assert len(viewer.layers) == n_layers and sel.visible
    sel_px = np.asarray(sel.data[0] if sel.multiscale else sel.data)
    ids = col.ids()
    inside_sel = np.isin(sample.labels[0], ids[rows])
    assert sel_px[inside_sel].any() and not sel_px[~inside_sel].any()   # outlines of exactly the selected cells
    for mode in ("filled", "outline"):
        col.set_mode(mode)
        view.assign("Tumor")   # an existing category: the fast path (only the changed cells' lut entries)
        assert not full, "an edit of existing categories rebuilt the whole lut"
        assert (sample.table.obs[view.core.curated_key].astype(str).to_numpy()[rows] == "Tumor").all()
        _check_against_reference(col)
        view.undo()
        np.testing.assert_array_equal(sample.table.obs[view.core.curated_key].astype(str).to_numpy(), before)
        _check_against_reference(col)
    # a new category changes the category list: the full path, same result
    view.assign("NK cell")
    assert full
    assert "NK cell" in col.categories
    _check_against_reference(col)
    view.undo()
    assert "NK cell" not in col.categories
    _check_against_reference(col)
    # the in-view counts after edits equal counting the table directly
    col.viewer.reset_view()
    view_mask = col.in_view()
    _, codes = categories_and_codes(sample.table, col.key)
    np.testing.assert_array_equal(col.counts(view_mask), np.bincount(codes[view_mask], minlength=len(col.categories)))


def test_positions_moved_in_place_are_seen(make_napari_viewer_proxy):
    """The cached centroids are checked after a table change: a cell moved in place (as a
    segmentation commit does) moves in the in-view counts too."""
    viewer, sample, view, s, sid, col = _setup(make_napari_viewer_proxy)
    first = col.cell_yx_world().copy()
    sample.table.obsm["spatial"][0] = [1e6, 1e6]    # far outside the view
    s.table_changed(sid, reason="test: a centroid moved")
    moved = col.cell_yx_world()
    assert not np.array_equal(moved[0], first[0])
    np.testing.assert_array_equal(moved[1:], first[1:])


def test_hover_inside_a_cell_in_outline_mode_names_it(make_napari_viewer_proxy):
    """Outline mode shows only the boundaries, yet the status over a cell's inside names its
    category as filled mode does (it said "background")."""
    viewer, sample, view, s, sid, col = _setup(make_napari_viewer_proxy)
    layer = col.category_layer
    viewer.layers.selection.active = layer
    want = f"{col.key}: {sample.table.obs[col.key].iloc[0]}"   # cell 3 covers rows 0-9, cols 0-9
    status = {}
    for mode in ("outline", "filled", "outline"):
        col.set_mode(mode)
        status[mode] = layer.get_status((5.0, 5.0), world=True)["value"]
        assert want in status[mode], (mode, status[mode])
        assert "background" not in status[mode]
    # the inside is not drawn, the border is
    code = int(np.asarray(layer.data[0] if layer.multiscale else layer.data)[5, 5])
    assert layer.colormap.map(np.array([code], dtype=layer.dtype))[0][3] == 0
    border = int(np.asarray(layer.data[0] if layer.multiscale else layer.data)[9, 5])
    assert layer.colormap.map(np.array([border], dtype=layer.dtype))[0][3] == 1


def _legend_rows(widget) -> list[tuple]:
    tree = widget.categories.tree
    return [tuple(tree.topLevelItem(k).text(c) for c in range(tree.columnCount()))
            for k in range(tree.topLevelItemCount())]


def test_legend_counts_follow_an_edit_in_place_as_a_rebuild_shows_them(make_napari_viewer_proxy, qtbot):
    """An edit of the shown column updates the legend's counts in its rows (no rebuild of the
    list, ~30 ms at 10^6 cells): the same row objects, the same texts as a full fill; a new
    category (another list) still rebuilds it."""
    from napari_carspatial.widgets.legend import LegendWidget

    viewer, sample, view, s, sid, col = _setup(make_napari_viewer_proxy)
    widget = LegendWidget(viewer)
    qtbot.addWidget(widget)
    widget.set_column(view.core.curated_key)
    tree = widget.categories.tree
    for k in range(tree.topLevelItemCount()):
        tree.topLevelItem(k).kept_from_before = True
    before = _legend_rows(widget)
    view.select(np.arange(0, sample.table.n_obs, 3))
    view.assign("Tumor")
    # not rebuilt: the same row objects (re-sorted by the new counts)
    assert all(getattr(tree.topLevelItem(k), "kept_from_before", False) for k in range(tree.topLevelItemCount()))
    edited = _legend_rows(widget)
    assert edited != before
    widget.categories.fill()   # the reference: every row made again from the colouring
    assert sorted(_legend_rows(widget)) == sorted(edited)
    n_tumor = int((sample.table.obs[view.core.curated_key].astype(str) == "Tumor").sum())
    assert {r[1]: r[2] for r in edited}["Tumor"] == f"{n_tumor:,}"
    view.assign("NK cell")   # a category the list lacks: rebuilt, with the new row
    assert "NK cell" in [r[1] for r in _legend_rows(widget)]
