"""File > Open of real files as a user has the viewer (our docks open), issue 12 GUI.

* a raw ``.mcd`` with the Samples dock open: the view is fitted to every acquisition once all
  layers are in (napari fits the first layer while the others arrive: ROI_002 was cut off);
* a steinbock folder with the Legend open: the montage's cells stay outlines over the stains
  (the montage's ``acquisition`` column is not taken for a cell type and filled);
* TIFF / OME-TIFF: cytomapper's IMC TIFF (channel names from its ``panel.csv``) and Xenium's
  morphology OME-TIFF, pixels equal to tifffile's; cytomapper's image + mask opened in the
  Samples dock is measured to the cells of the source's own table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_carspatial._napari import META_ROLE, session_for, visible_world_rect

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


def _real(sub):
    p = REAL / sub
    if not p.exists():
        pytest.skip(f"real data {p} is absent")
    return p


def _images(viewer):
    return [ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "image"]


def _labels(viewer):
    return [ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "labels"]


def _samples_dock(viewer, qtbot):
    from napari_carspatial.widgets.sample_widget import SampleWidget

    w = SampleWidget(viewer)
    qtbot.addWidget(w)
    viewer.window.add_dock_widget(w, name="Samples", area="right")
    return w


def test_mcd_with_samples_dock_shows_every_acquisition(make_napari_viewer_proxy, qtbot):
    pytest.importorskip("readimc")
    mcd = _real("imc_raw_mcd") / "20210305_NE_mockData2" / "20210305_NE_mockData2.mcd"
    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 1000)
    dock = _samples_dock(viewer, qtbot)
    qtbot.wait(300)                                      # the window laid out, as a user has it
    viewer.open(str(mcd), plugin="napari-carspatial")
    tiles = next(ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "tiles")
    corners = np.concatenate([np.asarray(r) for r in tiles.data])   # name bands included

    def fitted():
        y0, x0, y1, x1 = visible_world_rect(viewer)
        return (corners[:, 0].min() >= y0 - 1e-6 and corners[:, 0].max() <= y1 + 1e-6
                and corners[:, 1].min() >= x0 - 1e-6 and corners[:, 1].max() <= x1 + 1e-6)

    qtbot.waitUntil(fitted, timeout=20_000)
    assert list(tiles.features["acquisition"]) == ["ROI_001", "ROI_002", "ROI_003"]
    names = [dock.tree.topLevelItem(i).text(0) for i in range(dock.tree.topLevelItemCount())]
    assert [n.rsplit("_", 1)[1] for n in names] == ["001", "002", "003"]   # the acquisitions' ids
    top = dock.tree.topLevelItem(0)
    rows = {top.child(i).text(0): top.child(i).text(1) for i in range(top.childCount())}
    assert rows["cells"] == "no mask"                    # a raw acquisition has no segmentation
    assert not dock.jobs.running and not dock.jobs.queue


def test_steinbock_with_legend_keeps_outlines(make_napari_viewer_proxy, qtbot):
    from napari_carspatial._napari import guess_type_key
    from napari_carspatial.widgets.legend import LegendWidget

    viewer = make_napari_viewer_proxy()
    legend = LegendWidget(viewer)
    qtbot.addWidget(legend)
    viewer.open(str(_real("steinbock_imc_testdata")), plugin="napari-carspatial")
    (lab,) = _labels(viewer)
    sample = session_for(viewer).sample_of(lab)
    assert sample.n_cells == 404 and "acquisition" in sample.table.obs
    assert guess_type_key(sample.table) is None       # the tile column is no cell type
    assert legend.coloring is not None and legend.coloring.key is None
    assert lab.contour == 1 and lab.visible
    assert "acquisition" in lab.features                  # the hover still says which tile a cell is in
    assert set(lab.features["acquisition"]) == set(sample.table.obs["acquisition"].astype(str))
    assert [ly for ly in viewer.layers if ly.__class__.__name__ == "Labels"] == [lab]   # nothing filled on top


def test_file_open_cytomapper_tiff_names_from_panel(make_napari_viewer_proxy):
    root = _real("cytomapper_pancreas_imc")
    path = root / "images" / "E34_imc.tiff"
    viewer = make_napari_viewer_proxy()
    viewer.open(str(path), plugin="napari-carspatial")
    imgs = _images(viewer)
    panel = pd.read_csv(root / "panel.csv").sort_values("channel_index_0based")
    assert [ly.name for ly in imgs] == list(panel["name"])          # H3, CD99, PIN, CD8a, CDH
    ref = tifffile.imread(path)
    for i, ly in enumerate(imgs):
        np.testing.assert_array_equal(np.asarray(ly.data), ref[i])
    assert [ly.name for ly in imgs if ly.visible][0] == "H3"          # the nuclear channel is shown
    for ly in imgs:
        lo, hi = ly.contrast_limits
        assert hi > lo >= 0 and np.allclose(ly.colormap.map(np.array([0.0]))[0][:3], 0.0)


def test_file_open_xenium_ome_tiff(make_napari_viewer_proxy):
    path = _real("xenium_crop") / "morphology_focus.ome.tif"
    viewer = make_napari_viewer_proxy()
    viewer.open(str(path), plugin="napari-carspatial")
    (img,) = _images(viewer)
    ref = tifffile.imread(path)
    np.testing.assert_array_equal(np.asarray(img.data if not img.multiscale else img.data[0]), ref)
    assert img.visible and img.contrast_limits[1] > img.contrast_limits[0]


def test_cytomapper_image_and_mask_in_the_samples_dock(make_napari_viewer_proxy, qtbot, tmp_path):
    root = _real("cytomapper_pancreas_imc")
    viewer = make_napari_viewer_proxy()
    dock = _samples_dock(viewer, qtbot)
    dock.image_path.edit.setText(str(root / "images" / "E34_imc.tiff"))
    dock.mask_path.edit.setText(str(root / "masks" / "E34_mask.tiff"))
    with qtbot.waitSignal(dock.jobs.measured, timeout=30000):
        dock.open_button.click()
    (lab,) = _labels(viewer)
    sample = session_for(viewer).sample_of(lab)
    mask = tifffile.imread(root / "masks" / "E34_mask.tiff")
    ids = np.unique(mask[mask > 0])
    cells = pd.read_csv(root / "cells.csv")
    assert sample.n_cells == len(ids) == int((cells["ImageName"] == "E34_imc.tiff").sum())
    assert lab.contour == 1
