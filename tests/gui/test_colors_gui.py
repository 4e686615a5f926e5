"""Every class colour is distinct from every shown channel colour (issue 14, item 4), on the demo
as the viewer shows it, after each built-in marker panel too."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_carspatial.model import palette as pal


def _shown_channels(session, sid):
    return [lyr for lyr in session.layers_of(sid, "image") if lyr.visible]


def _channel_rgb(layer):
    return tuple(float(v) for v in layer.colormap.map(np.array([1.0]))[0][:3])


@pytest.fixture
def demo_viewer(make_napari_viewer_proxy, qtbot):
    from napari_carspatial._napari import add_sample_layers, session_for
    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.widgets.channels import ChannelsWidget
    from napari_carspatial.widgets.legend import LegendWidget

    viewer = make_napari_viewer_proxy()
    sample = demo_sample(size=256, seed=3)
    add_sample_layers(viewer, sample)
    legend, channels = LegendWidget(viewer), ChannelsWidget(viewer)
    qtbot.addWidget(legend)
    qtbot.addWidget(channels)
    session = session_for(viewer)
    return session, session.sid_of(sample), legend, channels


def test_class_colours_far_from_shown_channel_colours(demo_viewer):
    session, sid, legend, channels = demo_viewer
    col = legend.coloring
    assert col.key is not None
    assert len(col.colors) >= 8
    views = [("first view", None), *[(p, p) for p in channels.panels]]
    checked = 0
    for label, panel in views:
        if panel is not None:
            channels.apply_named_panel(panel)
        shown = _shown_channels(session, sid)
        assert shown, label
        for cat, c in zip(col.categories, col.colors, strict=True):
            for lyr in shown:
                if lyr.colormap.name == "gray":
                    continue   # the gray colormap is for background channels and CD31 (see palette)
                d = pal.channel_distance(c, _channel_rgb(lyr))
                assert d >= pal.MIN_CHANNEL_DISTANCE, (label, cat, c, lyr.name, lyr.colormap.name, d)
                checked += 1
    assert checked > 100


def test_class_colours_distinct_from_each_other(demo_viewer):
    _, _, legend, _ = demo_viewer
    cols = legend.coloring.colors
    for a, b in itertools.combinations(cols, 2):
        assert pal.color_distance(a, b) >= pal.MIN_CLASS_DISTANCE, (a, b)
        assert pal.cvd_distance(a, b) >= pal.MIN_CVD_DISTANCE, (a, b)


def test_plots_helper_returns_the_legend_colours(demo_viewer):
    session, sid, legend, _ = demo_viewer
    col = legend.coloring
    m = pal.category_color_map(session.sample(sid).table, col.key)
    assert m == dict(zip(col.categories, col.colors, strict=True))
