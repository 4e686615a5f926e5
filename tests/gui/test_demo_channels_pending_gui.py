"""The Channels dock never looks complete while hidden channels are still being added after the
first frame (issue 14: the demo's first frame listed 12 of its 14 markers without saying so)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from ux_samples import MARKERS, _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture


def test_channels_still_being_added_are_named(make_napari_viewer_proxy, qtbot):
    from napari_carspatial._napari import META_CHANNEL
    from napari_carspatial.widgets.channels import ChannelsWidget
    from napari_carspatial.widgets.progressive import add_samples_progressively

    viewer = make_napari_viewer_proxy()
    w = ChannelsWidget(viewer)
    done = []
    add_samples_progressively(viewer, [grid_sample(n_side=3, markers=MARKERS[:6])], on_done=lambda: done.append(True))
    rows = [w.list.item(i) for i in range(w.list.count())]
    missing = w.missing_channels()
    listed = [r.text() for r in rows[:-1]]
    assert missing and sorted(listed + missing) == sorted(MARKERS[:6])     # the first frame: visible ones only
    last = rows[-1]
    assert last is w.pending_item and f"+ {len(missing)} more not open yet" in last.text()
    assert all(m in last.text() for m in missing) and not last.flags() & Qt.ItemIsSelectable
    qtbot.waitUntil(lambda: bool(done), timeout=4000)
    assert [w.list.item(i).text() for i in range(w.list.count())] == [
        lyr.metadata[META_CHANNEL] for lyr in w.image_layers()] and len(w.image_layers()) == 6
    assert w.missing_channels() == [] and w.pending_item is None
