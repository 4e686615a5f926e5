"""Gating in a narrow column with a real-style panel (marker names with spaces, as steinbock's
"Cytokeratin 5"): the count is never cut, "Apply rules" and its one-line result stay on screen,
and an unquoted name with a space gets a hint how to write it (issue 14, items 9 and 10)."""

from __future__ import annotations

import numpy as np
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers

PANEL = ["DAPI", "Cytokeratin 5", "CD3", "Histone H3", "Ag107"]


def test_narrow_gating_counts_apply_and_spaced_marker_names(make_napari_viewer_proxy, qtbot, monkeypatch):
    from napari_carspatial.widgets.gating import GatingWidget

    viewer = make_napari_viewer_proxy()
    sample = grid_sample(markers=PANEL)
    add_sample_layers(viewer, sample)
    g = GatingWidget(viewer)
    qtbot.addWidget(g)
    g.resize(390, 640)                       # the right column at 1600 x 1000
    g.show()
    qtbot.waitExposed(g)
    errors = []
    monkeypatch.setattr(g, "error", errors.append)
    ck = sample.table.X[:, 1]
    thr = float(np.median(ck))
    g.set_marker("Cytokeratin 5")
    g.set_threshold(thr)
    g.add_gate()
    lbl = g.gate_view.count_label
    qtbot.wait(50)                                                   # the layout follows the new text
    n_pos = int((ck > thr).sum())
    assert f"{n_pos:,} positive / {sample.n_cells:,} cells" in lbl.text()
    assert lbl.heightForWidth(lbl.width()) <= lbl.height()          # all of it on screen
    g.add_rule("CK+", "Cytokeratin 5+")
    assert g.apply_rules() is None
    assert errors and "quote a marker name with a space" in errors[-1] and '"Cytokeratin 5"+' in errors[-1]
    g.rules_view.rules_table.item(0, 1).setText('"Cytokeratin 5"+')
    res = g.apply_rules()
    assert res["counts"]["CK+"] == n_pos
    qtbot.wait(50)
    for w in (g.rules_view.apply_button, g.rules_view.result_label):
        assert not w.visibleRegion().isEmpty()
    text = g.rules_view.result_label.text()
    assert f"CK+: {n_pos:,}" in text and "\n" not in text                # one wrapped line
