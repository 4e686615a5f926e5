"""The Channels dock never looks complete while hidden channels are still being added after the
first frame (issue 14: the demo's first frame listed 12 of its 14 markers without saying so)."""

from __future__ import annotations

from ux_samples import MARKERS, _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture


def test_channels_still_being_added_are_named(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.channels import ChannelsWidget
    from napari_carspatial.widgets.progressive import add_samples_progressively

    viewer = make_napari_viewer_proxy()
    w = ChannelsWidget(viewer)
    done = []
    add_samples_progressively(viewer, [grid_sample(n_side=3, markers=MARKERS[:6])], on_done=lambda: done.append(True))
    listed = [w.list.item(i).text() for i in range(w.list.count())]
    missing = w.missing_channels()
    assert missing and sorted(listed + missing) == sorted(MARKERS[:6])     # the first frame: visible ones only
    assert not w.pending.isHidden() and f"{len(missing)} more channel" in w.pending.text()
    assert all(m in w.pending.text() for m in missing[:6])
    qtbot.waitUntil(lambda: bool(done), timeout=4000)
    assert w.list.count() == 6 and w.missing_channels() == []
    assert w.pending.isHidden()
