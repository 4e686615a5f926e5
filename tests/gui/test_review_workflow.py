"""The Review issue's 'done means', end to end on the demo, through the real widgets.

A reviewer colours by cell type, reads the legend, hides stroma, steps through every CAR T cell,
gates CD3 and CAR into a CAR T call that matches the true types, and applies the same gating to
the other timepoint.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_carspatial._napari import session_for
from napari_carspatial._napari.layers import add_samples_layers
from napari_carspatial.datasets import demo_pair


@pytest.fixture(scope="module")
def pair():
    return demo_pair(size=768, seed=4)


def test_review_workflow_on_demo(make_napari_viewer_proxy, qtbot, pair):
    from napari_carspatial.widgets.gating import GatingWidget
    from napari_carspatial.widgets.inspector import InspectorWidget
    from napari_carspatial.widgets.legend import COL_N, COL_SHOW, LegendWidget

    pre, post = pair
    viewer = make_napari_viewer_proxy()
    add_samples_layers(viewer, [post, pre])
    sid_post, sid_pre = session_for(viewer).register(post), session_for(viewer).register(pre)
    truth = post.table.obs["cell_type"].astype(str).to_numpy()

    # 1. colour by cell type; the legend counts equal the table
    legend = LegendWidget(viewer)
    qtbot.addWidget(legend)
    legend.sample_box.setCurrentIndex(legend.sample_box.findData(sid_post))
    legend.set_column("cell_type")
    car = legend.categories.item_for("CAR T")
    assert int(car.text(COL_N).replace(",", "")) == int((truth == "CAR T").sum()) > 0
    # 2. hide stroma: its colour becomes transparent, CAR T stays
    stroma = legend.categories.item_for("Stroma")
    stroma.setCheckState(COL_SHOW, Qt.Unchecked)
    col = legend.coloring
    assert not col.visible[col.categories.index("Stroma")]
    layer = col.category_layer
    code_stroma = col.categories.index("Stroma") + 1
    code_car = col.categories.index("CAR T") + 1
    assert layer.colormap.map(np.array([code_stroma]))[0][3] == 0
    assert layer.colormap.map(np.array([code_car]))[0][3] > 0

    # 3. step through every CAR T cell of the post sample, each once, the camera on each
    insp = InspectorWidget(viewer)
    qtbot.addWidget(insp)
    insp.sample_combo.setCurrentIndex(insp.sample_combo.findData(sid_post))
    insp.type_key.setCurrentText("cell_type")
    insp.category.setCurrentIndex(insp.category.findData("CAR T"))
    expected = set(post.table.obs.loc[truth == "CAR T", "cell_id"].astype(int))
    seen = [insp.step(1) for _ in range(len(expected))]
    assert set(seen) == expected
    assert len(seen) == len(set(seen))
    assert "CAR T" in insp.header.text()

    # 4. gate CD3 and CAR (suggested thresholds on the asinh scale), rule CAR T = CD3+ CAR+
    gating = GatingWidget(viewer)
    qtbot.addWidget(gating)
    gating.sample_combo.setCurrentIndex(gating.sample_combo.findData(sid_post))
    for marker in ("CD3", "CAR"):
        gating.set_marker(marker)
        gating.gate_view.transform_combo.setCurrentText("asinh")
        assert gating.suggest() is not None
        assert gating.add_gate() is not None
    gating.add_rule("CAR T", "CD3+ CAR+")
    counts = gating.apply_rules()
    assert counts is not None
    called = post.table.obs["phenotype_gated"].astype(str).to_numpy() == "CAR T"
    real = truth == "CAR T"
    tp = int((called & real).sum())
    f1 = 2 * tp / (called.sum() + real.sum())
    assert f1 >= 0.9, f"CAR T call F1 {f1:.3f}"
    # the gating is stored with the table (who, when, values)
    from napari_carspatial.analysis.gating import load_gating

    stored = post.table.uns["carspatial"]["gating"]
    assert stored["applied_by"]
    assert stored["applied_at"]
    scheme = load_gating(post.table)
    assert set(scheme.gates) == {"CD3", "CAR"}
    assert scheme.gates["CD3"].threshold == pytest.approx(gating.gates["CD3"].threshold)

    # 5. the same gates on the pre-infusion sample: nearly no CAR T calls (there are none)
    gating.apply_to_sample(sid_pre)
    pre_calls = pre.table.obs["phenotype_gated"].astype(str).to_numpy() == "CAR T"
    assert (pre.table.obs["cell_type"].astype(str) == "CAR T").sum() == 0
    assert pre_calls.mean() < 0.01
