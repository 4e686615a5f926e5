"""The first view is the stain: cells as thin outlines in their class colour, not a filled class
map (issue 14, item 2), whichever dock colours the cells first."""

from __future__ import annotations

import numpy as np
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import FIRST_VIEW_MODE, add_sample_layers, session_for


def _code(layer, y, x):
    return int(np.asarray(layer.data[0] if layer.multiscale else layer.data)[y, x])


def _inside_clear(layer, y, x):
    """A cell's inside is drawn transparent (its code names the category for hover: lat, issue 14)."""
    return float(layer.colormap.map(np.array([_code(layer, y, x)], dtype=layer.dtype))[0][3]) == 0


def test_legend_first_view_is_outlines(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.legend import LegendWidget

    viewer = make_napari_viewer_proxy()
    sample = grid_sample()
    add_sample_layers(viewer, sample)
    w = LegendWidget(viewer)
    qtbot.addWidget(w)
    col = w.coloring
    assert FIRST_VIEW_MODE == "outline"
    assert col.key == "cell_type"
    assert col.mode == "outline"
    assert w.mode_box.currentText() == "outline"
    layer = col.category_layer
    # cell 3 covers rows 0-9, cols 0-9: its inside shows the stain, its border its class colour
    assert _inside_clear(layer, 5, 5)
    assert _code(layer, 9, 5) != 0
    from matplotlib.colors import to_rgb

    assert sample.table.obs["cell_type"].iloc[0] == "CAR T"
    rgba = layer.colormap.map(np.array([_code(layer, 9, 5)], dtype=np.uint8))[0]
    np.testing.assert_allclose(rgba[:3], to_rgb(col.color_of("CAR T")), atol=1 / 255)
    # several channels stay visible under the outlines
    assert sum(lyr.visible for lyr in session_for(viewer).layers_of(session_for(viewer).sid_of(sample), "image")) >= 3


def test_first_view_of_a_mask_without_image_is_filled(make_napari_viewer_proxy, qtbot):
    """A mask and a table only (no stain to keep in view): the classes are filled, since outlines
    over black are barely visible at slide zoom; the user's later choice is kept."""
    from napari_carspatial.model import Sample
    from napari_carspatial.widgets.legend import LegendWidget

    g = grid_sample()
    sample = Sample("mask only", labels=g.labels, table=g.table, pixel_size_um=1.0).validate()
    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, sample)
    w = LegendWidget(viewer)
    qtbot.addWidget(w)
    col = w.coloring
    assert col.key == "cell_type" and col.mode == "filled" and w.mode_box.currentText() == "filled"
    assert not _inside_clear(col.category_layer, 5, 5)       # the inside carries its class colour
    w.mode_box.setCurrentText("outline")
    assert col.mode == "outline" and _inside_clear(col.category_layer, 5, 5)


def test_curation_first_keeps_outlines(make_napari_viewer_proxy, qtbot):
    """The Curation dock made first colours by the curated column, still as outlines."""
    from napari_carspatial.widgets.curation import CurationWidget

    viewer = make_napari_viewer_proxy()
    sample = grid_sample()
    add_sample_layers(viewer, sample)
    w = CurationWidget(viewer)
    qtbot.addWidget(w)
    col = session_for(viewer).coloring(session_for(viewer).sid_of(sample))
    assert col.key == "cell_type_curated"
    assert col.mode == "outline"
    assert _inside_clear(col.category_layer, 5, 5)


def test_outlines_fade_at_slide_zoom(make_napari_viewer_proxy, qtbot):
    """At slide zoom (cells a few screen pixels) the outlines fade so they do not hide the stain;
    at cell zoom they are back at full opacity, also after a recolour."""
    from napari_carspatial._napari import camera
    from napari_carspatial._napari.layers import CELLS_OPACITY, FADE_MIN, outline_fade
    from napari_carspatial.widgets.legend import LegendWidget

    assert outline_fade(40.0) == 1.0 and outline_fade(1.0) == FADE_MIN
    assert FADE_MIN < outline_fade(8.0) < 1.0
    viewer = make_napari_viewer_proxy()
    sample = grid_sample()
    add_sample_layers(viewer, sample)
    w = LegendWidget(viewer)
    qtbot.addWidget(w)
    session = session_for(viewer)
    sid = session.sid_of(sample)
    lab = session.labels_layer(sid)
    cats = session.coloring(sid).category_layer
    cam = camera(viewer)
    cam.zoom = 8.0            # cells ~ 90 screen px
    assert abs(lab.opacity - CELLS_OPACITY) < 1e-3
    full = cats.opacity
    cam.zoom = 0.2            # cells ~ 2 screen px
    assert abs(lab.opacity - CELLS_OPACITY * FADE_MIN) < 1e-3
    assert cats.opacity < full
    w.coloring.set_opacity(0.9)   # a recolour keeps the fade
    assert abs(cats.opacity - 0.9 * FADE_MIN) < 1e-2
    cam.zoom = 8.0
    assert abs(cats.opacity - 0.9) < 1e-2 and abs(lab.opacity - CELLS_OPACITY) < 1e-3
