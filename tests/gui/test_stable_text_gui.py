"""``StableText``: the lines a dock rewrites on every pan, selection or edit re-lay nothing.

A ``QLabel``'s ``setText`` re-lays its parents, one level per turn of the event loop, up to the
main window, which then repaints the whole window (2-3 extra window repaints per interaction).
"""

from __future__ import annotations

import pytest
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QDockWidget, QLabel, QMainWindow, QVBoxLayout, QWidget

from napari_carspatial.widgets._common import StableText

TEXTS = ["No cells selected", "10,234 cells selected (5,000 Tumor, 3,000 CAR T, 1,500 B cell, 1,000 Stroma, +3 types)",
         "12 cells selected (12 CAR T)", ""]


class _LayoutRequests(QObject):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def eventFilter(self, obj, e):  # noqa: N802 - Qt API
        if e.type() == QEvent.Type.LayoutRequest:
            self.seen.append(type(obj).__name__)
        return False


def _window(qtbot, label):
    win = QMainWindow()
    central = QLabel("canvas")
    win.setCentralWidget(central)
    dock = QDockWidget("dock")
    body = QWidget()
    body.setMinimumWidth(300)      # as our docks (the text takes the width it is given)
    lay = QVBoxLayout(body)
    lay.addWidget(QLabel("above"))
    lay.addWidget(label)
    lay.addWidget(QLabel("below"))
    lay.addStretch(1)
    dock.setWidget(body)
    win.addDockWidget(Qt.RightDockWidgetArea, dock)
    qtbot.addWidget(win)
    win.resize(800, 500)
    win.show()
    qtbot.waitExposed(win)
    qtbot.wait(50)
    spy = _LayoutRequests()
    for w in (win, dock, body):
        w.installEventFilter(spy)
    return win, spy


@pytest.mark.parametrize("kind", ["stable", "qlabel"])
def test_rewriting_the_text_re_lays_the_window_only_for_a_qlabel(qtbot, kind):
    label = StableText(lines=2) if kind == "stable" else QLabel()
    if kind == "qlabel":
        label.setWordWrap(True)
    win, spy = _window(qtbot, label)
    heights = set()
    for text in TEXTS:
        label.setText(text)
        qtbot.wait(30)
        heights.add(label.height())
        assert label.text() == text
    if kind == "stable":
        assert spy.seen == [] and len(heights) == 1      # nothing re-laid, the same height always
    else:
        assert "QMainWindow" in spy.seen                 # why StableText exists


def test_stable_text_wraps_cuts_and_says_what_it_cut(qtbot):
    label = StableText(lines=2)
    win, _spy = _window(qtbot, label)
    fm = label.fontMetrics()
    label.setText("short")
    assert label.shown_text() == "short" and label.toolTip() == ""
    long = " ".join(f"word{k}" for k in range(200))
    label.setText(long)
    lines = label.shown_text().split("\n")
    assert len(lines) == 2 and lines[1].endswith("…")
    assert all(fm.horizontalAdvance(x) <= label.contentsRect().width() for x in lines)
    assert label.toolTip() == long and label.text() == long
    assert lines[0].startswith("word0 word1")
    # a wider dock: more of the text, still two lines
    label.setText(TEXTS[1])
    n_before = len(label.shown_text())
    label.resize(label.width() * 3, label.height())
    assert len(label.shown_text()) >= n_before
    assert label.height() == 2 * fm.lineSpacing() + label.contentsMargins().top() + label.contentsMargins().bottom()
