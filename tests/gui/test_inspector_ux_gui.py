"""The inspector and the hover line: no "nan", labelled fields, compact marker rows with units,
and after pinning the active layer is not the mask (issue 14, item 8)."""

from __future__ import annotations

import pandas as pd
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, session_for


def test_inspector_without_nan_and_safe_active_layer(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.inspector import InspectorWidget

    viewer = make_napari_viewer_proxy()
    sample = grid_sample()
    obs = sample.table.obs
    n = len(obs)   # the columns the curation adds, empty for most cells
    obs["exclude_reason"] = pd.Categorical([None] * n, categories=["fold", "artefact"])
    obs["roi"] = pd.Categorical([None] * n, categories=["core 1"])
    obs["excluded"] = False
    add_sample_layers(viewer, sample)
    session = session_for(viewer)
    labels = session.labels_layer(session.sid_of(sample))
    viewer.layers.selection.active = labels          # the reviewer was on the mask
    w = InspectorWidget(viewer)
    qtbot.addWidget(w)
    assert w.show_cell(3, center=True)
    text = w.header.text()
    assert "nan" not in text.lower()
    assert "<b>exclude_reason</b>: –" in text
    assert "<b>roi</b>: –" in text
    status = viewer.status
    assert status.startswith("cell 3 · cell_type: CAR T")
    assert "nan" not in status and "False" not in status
    assert len(status) <= 90
    # compact marker rows with the intensity unit
    assert w.table.verticalHeader().defaultSectionSize() <= 20
    assert w.table.horizontalHeaderItem(1).text() == "mean (a.u.)"
    assert w.table.rowCount() == len(sample.channel_names)
    # no paint / erase one key away: the active layer is a channel, not the mask (nor the ring)
    active = viewer.layers.selection.active
    assert active is not labels
    assert active.__class__.__name__ == "Image"
