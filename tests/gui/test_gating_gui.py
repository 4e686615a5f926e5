"""The Gating dock driven like a user: marker, threshold, live preview on the slide, gates, rules,
apply, export/import, and the same gating applied to a second sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import QPoint, Qt

from napari_carspatial._napari import sample_id_of, session_for
from napari_carspatial._napari.layers import add_sample_layers
from napari_carspatial.analysis.gating import suggest_threshold, transform_values
from napari_carspatial.model import Sample, instance_ids, spatial_to_yx

MARKERS = ["DAPI", "CD3", "CAR", "PanCK", "MSLN"]


def _grid_sample(name="grid", seed=0, n_side=16, cell=8):
    """n_side x n_side square cells with non-consecutive ids and bimodal CD3 / CAR / PanCK / MSLN."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    n = n_side * n_side
    size = n_side * cell
    ids = (np.arange(n) * 7 + 3).astype(np.uint32)           # 3, 10, 17, ...: not consecutive
    lab = np.zeros((size, size), np.uint32)
    cy, cx = np.divmod(np.arange(n), n_side)
    block = np.kron(ids.reshape(n_side, n_side), np.ones((cell, cell), np.uint32))
    inner = np.zeros((cell, cell), bool)
    inner[1:-1, 1:-1] = True
    lab[np.tile(inner, (n_side, n_side))] = block[np.tile(inner, (n_side, n_side))]
    X = rng.lognormal(np.log(40), 0.3, size=(n, len(MARKERS)))
    for j, frac in ((1, 0.3), (2, 0.15), (3, 0.4), (4, 0.25)):
        on = rng.random(n) < frac
        X[on, j] = rng.lognormal(np.log(600), 0.3, on.sum())
    table = ad.AnnData(
        X=X.astype(np.float32),
        obs=pd.DataFrame({"cell_id": ids.astype(np.int64)}, index=[f"c{i}" for i in ids]),
    )
    table.var_names = MARKERS
    table.obsm["spatial"] = np.c_[cx * cell + cell / 2 - 0.5, cy * cell + cell / 2 - 0.5]  # (x, y)
    img = rng.random((len(MARKERS), size, size), dtype=np.float32)
    s = Sample(name, image=[img], channel_names=MARKERS, pixel_size_um=0.5, labels=[lab], table=table)
    return s.validate()


