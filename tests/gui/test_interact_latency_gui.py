"""Less GUI-thread work per interaction (issue 14, round 5), each against the previous path:
the inspector's bar chart reuses its artists, its marker 99th percentiles survive a curation
edit (and can be made in a worker), and the Curation dock refreshes its hidden tabs when shown."""

from __future__ import annotations

import numpy as np
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, session_for


def _bars(chart):
    ax = chart.ax
    return ([round(r.get_width(), 12) for r in chart._bars], [t.get_text() for t in ax.get_yticklabels()],
            tuple(np.round(ax.get_xlim(), 9)), ax.get_xlabel())


def test_bar_chart_reused_draws_what_a_fresh_chart_draws(qtbot):
    from napari_carspatial.widgets.inspector import _BarChart

    names = ["DAPI", "CD3", "CAR"]
    ref = np.array([2.0, 4.0, 0.0])
    for reference in (ref, None):
        reused, fresh = _BarChart(), _BarChart()
        qtbot.addWidget(reused)
        qtbot.addWidget(fresh)
        reused.plot(names, np.array([1.0, 9.0, 3.0]), reference)
        bars = reused._bars
        reused.plot(names, np.array([0.5, 2.0, 7.0]), reference)
        assert reused._bars is bars                       # the same artists, moved
        fresh.plot(names, np.array([0.5, 2.0, 7.0]), reference)
        assert _bars(reused) == _bars(fresh)
    # another panel lays the axes out again
    reused.plot(["a", "b"], np.array([1.0, 2.0]), None)
    assert [t.get_text() for t in reused.ax.get_yticklabels()] == ["a", "b"]


def test_a_hidden_bar_chart_renders_when_shown_and_then_as_a_shown_one(qtbot):
    """The chart is a tab beside the marker table: a pin while it is hidden renders nothing
    (matplotlib rendered hidden canvases, ~75 ms per pin at 10^6 cells); showing it renders the
    last cell, the same pixels as a chart that was on screen all along."""
    from qtpy.QtWidgets import QLabel, QTabWidget

    from napari_carspatial.widgets.inspector import _BarChart

    names, ref = ["DAPI", "CD3", "CAR"], np.array([2.0, 4.0, 1.0])
    hidden, shown = _BarChart(), _BarChart()
    tabs, tabs2 = QTabWidget(), QTabWidget()    # the same docks, one showing its chart
    for t, chart in ((tabs, hidden), (tabs2, shown)):
        t.addTab(QLabel("table"), "Markers")
        t.addTab(chart, "Chart")
        qtbot.addWidget(t)
        t.resize(320, 240)
        t.show()
        qtbot.waitExposed(t)
    tabs2.setCurrentIndex(1)
    draws = []
    orig = hidden.canvas.draw
    hidden.canvas.draw = lambda: (draws.append(1), orig())[1]
    for vals in (np.array([1.0, 9.0, 3.0]), np.array([0.5, 2.0, 0.7])):   # two pins, chart hidden
        hidden.plot(names, vals, ref)
        shown.plot(names, vals, ref)
        qtbot.wait(30)
    assert not hidden.isVisible() and hidden.stale and not draws
    tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: len(draws) == 1, timeout=5000)
    assert not hidden.stale
    assert _bars(hidden) == _bars(shown)        # the last cell's bars, as the shown chart has them
    rendered = np.array(hidden.canvas.buffer_rgba())
    hidden.canvas.draw()                        # what a render now gives: the same pixels
    assert np.array_equal(rendered, np.asarray(hidden.canvas.buffer_rgba()))
    # on screen, a pin renders at once
    hidden.plot(names, np.array([2.0, 2.0, 2.0]), ref)
    qtbot.waitUntil(lambda: len(draws) == 2, timeout=5000)


def test_marker_reference_kept_across_a_curation_edit_and_made_in_a_worker(make_napari_viewer_proxy, qtbot,
                                                                           monkeypatch):
    from napari_carspatial.analysis.genes import column_percentile
    from napari_carspatial.widgets import inspector as insp_mod

    viewer = make_napari_viewer_proxy()
    sample = grid_sample()
    add_sample_layers(viewer, sample)
    session = session_for(viewer)
    sid = session.sid_of(sample)
    monkeypatch.setattr(insp_mod, "PREFETCH_MIN_CELLS", 0)   # the worker path, on a small table
    w = insp_mod.InspectorWidget(viewer)
    qtbot.addWidget(w)
    key = ("table", insp_mod.X_DEP, "marker_p99")
    qtbot.waitUntil(lambda: key in session.cache(sid) and not w._prefetching, timeout=5000)
    want = column_percentile(sample.table.X, 99)
    np.testing.assert_array_equal(session.cache(sid)[key], want)
    assert w.show_cell(3)
    kept = session.cache(sid)[key]
    # a curation edit names its columns: the percentiles stay; a change of anything drops them
    session.table_changed(sid, columns=("cell_type",), reason="test")
    assert session.cache(sid).get(key) is kept
    session.table_changed(sid, reason="test: anything")
    qtbot.waitUntil(lambda: key in session.cache(sid) and not w._prefetching, timeout=5000)
    np.testing.assert_array_equal(session.cache(sid)[key], want)


def test_hidden_tabs_refresh_when_shown_with_what_an_immediate_refresh_shows(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.model.audit_display import display_rows
    from napari_carspatial.widgets.curation import CurationWidget

    viewer = make_napari_viewer_proxy()
    sample = grid_sample()
    add_sample_layers(viewer, sample)
    w = CurationWidget(viewer)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.set_reviewer("Dr Test")
    w.tabs.setCurrentIndex(0)                              # the Cells tab in front
    n_audit = w.audit.audit_table.rowCount()
    w.core.select_ids([3, 6, 9])
    w.assign("Tumor")
    assert w.audit in w._stale and w.regions in w._stale   # nobody sees them: not refreshed yet
    assert w.audit.audit_table.rowCount() == n_audit
    w.tabs.setCurrentWidget(w.audit)                       # shown: refreshed
    assert w.audit not in w._stale
    shown = [[w.audit.audit_table.item(r, c).text() for c in range(w.audit.audit_table.columnCount())]
             for r in range(w.audit.audit_table.rowCount())]
    assert len(shown) > n_audit
    w.audit.refresh(w.core)                                # what the old, immediate refresh shows
    again = [[w.audit.audit_table.item(r, c).text() for c in range(w.audit.audit_table.columnCount())]
             for r in range(w.audit.audit_table.rowCount())]
    assert shown == again
    # with the Audit tab in front an edit refreshes it at once
    w.undo()
    assert w.audit not in w._stale
    assert w.audit.audit_table.rowCount() == len(display_rows(w.core.audit())) > len(again)
