"""Region borders keep a constant thin width on screen at every zoom, and their names sit in the
middle of the region, not at a corner the canvas edge cuts off (issue 14, item 3)."""

from __future__ import annotations

import numpy as np
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import ROI_EDGE_PX, add_sample_layers, camera, session_for


def _roi_layer(make_napari_viewer_proxy, *, show=False, pixel_size_um=0.5):
    viewer = make_napari_viewer_proxy(show=show)
    sample = grid_sample(n_side=12, cell=10, pixel_size_um=pixel_size_um)
    add_sample_layers(viewer, sample)
    session = session_for(viewer)
    view = session.curation(session.sid_of(sample))
    view.core.add_roi(np.array([[20, 20], [20, 100], [100, 100], [100, 20]], float), name="core 1", cls="Tumor core")
    return viewer, view.sync_roi_layer()


def test_roi_edge_width_constant_on_screen_across_zoom(make_napari_viewer_proxy):
    viewer, layer = _roi_layer(make_napari_viewer_proxy)
    cam = camera(viewer)
    on_screen = []
    for zoom in (0.25, 1.0, 4.0, 16.0, 64.0):
        cam.zoom = zoom
        w_data = float(np.asarray(layer.edge_width)[0])
        on_screen.append(w_data * float(layer.scale[-1]) * zoom)    # data -> world -> screen px
    np.testing.assert_allclose(on_screen, ROI_EDGE_PX, rtol=1e-6)
    assert layer.text.anchor == "center"


def _edge_thickness(shot, row):
    """Bright pixels across one row of a canvas screenshot around the border's left edge."""
    line = shot[row, :, :3].astype(int).sum(axis=1)
    bright = np.flatnonzero(line > 300)
    if bright.size == 0:
        return 0
    run = np.split(bright, np.flatnonzero(np.diff(bright) > 1) + 1)[0]   # the first (left) border
    return run.size


def test_roi_edge_rendered_thin_at_cell_and_slide_zoom(make_napari_viewer_proxy):
    viewer, layer = _roi_layer(make_napari_viewer_proxy, show=True)
    for lyr in viewer.layers:
        lyr.visible = lyr is layer   # only the border on a black canvas
    cam = camera(viewer)
    widths = []
    for zoom in (3.0, 24.0):        # slide zoom, cell zoom (a 10 µm cell ~120 px)
        cam.center = (30.0, 10.0)   # the left border (x = 10 µm) in view
        cam.zoom = zoom
        shot = viewer.screenshot(canvas_only=True, flash=False)
        widths.append(_edge_thickness(shot, shot.shape[0] // 2))
    assert all(1 <= w <= 4 for w in widths), widths          # a thin line, not a 20-25 µm band
    assert abs(widths[0] - widths[1]) <= 1, widths
