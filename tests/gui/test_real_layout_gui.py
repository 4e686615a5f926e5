"""What the real-data screenshots showed (issue 14, item 13): `carspatial open` of many small
acquisitions names each tile; the marker panels a sample has none of are greyed out; the class
list fills its dock (every class row visible, no scrolled strip above empty space)."""

from __future__ import annotations

from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers

IMC = ["H3", "CD99", "PIN", "CD8a", "CDH"]


def test_open_many_acquisitions_names_the_tiles(qtbot, mock_app_model):
    from napari_carspatial import cli
    from napari_carspatial._napari import session_for

    samples = [grid_sample(name=f"20210305_NE_mockData1_00{i}", n_side=3, markers=IMC) for i in range(1, 5)]
    viewer = cli._open_viewer(samples, title="test")
    try:
        tiles = [lyr for lyr in viewer.layers if lyr.name.endswith("tiles")]
        assert len(tiles) == 1
        assert list(tiles[0].features["acquisition"]) == ["001", "002", "003", "004"]
        assert tiles[0].text.visible
        assert len(session_for(viewer).samples()) == 1   # one montage sample, not four
    finally:
        viewer.close()


def test_panels_without_this_samples_markers_are_greyed(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.channels import ChannelsWidget

    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, grid_sample(markers=IMC))
    w = ChannelsWidget(viewer)
    qtbot.addWidget(w)
    model = w.panel_combo.model()
    enabled = {w.panel_combo.itemText(i): model.item(i).isEnabled() for i in range(w.panel_combo.count())}
    assert enabled["CAR T"] is False          # DAPI, PanCK, MSLN, CD3, CAR, CD68: none in a pancreas panel
    assert not w.apply_panel.isEnabled()      # no built-in panel has H3 / CD99 / PIN / CD8a / CDH
    assert "0 of 6" in w.panel_combo.itemData(w.panel_combo.findText("CAR T"), 3)   # Qt.ToolTipRole


def test_panels_rank_on_the_demo_markers(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.channels import ChannelsWidget

    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, grid_sample())
    w = ChannelsWidget(viewer)
    qtbot.addWidget(w)
    assert w.panel_combo.currentText() == "CAR T" and w.apply_panel.isEnabled()
    assert w.panel_combo.model().item(w.panel_combo.findText("Myeloid")).isEnabled()


def test_class_list_fills_its_dock(make_napari_viewer_proxy, qtbot):
    from qtpy.QtWidgets import QSizePolicy

    from napari_carspatial.widgets.legend import LegendWidget

    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, grid_sample())
    w = LegendWidget(viewer)
    assert w.sizePolicy().verticalPolicy() == QSizePolicy.Expanding   # napari adds no stretch under it
    viewer.window.add_dock_widget(w, area="right", name="Legend")
    w.resize(380, 420)
    qtbot.waitUntil(lambda: w.categories.tree.topLevelItemCount() == 3, timeout=20_000)
    tree = w.categories.tree
    last = tree.visualItemRect(tree.topLevelItem(2))
    assert last.bottom() <= tree.viewport().height()   # the last class row is fully visible
