"""The legend drives the real napari viewer: colours of specific cells after each recolour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import Qt

from napari_carspatial._napari import sample_id_of, session_for
from napari_carspatial._napari.coloring import get_coloring
from napari_carspatial._napari.inspect import camera
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.model import Sample

# cell id -> (pixel slice, cell type, niche, CD3)
CELLS = {
    17: ((slice(4, 20), slice(4, 24)), "CAR T", "margin", 9.0),
    4242: ((slice(30, 50), slice(40, 70)), "Tumor", "core", 1.0),
    9: ((slice(30, 50), slice(4, 30)), "Stroma", "margin", 2.0),
    70000: ((slice(4, 24), slice(44, 74)), "Tumor", "margin", 3.0),
}


def _sample(name="legend"):
    import anndata as ad

    lab = np.zeros((64, 80), np.uint32)
    for cid, (sl, *_rest) in CELLS.items():
        lab[sl] = cid
    ids = list(CELLS)
    obs = pd.DataFrame({
        "cell_id": ids,
        "cell_type": pd.Categorical([CELLS[i][1] for i in ids], categories=["Tumor", "CAR T", "Stroma"]),
        "niche": [CELLS[i][2] for i in ids],
    }, index=[f"c{i}" for i in ids])
    table = ad.AnnData(X=np.array([[CELLS[i][3], 0.0] for i in ids], np.float32), obs=obs)
    table.var_names = ["CD3", "CAR"]
    table.uns["cell_type_colors"] = ["#00ff00", "#ff00ff", "#808080"]
    img = np.zeros((2, 64, 80), np.float32)
    s = Sample(name, image=[img, img[:, ::2, ::2]], channel_names=["CD3", "CAR"], pixel_size_um=0.5,
               labels=[lab, lab[::2, ::2]], table=table)
    return s.validate()


def _center(cid):
    sl = CELLS[cid][0]
    return ((sl[0].start + sl[0].stop) // 2, (sl[1].start + sl[1].stop) // 2)


def _shown_rgba(layer, cid, *, edge=False):
    """RGBA the codes layer gives cell ``cid`` (level-0 codes at its centre / top-left corner)."""
    y, x = (CELLS[cid][0][0].start, CELLS[cid][0][1].start) if edge else _center(cid)
    code = int(np.asarray(layer.data[0][y, x]))
    return np.asarray(layer.colormap.map(np.array([code], dtype=np.uint8))[0])


def _screen_rgb(viewer, cid):
    """Screenshot pixel at the centre of cell ``cid`` (the camera is centred on it, zoomed in)."""
    y, x = _center(cid)
    cam = camera(viewer)
    cam.center = (y * 0.5, x * 0.5)
    cam.zoom = 40
    shot = viewer.screenshot(canvas_only=True, flash=False)
    h, w = shot.shape[:2]
    return shot[h // 2, w // 2, :3].astype(int)


@pytest.fixture
def legend(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.legend import LegendWidget

    viewer = make_napari_viewer_proxy(show=True)   # a shown canvas, so screenshots are drawn
    sample = _sample()
    add_sample_layers(viewer, sample)
    for lyr in list(viewer.layers):   # only the colouring on screen: exact colours in screenshots
        lyr.visible = False
    widget = LegendWidget(viewer)
    qtbot.addWidget(widget)
    # the first view is outlines over the stain (tests/gui/test_first_view_gui.py); these tests
    # read colours at cell centres, so they fill the cells
    widget.mode_box.setCurrentText("filled")
    return viewer, widget, sample


def test_legend_colors_specific_cells_and_switches_columns(legend, qtbot):
    viewer, w, sample = legend
    col = w.coloring
    assert col is not None
    assert col.key == "cell_type"   # coloured by cell type on open
    layer = col.category_layer
    assert layer.multiscale
    assert np.allclose(layer.scale, [0.5, 0.5])
    np.testing.assert_allclose(_shown_rgba(layer, 17), [1, 0, 1, 1])     # CAR T magenta (from uns)
    np.testing.assert_allclose(_shown_rgba(layer, 4242), [0, 1, 0, 1])   # Tumor green
    np.testing.assert_allclose(_shown_rgba(layer, 70000), [0, 1, 0, 1])
    assert _shown_rgba(layer, 17)[3] == 1
    assert np.asarray(layer.data[0][0, 0]) == 0   # background code 0
    # the legend rows: name, count; sorted by count (Tumor 2 first)
    rows = [w.categories.tree.topLevelItem(i) for i in range(w.categories.tree.topLevelItemCount())]
    assert [r.text(1) for r in rows] == ["Tumor", "CAR T", "Stroma"]
    assert [r.text(2) for r in rows] == ["2", "1", "1"]
    # the screen shows it: opaque colours, nothing under them
    col.set_opacity(1.0)
    assert list(_screen_rgb(viewer, 17)) == [255, 0, 255]
    assert list(_screen_rgb(viewer, 4242)) == [0, 255, 0]

    # switch the column: niche (text column, default colours stored in uns)
    w.set_column("niche")
    assert col.key == "niche"
    assert layer.name.endswith("niche")
    assert list(sample.table.uns["niche_colors"]) == col.colors
    core, margin = (np.asarray(_shown_rgba(layer, c)) for c in (4242, 17))
    assert not np.allclose(core, margin)
    np.testing.assert_allclose(_shown_rgba(layer, 9), margin)
    assert [w.categories.tree.topLevelItem(i).text(1) for i in range(2)] == ["margin", "core"]
    w.set_column("cell_type")
    np.testing.assert_allclose(_shown_rgba(layer, 17), [1, 0, 1, 1])


def test_visibility_show_only_and_color_edit(legend, qtbot, monkeypatch):
    from qtpy.QtGui import QColor
    from qtpy.QtWidgets import QColorDialog

    viewer, w, sample = legend
    col = w.coloring
    layer = col.category_layer
    # untick Tumor: its cells become transparent, others stay
    item = w.categories.item_for("Tumor")
    item.setCheckState(0, Qt.Unchecked)
    assert _shown_rgba(layer, 4242)[3] == 0
    assert _shown_rgba(layer, 70000)[3] == 0
    assert _shown_rgba(layer, 17)[3] == 1
    item.setCheckState(0, Qt.Checked)
    assert _shown_rgba(layer, 4242)[3] == 1
    # show only CAR T (double-click its name), then double-click again: all back
    w.categories.on_double_click(w.categories.item_for("CAR T"), 1)
    assert list(col.visible) == [False, True, False]
    assert _shown_rgba(layer, 9)[3] == 0
    assert _shown_rgba(layer, 17)[3] == 1
    assert w.categories.item_for("Tumor").checkState(0) == Qt.Unchecked
    w.categories.on_double_click(w.categories.item_for("CAR T"), 1)
    assert col.visible.all()
    # colour edit through the (patched) colour dialog: saved in uns, shown on the cell
    monkeypatch.setattr(QColorDialog, "getColor", staticmethod(lambda *a, **k: QColor("#ff8000")))
    w.categories.on_double_click(w.categories.item_for("Stroma"), 0)
    assert list(sample.table.uns["cell_type_colors"]) == ["#00ff00", "#ff00ff", "#ff8000"]
    np.testing.assert_allclose(_shown_rgba(layer, 9), [1, 0x80 / 255, 0, 1], atol=1e-6)
    col.set_opacity(1.0)
    assert list(_screen_rgb(viewer, 9)) == [255, 128, 0]


def test_outline_mode_colors_each_cell_border(legend, qtbot):
    viewer, w, sample = legend
    col = w.coloring
    w.mode_box.setCurrentText("outline")
    layer = col.category_layer
    assert col.mode == "outline"
    np.testing.assert_allclose(_shown_rgba(layer, 17, edge=True), [1, 0, 1, 1])  # border: CAR T colour
    assert _shown_rgba(layer, 17)[3] == 0                                       # centre: empty
    # two touching cells (4242 and 70000 are both Tumor) each keep their own outline
    lvl0 = np.asarray(layer.data[0])
    assert lvl0[23, 50] != 0
    assert lvl0[30, 50] != 0


def test_numeric_column_colormap_range_and_color_bar(legend, qtbot):
    viewer, w, sample = legend
    w.set_column("CD3")
    col = w.coloring
    assert col.kind == "numeric"
    assert w.values.isVisibleTo(w)
    assert not w.categories.isVisibleTo(w)
    vl = col.value_layer
    assert vl.visible
    assert vl.colorbar.visible
    assert not col.category_layer.visible
    y, x = _center(17)
    assert float(np.asarray(vl.data[0][y, x])) == 9.0
    assert np.isnan(float(np.asarray(vl.data[0][0, 0])))               # background: transparent
    w.values.range_slider.setValue((2.0, 4.0))
    assert tuple(vl.contrast_limits) == (2.0, 4.0)
    w.values.cmap_box.setCurrentText("magma")
    assert vl.colormap.name == "magma"
    assert w.values.bar_lo.text() == "2"
    assert w.values.bar_hi.text() == "4"
    assert not w.values.colorbar.pixmap().isNull()
    w.set_column("cell_type")                                          # back: the value layer hides
    assert not vl.visible
    assert col.category_layer.visible


def test_counts_in_view_and_selected_region(legend, qtbot):
    viewer, w, sample = legend
    viewer.reset_view()
    w.update_counts()
    assert w.categories.item_for("Tumor").text(4) == "2"
    # zoom onto cell 17 only (world µm): only it stays in view
    y, x = _center(17)
    camera(viewer).center = (y * 0.5, x * 0.5)
    camera(viewer).zoom = 200
    w.update_counts()
    assert w.categories.item_for("CAR T").text(4) == "1"
    assert w.categories.item_for("Tumor").text(4) == "0"
    # a selected rectangle around cells 9 and 4242 (world µm)
    assert w.categories.tree.isColumnHidden(5)
    shapes = viewer.add_shapes([np.array([[14, 0], [14, 36], [26, 36], [26, 0]], float)], shape_type="polygon")
    shapes.selected_data = {0}
    w.update_counts()
    assert not w.categories.tree.isColumnHidden(5)
    assert w.categories.item_for("Tumor").text(5) == "1"
    assert w.categories.item_for("Stroma").text(5) == "1"
    assert w.categories.item_for("CAR T").text(5) == "0"


def test_highlight_and_registry(legend, qtbot):
    viewer, w, sample = legend
    sid = sample_id_of(viewer.layers[0])
    col = get_coloring(viewer, sid)
    assert col is w.coloring                                          # one per (viewer, sample)
    assert get_coloring(viewer.__wrapped__, sid) is col              # also through the real viewer
    mask = np.array([c in (17, 9) for c in CELLS])
    hl = col.highlight(mask, color="yellow", name="CD3+")
    y, x = _center(17)
    assert int(np.asarray(hl.data[0][y, x])) == 1
    y, x = _center(4242)
    assert int(np.asarray(hl.data[0][y, x])) == 0
    hl2 = col.highlight(~mask, name="CD3+")
    assert hl2.name == hl.name
    assert len(session_for(viewer).layers_of(sid, "cell_highlight")) == 1
    assert int(np.asarray(hl.data[0][y, x])) == 1
    col.clear_highlight("CD3+")
    assert col.highlight_layer("CD3+") is None
    # table edit then refresh: the cell's new type shows
    sample.table.obs.loc["c4242", "cell_type"] = "Stroma"
    col.refresh()
    np.testing.assert_allclose(_shown_rgba(col.category_layer, 4242), [0.5019608, 0.5019608, 0.5019608, 1], atol=1e-6)


def test_a_count_update_keeps_the_table_laid_out_and_sorts_only_when_the_order_changes(legend, qtbot):
    """A pan or an edit changes counts: the rows keep their layout (no column resized, no re-sort
    while the order holds, each of which repainted the table once more), yet the order and the
    widths stay right: every count fits its column, and a changed order is sorted again."""
    viewer, w, sample = legend
    panel = w.categories
    tree, head = panel.tree, panel.tree.header()
    fm = tree.fontMetrics()

    def fits(c):   # a count column holds the largest count it can show, and its header
        return (head.sectionSize(c) >= fm.horizontalAdvance(f"{sample.table.n_obs:,}")
                and head.sectionSize(c) >= head.fontMetrics().horizontalAdvance(tree.headerItem().text(c)))

    assert fits(2) and fits(4)
    resized, relaid = [], []
    # (the name column gives way when the region column appears: that one is expected)
    head.sectionResized.connect(lambda c, old, new: c >= 2 and old and new and resized.append((c, old, new)))
    tree.model().layoutChanged.connect(lambda *a: relaid.append(a))
    names = lambda: [tree.topLevelItem(i).text(1) for i in range(tree.topLevelItemCount())]  # noqa: E731
    assert names() == ["Tumor", "CAR T", "Stroma"]
    # counts change (a pan), the order by cell count holds: nothing re-laid
    panel.show_counts(np.array([2, 1, 0]), None)
    panel.show_counts(np.array([1, 1, 1]), np.array([1, 0, 1]))   # the region column appears
    panel.show_counts(np.array([1000, 10, 1]), np.array([1, 0, 1]))   # wider numbers: same widths
    assert not tree.isColumnHidden(5) and fits(5)
    assert [tree.topLevelItem(i).text(4) for i in range(3)] == ["1,000", "10", "1"]
    qtbot.wait(50)      # (a header sized to its contents resized on the next pass)
    assert not resized and not relaid
    # sorted "in view": a new order is applied, and the same counts again re-lay nothing
    panel.sort_box.setCurrentIndex(2)
    panel.show_counts(np.array([0, 0, 1]), None)
    assert names()[0] == "Stroma"
    n = len(relaid)
    panel.show_counts(np.array([0, 0, 1]), None)
    assert len(relaid) == n
    panel.show_counts(np.array([0, 1, 0]), None)
    assert names()[0] == "CAR T" and len(relaid) > n
