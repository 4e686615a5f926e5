"""Cell inspector and 40-channel panel, driven through the real widgets."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.model import Sample

MARKERS = ["DAPI", "PanCK", "MSLN", "CD3", "CAR", "CD68"] + [f"M{i:02d}" for i in range(34)]  # 40


def _grid_sample(name="grid", n_side=6, cell=10, markers=MARKERS):
    """n_side x n_side square-ish cells with known types and marker means."""
    size = n_side * cell
    yy, xx = np.mgrid[0:size, 0:size]
    lab = ((yy // cell) * n_side + (xx // cell) + 1).astype(np.uint32) * 3   # ids 3, 6, 9, ...
    ids = np.unique(lab)
    types = np.array(["CAR T", "Tumor", "Macrophage"])[np.arange(ids.size) % 3]
    rng = np.random.default_rng(1)
    img = rng.random((len(markers), size, size), dtype=np.float32)
    X = np.stack([np.bincount(np.searchsorted(ids, lab.ravel()), weights=img[c].ravel()) /
                  np.bincount(np.searchsorted(ids, lab.ravel())) for c in range(len(markers))], axis=1)
    t = ad.AnnData(X=X.astype(np.float32),
                   obs=pd.DataFrame({"cell_id": ids, "cell_type": pd.Categorical(types)},
                                    index=[f"c{i}" for i in ids]))
    t.var_names = markers
    return Sample(name, image=[img], channel_names=list(markers), pixel_size_um=1.0, labels=[lab], table=t).validate()


@pytest.fixture
def viewer_with_sample(make_napari_viewer_proxy):
    """A 6-marker sample: enough for the inspector, quick to add."""
    viewer = make_napari_viewer_proxy()
    sample = _grid_sample(markers=MARKERS[:6])
    add_sample_layers(viewer, sample)
    return viewer, sample


@pytest.fixture
def viewer_with_40(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    sample = _grid_sample()
    add_sample_layers(viewer, sample)
    return viewer, sample


def test_inspector_jump_shows_markers_and_neighbors(viewer_with_sample, qtbot):
    from napari_carspatial.widgets.inspector import InspectorWidget

    viewer, sample = viewer_with_sample
    w = InspectorWidget(viewer)
    qtbot.addWidget(w)
    w.id_edit.setText("24")           # 8th cell: rows 10-19, cols 10-19 -> centre (x 14.5, y 14.5) px
    w._jump()
    assert "Cell 24" in w.header.text()
    assert "14.5, 14.5 µm" in w.header.text()
    assert "Tumor" in w.header.text()        # ids index 7 -> 7 % 3 == 1 -> Tumor
    assert w.table.rowCount() == 6
    row = sample.table.obs_names.get_loc("c24")
    assert float(w.table.item(3, 1).text()) == pytest.approx(float(sample.table.X[row, 3]), rel=1e-2)
    # the 8 grid neighbours (within 30 µm, up to 10 nearest)
    assert "Neighbours" in w.neighbors.text()
    assert "CAR T" in w.neighbors.text()
    # the pinned cell is marked on the slide by a ring at its centroid (world µm, y x)
    ring = viewer.layers["pinned cell"]
    np.testing.assert_allclose(ring.data_to_world(ring.data[0]), (14.5, 14.5))
    from napari_carspatial._napari.inspect import camera

    np.testing.assert_allclose(camera(viewer).center[-2:], (14.5, 14.5))


def test_inspector_unknown_id_warns(viewer_with_sample, qtbot):
    from napari_carspatial.widgets.inspector import InspectorWidget

    viewer, _ = viewer_with_sample
    w = InspectorWidget(viewer)
    qtbot.addWidget(w)
    assert w.show_cell(99999) is False
    assert "99999" in w.hint.text()


def test_inspector_steps_through_every_cell_of_a_type(viewer_with_sample, qtbot):
    from napari_carspatial.widgets.inspector import InspectorWidget

    viewer, sample = viewer_with_sample
    w = InspectorWidget(viewer)
    qtbot.addWidget(w)
    w.type_key.setCurrentText("cell_type")
    w.category.setCurrentIndex(w.category.findData("CAR T"))
    expected = set(sample.table.obs.loc[sample.table.obs["cell_type"] == "CAR T", "cell_id"].tolist())
    seen = [w.step(1) for _ in range(len(expected))]
    assert set(seen) == expected                  # every CAR T cell once
    assert w.step(1) == seen[0]                   # then it cycles
    assert w.step(-1) == seen[-1]
    assert w.step_label.text() == f"{len(expected)} / {len(expected)}"


def test_inspector_category_counts_follow_an_edit_and_the_choice_stays(viewer_with_sample, qtbot):
    """An edit of the stepped column updates the counts in the category list in place; the
    reviewer's category stays chosen (it fell back to the first after every edit)."""
    from napari_carspatial._napari import session_for
    from napari_carspatial.widgets.inspector import InspectorWidget

    viewer, sample = viewer_with_sample
    w = InspectorWidget(viewer)
    qtbot.addWidget(w)
    w.type_key.setCurrentText("cell_type")
    w.category.setCurrentIndex(w.category.findData("Tumor"))
    obs = sample.table.obs
    obs.loc[obs.index[:3], "cell_type"] = "Tumor"
    s = session_for(viewer)
    s.table_changed(s.sid_of(sample), columns=["cell_type"], reason="test: an edit")
    assert w.category.currentData() == "Tumor"
    want = obs["cell_type"].value_counts()
    assert [w.category.itemText(i) for i in range(w.category.count())] == [
        f"{c} ({int(want[c]):,})" for c in obs["cell_type"].cat.categories]
    obs["cell_type"] = obs["cell_type"].cat.add_categories(["NK"])
    obs.loc[obs.index[:1], "cell_type"] = "NK"
    s.table_changed(s.sid_of(sample), columns=["cell_type"], reason="test: a new type")
    assert w.category.findData("NK") >= 0 and w.category.currentData() == "Tumor"