@pytest.fixture
def gating(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.gating import GatingWidget

    viewer = make_napari_viewer_proxy()
    a, b = _grid_sample("pre", seed=1), _grid_sample("post", seed=2)
    add_sample_layers(viewer, a)
    add_sample_layers(viewer, b)
    widget = GatingWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()              # docked and on screen, as a user gates
    qtbot.waitExposed(widget)
    return viewer, widget, a, b


def _select_sample(widget, sample):
    sid = widget.session.register(sample)
    widget.sample_combo.setCurrentIndex(widget.sample_combo.findData(sid))
    assert widget.sample is sample


def _choose_marker(widget, marker):
    widget.gate_view.marker_combo.setCurrentIndex(widget.gate_view.marker_combo.findText(marker))
    assert widget.marker == marker


def _highlighted_ids(layer, sample) -> np.ndarray:
    """Mask ids shown by the preview layer (labels highlight) or under its points (fallback)."""
    lab = np.asarray(sample.labels[0])
    if layer.__class__.__name__ == "Points":
        yx = np.round(np.asarray(layer.data)).astype(int)
        return np.unique(lab[yx[:, 0], yx[:, 1]])
    data = layer.data[0] if layer.multiscale else layer.data
    codes = np.asarray(data)
    return np.unique(lab[codes > 0])


def test_threshold_preview_count_and_cells_equal_hand(gating, qtbot):
    viewer, widget, a, b = gating
    assert widget.sample_combo.count() == 2
    _select_sample(widget, a)
    _choose_marker(widget, "CD3")
    widget.gate_view.transform_combo.setCurrentText("asinh")
    widget.gate_view.threshold_spin.setValue(200.0)
    cd3 = a.table.X[:, 1].astype(float)
    hand = cd3 > 200.0
    assert 10 < hand.sum() < a.n_cells - 10
    np.testing.assert_array_equal(widget.preview_mask, hand)
    assert widget.gate_view.count_label.text() == (f"CD3 > 200:  {hand.sum():,} positive / {a.n_cells:,} cells "
                                                   f"({100 * hand.mean():.1f}%)")
    # the slide preview follows after the debounce
    assert widget._timer.isActive()
    qtbot.waitUntil(lambda: not widget._timer.isActive(), timeout=20_000)
    layer = widget.preview_layer()
    assert layer.visible
    assert sample_id_of(layer) == session_for(viewer).register(a)
    np.testing.assert_allclose(layer.scale[-2:], [0.5, 0.5])   # on top of the cells (µm)
    shown = _highlighted_ids(layer, a)
    np.testing.assert_array_equal(shown[shown > 0], np.sort(instance_ids(a.table)[hand]))
    # moving the threshold updates the same layer
    widget.gate_view.threshold_spin.setValue(1e6)
    assert widget.gate_view.count_label.text().endswith(f"0 positive / {a.n_cells:,} cells (0.0%)")
    qtbot.waitUntil(lambda: not widget._timer.isActive(), timeout=20_000)
    assert widget.preview_layer() is layer
    assert _highlighted_ids(layer, a).max(initial=0) == 0
    # switching to another tab (the panel is hidden) takes the preview off the slide
    widget.hide()
    assert widget.preview_layer() is None or not widget.preview_layer().visible
    widget.show()
    qtbot.waitUntil(lambda: widget.preview_layer() is not None and widget.preview_layer().visible, timeout=20_000)

    # unticking the preview removes it
    widget.gate_view.preview_check.setChecked(False)
    assert widget.preview_layer() is None

    # a sample without a cell mask: the preview is a Points layer at the positive cells' centroids
    c = _grid_sample("nomask", seed=3)
    lab_c = np.asarray(c.labels[0])
    c.labels = []
    add_sample_layers(viewer, c)
    _select_sample(widget, c)
    widget.gate_view.preview_check.setChecked(True)
    _choose_marker(widget, "CAR")
    widget.gate_view.threshold_spin.setValue(250.0)
    widget.update_preview()
    layer = widget.preview_layer()
    assert layer.__class__.__name__ == "Points"
    hand = c.table.X[:, 2] > 250.0
    assert 0 < hand.sum() < c.n_cells
    np.testing.assert_allclose(layer.data, spatial_to_yx(c.table.obsm["spatial"])[hand])
    np.testing.assert_allclose(layer.scale[-2:], [0.5, 0.5])
    yx = np.round(np.asarray(layer.data)).astype(int)
    np.testing.assert_array_equal(np.unique(lab_c[yx[:, 0], yx[:, 1]]), np.sort(instance_ids(c.table)[hand]))


def test_suggest_and_histogram_click(gating, qtbot):
    viewer, widget, a, b = gating
    _select_sample(widget, a)
    _choose_marker(widget, "PanCK")
    widget.gate_view.transform_combo.setCurrentText("asinh")
    widget.gate_view.cofactor_spin.setValue(5.0)
    widget.gate_view.method_combo.setCurrentText("GMM")
    widget.gate_view.suggest_button.click()
    v = a.table.X[:, 3].astype(float)
    expected = suggest_threshold(v, method="gmm", transform="asinh", cofactor=5.0)
    assert widget.threshold == pytest.approx(expected, rel=1e-3)
    assert 100 < widget.threshold < 400                          # between the modes (40, 600)
    # click on the histogram at asinh(300 / 5): the threshold becomes 300 raw units
    canvas = widget.gate_view.hist.canvas
    canvas.draw()
    ax = widget.gate_view.hist.ax
    x_disp, y_disp = ax.transData.transform((float(transform_values([300.0], "asinh", 5.0)[0]), 1.0))
    dpr = canvas.devicePixelRatioF() if hasattr(canvas, "devicePixelRatioF") else 1.0
    pos = QPoint(int(round(x_disp / dpr)), int(round(canvas.height() - y_disp / dpr)) - 2)
    qtbot.mouseClick(canvas, Qt.LeftButton, pos=pos)
    assert widget.threshold == pytest.approx(300.0, rel=0.03)


def test_gates_rules_apply_export_import_and_second_sample(gating, qtbot, tmp_path):
    viewer, widget, a, b = gating
    _select_sample(widget, a)
    for marker, thr in (("CD3", 200.0), ("CAR", 250.0), ("PanCK", 180.0), ("MSLN", 220.0)):
        _choose_marker(widget, marker)
        widget.gate_view.threshold_spin.setValue(thr)
        widget.gate_view.add_gate_button.click()
    assert widget.gates_view.gate_list.count() == 4
    assert widget.gates["CAR"].threshold == 250.0
    assert widget.gates["CAR"].transform == "asinh"
    # re-gating a marker replaces its gate
    _choose_marker(widget, "CD3")
    assert widget.threshold == 200.0   # the stored gate comes back into the editor
    widget.gate_view.threshold_spin.setValue(210.0)
    widget.gate_view.add_gate_button.click()
    assert widget.gates_view.gate_list.count() == 4
    assert widget.gates["CD3"].threshold == 210.0

    # rules typed in the editor, out of order first, then moved
    rules = [("T cell", "CD3+"), ("CAR T", "CD3+ CAR+"), ("Tumor (antigen-neg)", "PanCK+ MSLN-"), ("Tumor", "PanCK+")]
    for name, cond in rules:
        widget.rules_view.add_rule_button.click()
        r = widget.rules_view.rules_table.rowCount() - 1
        widget.rules_view.rules_table.item(r, 0).setText(name)
        widget.rules_view.rules_table.item(r, 1).setText(cond)
    widget.rules_view.rules_table.selectRow(1)
    widget.rules_view.up_button.click()                     # CAR T before T cell
    assert [widget.rules_view.rules_table.item(i, 0).text() for i in range(4)][:2] == ["CAR T", "T cell"]
    widget.rules_view.add_rule_button.click()
    widget.rules_view.remove_rule_button.click()            # the extra row goes again
    assert widget.rules_view.rules_table.rowCount() == 4

    def hand(sample):
        X = sample.table.X.astype(float)
        cd3, car, panck, msln = X[:, 1] > 210, X[:, 2] > 250, X[:, 3] > 180, X[:, 4] > 220
        out = np.full(sample.n_cells, "Other", dtype=object)
        out[panck] = "Tumor"
        out[panck & ~msln] = "Tumor (antigen-neg)"
        out[cd3] = "T cell"
        out[cd3 & car] = "CAR T"
        return out

    widget.rules_view.apply_button.click()
    got = a.table.obs["phenotype_gated"]
    np.testing.assert_array_equal(np.asarray(got, dtype=object), hand(a))
    assert list(got.cat.categories) == ["CAR T", "T cell", "Tumor (antigen-neg)", "Tumor", "Other"]
    n_car = int((hand(a) == "CAR T").sum())
    assert f"CAR T: {n_car:,}" in widget.rules_view.result_label.text()
    stored = a.table.uns["carspatial"]["gating"]
    assert stored["key"] == "phenotype_gated"
    assert stored["applied_by"]
    assert "phenotype_gated" not in b.table.obs

    # the same gating on the second sample
    assert widget.share_view.target_combo.currentData() == session_for(viewer).register(b)
    widget.share_view.apply_to_button.click()
    np.testing.assert_array_equal(np.asarray(b.table.obs["phenotype_gated"], dtype=object), hand(b))

    # export, clear, import: the same scheme comes back
    path = widget.export_gating(str(tmp_path / "gating.yaml"))
    before = widget.scheme()
    widget.model.gates.clear()
    widget.model.rows.clear()
    scheme = widget.import_gating(str(path))
    assert scheme == before
    assert widget.scheme() == before
    assert widget.gates_view.gate_list.count() == 4
    assert widget.rules_view.rules_table.rowCount() == 4


def test_errors_are_notified_not_raised(gating, qtbot, monkeypatch, tmp_path):
    import napari.utils.notifications as notes

    viewer, widget, a, b = gating
    shown = []
    monkeypatch.setattr(notes, "show_error", lambda msg: shown.append(msg))
    _select_sample(widget, a)
    _choose_marker(widget, "CD3")
    widget.gate_view.add_gate_button.click()
    widget.add_rule("CAR T", "CD3+ CAR+")           # no gate on CAR
    assert widget.apply_rules() is None
    assert "CAR" in shown[-1]
    assert "phenotype_gated" not in a.table.obs
    widget.rules_view.rules_table.item(0, 1).setText("CD3")    # no sign
    assert widget.apply_rules() is None
    assert "rule 1" in shown[-1]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert widget.import_gating(str(bad)) is None
    assert str(bad) in shown[-1]
    assert "not valid JSON" in shown[-1]


def test_stored_gating_is_loaded_with_the_sample(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.analysis.gating import Gate, GatingScheme, PhenotypeRule, store_gating
    from napari_carspatial.widgets.gating import GatingWidget

    viewer = make_napari_viewer_proxy()
    s = _grid_sample("stored")
    store_gating(s.table, GatingScheme(gates={"CD3": Gate("CD3", 123.0)}, rules=[PhenotypeRule("T", "CD3+")]))
    add_sample_layers(viewer, s)
    widget = GatingWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.gates["CD3"].threshold == 123.0
    assert widget.rules_view.rules_table.item(0, 1).text() == "CD3+"


def test_values_measured_again_in_place_are_not_stale(gating, qtbot):
    """The same number of cells with new values (a segmentation re-measure writes X in place):
    after the session's table_changed the histogram, count and preview use the new values."""
    viewer, widget, a, b = gating
    _select_sample(widget, a)
    _choose_marker(widget, "CD3")
    widget.gate_view.threshold_spin.setValue(200.0)
    before = int(widget.preview_mask.sum())
    a.table.X[:, 1] = a.table.X[:, 1] * 0.0 + 1000.0        # every cell bright now, same row count
    assert int(widget.preview_mask.sum()) == before          # nothing told the dock yet
    widget.session.table_changed(widget.sample_id, columns=["CD3"], reason="re-measured")
    assert int(widget.preview_mask.sum()) == a.n_cells
    assert f":  {a.n_cells:,} positive" in widget.gate_view.count_label.text()
    # busy: a worker writing this sample's table disables Apply and shows who is busy
    with widget.session.busy_while(widget.sample_id, "committing segmentation edits"):
        assert not widget.rules_view.apply_button.isEnabled()
        assert widget.busy_notice.isVisibleTo(widget)
        assert "committing segmentation edits" in widget.busy_notice.text()
    assert widget.rules_view.apply_button.isEnabled()
    assert not widget.busy_notice.isVisibleTo(widget)
