"""Every row of the Channels dock is readable inside napari's themed window (issue 14, item 1),
and applying a marker panel changes what is shown."""

from __future__ import annotations

import numpy as np
from ux_samples import MARKERS, _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari.layers import add_sample_layers


def _luminance(rgb) -> float:
    c = np.asarray(rgb, float) / 255.0
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2])


def _contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def row_contrasts(list_widget) -> list[float]:
    """WCAG contrast between each visible row's background and its text, from the rendered pixels."""
    from qtpy.QtGui import QImage

    img = list_widget.viewport().grab().toImage().convertToFormat(QImage.Format_RGB888)
    w, h = img.width(), img.height()
    arr = np.frombuffer(img.constBits().asstring(img.sizeInBytes()), np.uint8).reshape(h, img.bytesPerLine())
    arr = arr[:, : w * 3].reshape(h, w, 3)
    out = []
    for i in range(list_widget.count()):
        item = list_widget.item(i)
        r = list_widget.visualItemRect(item)
        if item.isHidden() or r.bottom() > h or r.height() < 4:
            continue
        # the text area: right of the check box and the colour swatch, inside the row
        crop = arr[r.top() + 1: r.bottom(), r.left() + 44: min(r.right(), r.left() + 44 + 120)].reshape(-1, 3)
        colors, counts = np.unique(crop, axis=0, return_counts=True)
        bg = colors[counts.argmax()]
        text = crop[np.abs(crop.astype(int) - bg.astype(int)).sum(1).argmax()]
        out.append(_contrast(bg, text))
    return out


def test_every_channel_row_is_readable_in_napari_theme(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.channels import ChannelsWidget

    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, grid_sample(markers=MARKERS))
    w = ChannelsWidget(viewer)
    viewer.window.add_dock_widget(w, name="Channels")   # inside the window: napari's stylesheet applies
    w.list.resize(300, 400)
    w.list.setCurrentRow(-1)                            # no highlighted row
    contrasts = row_contrasts(w.list)
    assert len(contrasts) >= 8
    assert min(contrasts) >= 4.5, contrasts            # WCAG AA for body text, on every row
    assert not w.list.alternatingRowColors()


def test_apply_panel_shows_exactly_its_markers_in_distinct_colours(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.channels import ChannelsWidget

    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, grid_sample(markers=MARKERS))
    w = ChannelsWidget(viewer)
    qtbot.addWidget(w)
    before = {lyr.name for lyr in w.image_layers() if lyr.visible}
    missing = w.apply_named_panel("T cells")       # DAPI, CD3, CD4, CD8, CAR, PD-1: no CD4, CD8 here
    shown = [lyr for lyr in w.image_layers() if lyr.visible]
    assert {lyr.name for lyr in shown} == {"DAPI", "CD3", "CAR", "PD-1"}
    assert {lyr.name for lyr in shown} != before
    assert set(missing) == {"CD4", "CD8"}
    assert len({lyr.colormap.name for lyr in shown}) == len(shown)      # no two shown channels alike
    assert "Not in this sample: CD4, CD8" in w.message.text()