def test_inspector_click_pins_cell(viewer_with_sample, qtbot):
    from napari_carspatial.widgets.inspector import InspectorWidget

    viewer, _ = viewer_with_sample
    w = InspectorWidget(viewer)
    qtbot.addWidget(w)

    class _Ev:
        type = "mouse_press"
        position = (25.0, 35.0)   # world µm = px here: row 2, col 3 -> id (2*6+3+1)*3 = 48
        modifiers = []

    ev = _Ev()
    gen = w._on_click(viewer, ev)
    next(gen)
    ev.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    assert "Cell 48" in w.header.text()


def test_channels_search_toggle_contrast_and_panels(viewer_with_40, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CONFIG_DIR", str(tmp_path))
    from qtpy.QtCore import Qt

    from napari_carspatial.widgets.channels import ChannelsWidget

    viewer, sample = viewer_with_40
    w = ChannelsWidget(viewer)
    qtbot.addWidget(w)
    assert w.list.count() == 40
    w.search.setText("m0")
    visible_rows = [w.list.item(i).text() for i in range(40) if not w.list.item(i).isHidden()]
    assert visible_rows == [f"M0{i}" for i in range(10)]
    w.search.setText("")
    # toggling the checkbox toggles the layer
    item = w.list.findItems("CD68", Qt.MatchExactly)[0]
    item.setCheckState(Qt.Checked)
    assert viewer.layers["CD68"].visible
    item.setCheckState(Qt.Unchecked)
    assert not viewer.layers["CD68"].visible
    # colour of the current channel
    w.list.setCurrentItem(w.list.findItems("CD3", Qt.MatchExactly)[0])
    w.cmap.setCurrentText("yellow")
    assert viewer.layers["CD3"].colormap.name == "yellow"
    # auto-contrast the visible ones from the smallest level = percentiles of the data
    viewer.layers["CD3"].contrast_limits = (0.0, 0.01)
    viewer.layers["CD3"].visible = True   # the first view shows CAR, not CD3, for the T-cell lineage
    lims = w.auto_contrast_visible()
    lo, hi = np.percentile(np.asarray(sample.image[0][3]), [1, 99.8])
    assert lims["CD3"] == pytest.approx((lo, hi), rel=1e-4)
    assert viewer.layers["CD3"].contrast_limits == pytest.approx([lo, hi], rel=1e-4)
    # built-in CAR T panel: exactly its markers visible
    missing = w.apply_named_panel("CAR T")
    assert missing == []
    shown = sorted(lyr.name for lyr in viewer.layers if lyr.visible and lyr.name in MARKERS)
    assert shown == sorted(["DAPI", "PanCK", "MSLN", "CD3", "CAR", "CD68"])
    # in distinct colours: MSLN keeps yellow, so CD3 (yellow before) gets another one
    assert len({viewer.layers[n].colormap.name for n in shown}) == len(shown)
    assert viewer.layers["CD3"].colormap.name != "yellow"
    viewer.layers["CD3"].colormap = "yellow"
    # save a custom panel; a new widget (another session) finds it
    for name in ("M05", "M06"):
        viewer.layers[name].visible = True
    viewer.layers["DAPI"].visible = False
    w.save_visible_as_panel("my panel")
    assert (tmp_path / "marker_panels.json").exists()
    w2 = ChannelsWidget(viewer)
    qtbot.addWidget(w2)
    assert "my panel" in w2.panels
    for lyr in viewer.layers:
        lyr.visible = False
    w2.apply_named_panel("my panel")
    assert viewer.layers["M05"].visible
    assert not viewer.layers["DAPI"].visible
    assert viewer.layers["CD3"].colormap.name == "yellow"   # saved colour restored
