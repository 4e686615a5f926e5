"""One notification at a time, clear of the scale bar, and a busy banner whose icon draws (issue 14,
item 9: toasts stacked over each other, garbled; the busy notice showed an empty box under Xvfb)."""

from __future__ import annotations

from qtpy.QtCore import QRect
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, notify, session_for


def test_a_new_notification_replaces_the_shown_one(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets._common import one_notification_at_a_time, shown_toasts

    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 1000)
    add_sample_layers(viewer, grid_sample())
    one_notification_at_a_time()
    one_notification_at_a_time()                  # idempotent: one handler however many docks call it
    notify("Gating applied to grid: CAR T 12, Tumor 12, Macrophage 12")
    qtbot.waitUntil(lambda: len(shown_toasts()) == 1, timeout=20_000)
    notify("grid is busy (measuring cells); edit it when that is done.", "warning")
    qtbot.wait(300)
    toasts = shown_toasts()
    assert len(toasts) == 1                       # replaced, not stacked
    assert "busy" in toasts[0].message.text()
    # bottom right of the canvas, clear of the scale bar (bottom left)
    canvas = viewer.window._qt_viewer.canvas.native
    assert toasts[0].parent() is canvas
    bar = QRect(0, canvas.height() - 60, 250, 60)
    assert not toasts[0].geometry().intersects(bar)
    # a milder message does not hide a warning: the warning moves up, the two never overlap
    notify("Gating applied to grid: CAR T 12")
    qtbot.wait(500)                               # napari's slide-in is over
    toasts = sorted(shown_toasts(), key=lambda t: t.y())
    assert [("busy" in t.message.text()) for t in toasts] == [True, False]
    assert not toasts[0].geometry().intersects(toasts[1].geometry())
    assert toasts[0].geometry().bottom() < toasts[1].geometry().top()
    # an error replaces them all
    notify("Could not read panel.csv: no 'name' column.", "error")
    qtbot.wait(300)
    toasts = shown_toasts()
    assert len(toasts) == 1 and "panel.csv" in toasts[0].message.text()
    for t in toasts:
        t.close()


def test_busy_notice_icon_draws(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets._common import BusyNotice

    viewer = make_napari_viewer_proxy()
    sample = grid_sample()
    add_sample_layers(viewer, sample)
    session = session_for(viewer)
    sid = session.sid_of(sample)
    seen = []
    from qtpy.QtWidgets import QVBoxLayout, QWidget

    dock = QWidget()
    notice = BusyNotice(session, lambda: sid, on_change=seen.append)
    QVBoxLayout(dock).addWidget(notice)
    qtbot.addWidget(dock)
    dock.show()
    assert notice.isHidden()
    session.set_busy(sid, "measuring cells")
    assert notice.isVisible() and seen[-1] is True
    assert notice.text() == "grid is busy: measuring cells. Edits wait until it is done."
    img = notice.icon.pixmap().toImage()
    assert not img.isNull() and img.width() >= 12
    alpha = [img.pixelColor(x, y).alpha() for x in range(img.width()) for y in range(img.height())]
    assert sum(a > 0 for a in alpha) > 0.1 * len(alpha)     # drawn, not an empty box
    assert all(ord(ch) < 0x2300 or ch in "µ²·–…" for ch in notice.text())   # no glyph a font may lack
    session.set_busy(sid, None)
    assert notice.isHidden() and seen[-1] is False


def test_a_workers_notification_replaces_too(make_napari_viewer_proxy, qtbot):
    """A message from a worker thread (a save, a measurement): napari shows it on the GUI thread,
    and the replacement follows it there."""
    import threading

    from napari_carspatial.widgets._common import one_notification_at_a_time, shown_toasts

    viewer = make_napari_viewer_proxy(show=True)
    one_notification_at_a_time()
    notify("first, from the GUI thread")
    qtbot.waitUntil(lambda: len(shown_toasts()) == 1, timeout=20_000)
    th = threading.Thread(target=lambda: notify("second, from a worker"))
    th.start()
    th.join()
    qtbot.waitUntil(lambda: any("worker" in t.message.text() for t in shown_toasts()), timeout=20_000)
    qtbot.wait(100)
    toasts = shown_toasts()
    assert [t.message.text() for t in toasts] == ["second, from a worker"]
    for t in toasts:
        t.close()
    del viewer
