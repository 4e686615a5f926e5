"""Our cell layers stay above the sample's channels when File > Open adds the channels one by one.

With one of our docks open, the Legend colours the cells by their class as soon as the first
layer of a sample arrives (``sample_added``); napari then appends the sample's remaining channel
layers on top of that class layer, and additive stains tinted the class colours. The session
moves an image layer of a sample inserted above the sample's cell layers below them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_carspatial._napari import META_ROLE, META_SAMPLE

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


def test_file_open_keeps_class_layer_above_channels(make_napari_viewer_proxy, qtbot):
    tiff = REAL / "cytomapper_pancreas_imc" / "images" / "G01_imc.tiff"
    if not tiff.exists():
        pytest.skip(f"real data {tiff} is absent")
    from napari_carspatial.widgets.legend import LegendWidget

    viewer = make_napari_viewer_proxy(show=True)
    legend = LegendWidget(viewer)
    qtbot.addWidget(legend)
    viewer.window.add_dock_widget(legend, name="Legend", area="right")
    viewer.open(str(tiff), plugin="napari-carspatial")
    qtbot.wait(50)

    roles = [ly.metadata.get(META_ROLE) for ly in viewer.layers]   # bottom to top
    sids = {ly.metadata.get(META_SAMPLE) for ly in viewer.layers}
    assert len(sids) == 1 and None not in sids
    n_img = roles.count("image")
    assert n_img == 5                                   # G01: the 5 channels of panel.csv
    assert "cell_colours" in roles, roles               # the Legend coloured the cells by class
    assert roles[:n_img] == ["image"] * n_img, roles    # every channel below every cell layer
    assert roles[-1] == "labels"
    assert {"cell_colours", "labels"} <= set(roles[n_img:])
