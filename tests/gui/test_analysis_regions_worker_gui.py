"""The Analysis dock on real IMC data with regions drawn as a user draws them (Shapes layers): the
cells of the regions are found in the run's worker, not on the GUI thread (a polygon over a
million cells takes ~1 s); a region drawn over background is left out with a notice; listing the
regions computes no cell mask."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from napari_carspatial._napari.layers import add_sample_layers

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "cytomapper_pancreas_imc"


@pytest.fixture
def cytomapper():
    if not REAL.is_dir():
        pytest.skip("shared real data not here")
    from napari_carspatial.io import read_sample

    return read_sample(REAL / "images" / "G01_imc.tiff", mask=REAL / "masks" / "G01_mask.tiff",
                       table=REAL / "cells.csv")


def test_region_cells_found_in_the_worker(make_napari_viewer_proxy, qtbot, cytomapper, monkeypatch):
    from napari_carspatial.analysis import regions as regions_mod
    from napari_carspatial.widgets.analysis import AnalysisWidget
    from napari_carspatial.widgets.analysis import dock as dock_mod
    from napari_carspatial.widgets.analysis import setup as setup_mod

    viewer = make_napari_viewer_proxy()
    add_sample_layers(viewer, cytomapper)
    w = AnalysisWidget(viewer)
    scale, translate, units = w.session.geometry(w.sample_id)
    H, W = cytomapper.shape_yx
    viewer.add_shapes([np.array([[0, 0], [0, W * 0.85], [H * 0.85, 0]], float)], shape_type="polygon",
                      name="upper left", scale=scale, translate=translate)
    viewer.add_shapes([np.array([[0, W - 1], [0, W - 3], [2, W - 1]], float)], shape_type="polygon",
                      name="empty corner", scale=scale, translate=translate)
    # listing the regions reads no cell positions
    calls = []
    real_cip = setup_mod.cells_in_polygon
    monkeypatch.setattr(setup_mod, "cells_in_polygon", lambda *a, **k: calls.append(1) or real_cip(*a, **k))
    w.setup.refresh_regions()
    assert calls == []
    w.setup.set_checked_regions(["Shapes: upper left", "Shapes: empty corner"])
    threads = []
    real_build = dock_mod.build_regions
    monkeypatch.setattr(dock_mod, "build_regions",
                        lambda *a, **k: threads.append(threading.current_thread()) or real_build(*a, **k))
    w.setup.px_override.setChecked(True)
    w.setup.px_spin.setValue(1.0)
    w.run("nearest")
    qtbot.waitUntil(lambda: w._worker is None and w.current is not None, timeout=60_000)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert w.current.regions == ["upper left"]                       # the empty corner left out
    xy = np.asarray(cytomapper.table.obsm["spatial"], float)
    want = regions_mod.cells_in_polygon(cytomapper.table, np.array([[0, 0], [0, W * 0.85], [H * 0.85, 0]], float))
    assert np.array_equal(w.run_masks["nearest"]["upper left"], want) and 0 < want.sum() < len(xy)
    # the headless twin gives the same masks
    assert np.array_equal(w.run_kwargs("nearest")["regions"]["upper left"], want)
