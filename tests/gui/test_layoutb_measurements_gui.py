"""The Measurements dock in its column at 1600 x 1000: every header readable (two short lines, the
column as wide as its header, the full title in the tooltip), key columns first, empty ROI /
region / excluded columns out of the way, the markers reachable; sort, filter, export and centre
still work (issue 14: "curated type" was clipped and the markers off-screen)."""

from __future__ import annotations

import pandas as pd
from qtpy.QtCore import QPoint, Qt
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, session_for


def test_headers_readable_key_columns_first_markers_reachable(make_napari_viewer_proxy, qtbot, tmp_path):
    from napari_carspatial.widgets.measurements import MeasurementsWidget

    viewer = make_napari_viewer_proxy()
    sample = grid_sample(pixel_size_um=0.5)
    obs = sample.table.obs
    obs["cell_type_curated"] = obs["cell_type"]
    obs["roi"] = pd.Categorical([None, "core 1"] + [None] * (len(obs) - 2), categories=["core 1"])   # one Tumor cell
    obs["excluded"] = False
    add_sample_layers(viewer, sample)
    w = MeasurementsWidget(viewer)
    qtbot.addWidget(w)
    w.resize(380, 700)            # the right column's width at 1600 px
    w.show()
    qtbot.waitExposed(w)
    m, table, header = w.model, w.table, w.table.horizontalHeader()
    shown = w.visible_columns()
    assert shown[:5] == ["cell_id", "curated", "type", "roi", "area"]   # excluded: no value, hidden
    assert "excluded" not in shown
    markers = [k for k in shown if k.startswith("marker:")]
    assert markers == [f"marker:{c}" for c in sample.channel_names]
    assert shown.index(markers[0]) < shown.index("x")                   # markers before the centroid
    hfm = header.fontMetrics()
    for key in shown:
        j = m.meas.index_of(key)
        title = m.headerData(j, Qt.Horizontal)
        assert max(len(line) for line in title.split("\n")) <= 10 or " " not in title
        need = max(hfm.horizontalAdvance(line) for line in title.split("\n"))
        assert table.columnWidth(j) >= need, (key, title, table.columnWidth(j), need)   # not clipped
        assert m.meas.columns[j].title in m.headerData(j, Qt.Horizontal, Qt.ToolTipRole)
    assert m.headerData(m.meas.index_of("curated"), Qt.Horizontal) == "curated\ntype"
    assert header.height() >= 2 * hfm.height()                          # both lines on screen
    # the last marker is reachable by scrolling
    last = m.meas.index_of(markers[-1])
    table.scrollTo(m.index(0, last))
    qtbot.wait(20)
    x = table.columnViewportPosition(last)
    assert x >= 0 and x + table.columnWidth(last) <= table.viewport().width()
    # sort by clicking a header, filter, export, centre: all on the model's own columns
    cd3 = m.meas.index_of("marker:CD3")
    table.scrollTo(m.index(0, cd3))
    qtbot.wait(20)
    qtbot.mouseClick(header.viewport(), Qt.LeftButton, pos=QPoint(header.sectionViewportPosition(cd3) + 8, 8))
    assert m.sort_column == cd3
    vals = [float(m.meas.values(cd3)[m.table_row(r)]) for r in range(m.rowCount())]
    assert vals in (sorted(vals), sorted(vals, reverse=True))
    w.class_box.setCurrentIndex(w.class_box.findData("CAR T"))
    assert m.rowCount() == int((obs["cell_type_curated"] == "CAR T").sum())
    assert "roi" not in w.visible_columns()                            # no CAR T cell in a ROI: out of the way
    assert w.export_csv(tmp_path / "x.csv") == m.rowCount()
    assert list(pd.read_csv(tmp_path / "x.csv").columns)[:2] == ["cell id", "type"]   # CSV keeps every column
    assert "ROI" in pd.read_csv(tmp_path / "x.csv").columns
    assert w.center_on_row(0) is not None
    # an exclusion shows the excluded column again
    session = session_for(viewer)
    view = session.curation(session.sid_of(sample))
    view.core.select_ids(obs["cell_id"].to_numpy()[:2])
    view.core.exclude("fold")
    qtbot.waitUntil(lambda: "excluded" in w.visible_columns(), timeout=20_000)
