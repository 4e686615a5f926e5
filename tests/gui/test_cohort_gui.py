"""The cohort widget: load batch results, double-click opens the sample, strip plot marks it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_carspatial._napari import session_for


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from napari_carspatial.cohort import run_batch, write_demo_cohort

    out = tmp_path_factory.mktemp("cohort_gui")
    paths = write_demo_cohort(out, n_patients=4, size=500, image=True)
    res = run_batch(paths["manifest"], paths["config"], out / "results", scheduler="sequential", progress=False)
    assert not len(res.failed)
    return res.out


def test_cohort_widget_opens_sample(make_napari_viewer_proxy, qtbot, results):
    from napari_carspatial.widgets.cohort import CohortWidget

    viewer = make_napari_viewer_proxy(show=True)
    w = CohortWidget(viewer)
    viewer.window.add_dock_widget(w, name="Cohort", area="right")
    w.load(results)
    assert w.table.rowCount() == 8
    headers = [w.table.horizontalHeaderItem(j).text() for j in range(w.table.columnCount())]
    assert headers[:5] == ["sample", "patient", "timepoint", "response", "cells"]
    assert len(headers) == 6                       # one key metric at a time: the table fits the dock
    assert "CAR T /mm²" in headers[5]
    w.metric_box.setCurrentIndex(1)
    assert w.table.horizontalHeaderItem(5).text().replace("\n", " ") == w.metric_box.itemText(1)
    qtbot.waitExposed(w)
    qtbot.wait(50)
    assert w.table.horizontalHeader().length() <= w.table.viewport().width() + 1   # no column cut off
    assert not w.table.horizontalScrollBar().isVisible()
    # the strips have axis values: the cohort's range at the ends
    lo, hi, _cur = w.strip.axis_texts(0)
    assert lo != "–" and hi != "–"
    vals = w.strip.rows[0][1]
    from napari_carspatial.widgets.cohort import axis_value

    assert (lo, hi) == (axis_value(float(vals[vals == vals].min())), axis_value(float(vals[vals == vals].max())))
    row = next(i for i in range(8) if w.sample_at(i) == "P02-post")
    with qtbot.waitSignal(w.table.cellDoubleClicked, timeout=20_000):
        w.table.cellDoubleClicked.emit(row, 0)
    qtbot.waitUntil(lambda: w._worker is not None, timeout=20_000)
    qtbot.waitUntil(lambda: any(s.name == "P02-post" for s in session_for(viewer).samples().values()),
                    timeout=20000)
    names = [lyr.name for lyr in viewer.layers]
    assert "PanCK" in names or any("PanCK" in n for n in names)
    assert w.strip.current == "P02-post"
    assert w.strip.axis_texts(0)[2] is not None    # the current sample's value is written at its ring
    sel = w.table.selectionModel().selectedRows()
    assert sel
    assert w.sample_at(sel[0].row()) == "P02-post"
    s = next(s for s in session_for(viewer).samples().values() if s.name == "P02-post")
    assert s.metadata["response"] in ("CR", "PR")
    qtbot.waitUntil(lambda: len([ly for ly in viewer.layers if ly.name.endswith("CAR") or ly.name == "CAR"]) > 0,
                    timeout=10000)
    shot = os.environ.get("CARSPATIAL_SCREENSHOT_DIR")
    if shot:
        qtbot.wait(800)
        viewer.window.resize(1500, 950)
        qtbot.wait(500)
        img = viewer.screenshot(canvas_only=False, flash=False)
        from imageio.v3 import imwrite

        imwrite(Path(shot) / "cohort_widget.png", img)


def test_cohort_widget_errors_are_notifications(make_napari_viewer_proxy, tmp_path):
    from napari_carspatial.widgets.cohort import CohortWidget

    viewer = make_napari_viewer_proxy()
    w = CohortWidget(viewer)
    w.load(tmp_path)  # no run.json
    assert "not a carspatial batch results folder" in w.status.text() or "not found" in w.status.text()
    assert w.open_sample("nope") is None
