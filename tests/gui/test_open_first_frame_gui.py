"""Opening as a reviewer sees it (issue 14, engineer "open"), 1600 x 1000 under Xvfb:

* a large mask's full id check runs after the first frame, in a thread worker (napari's activity
  indicator): the ids agree -> ``metadata["id_check"] == "ok"``; a table that is not this mask's
  -> an error notification naming the counts;
* a raw ``.mcd`` (no mask to style) shows the scale bar in µm at once, without any of our docks;
* the montage's tile names are readable at the default zoom: each name band is at least a
  10-pt line on screen;
* a cytomapper single TIFF (File > Open) comes with its cells: the mask from ``../masks``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_carspatial._napari import META_ROLE, session_for
from napari_carspatial._napari.inspect import camera

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


def _real(sub):
    p = REAL / sub
    if not p.exists():
        pytest.skip(f"real data {p} is absent")
    return p


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A store whose table and mask agree, one with a table row the mask has no cell for (only the
    full check sees it), one with 3 mask cells without rows (the smallest level shows them)."""
    import anndata as ad
    import spatialdata

    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.io import export_spatialdata

    d = tmp_path_factory.mktemp("stores")
    good = export_spatialdata(demo_sample(n_cells=300, image=False, seed=2), d / "good.sdata.zarr")
    out = {"good": good}
    for kind in ("extra", "dropped"):
        sd = spatialdata.read_zarr(good)
        name = next(iter(sd.tables))
        t = sd.tables[name]
        if kind == "dropped":
            t2 = t[t.obs.index[:-3]].copy()
        else:
            key = t.uns["spatialdata_attrs"]["instance_key"]
            row = t[-1:].copy()
            row.obs_names = ["ghost"]
            row.obs[key] = 999_999
            t2 = ad.concat([t, row], merge="first", uns_merge="first")
            t2.uns = t.uns
        del sd.tables[name]
        sd.tables[name] = t2
        sd.write(d / f"{kind}.sdata.zarr")
        out[kind] = d / f"{kind}.sdata.zarr"
    return out


def _open_with_legend(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path):
    from napari_carspatial.io import measure_job as mj

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mj, "DEFER_ID_CHECK_PIXELS", 0)      # this small mask takes the large masks' path
    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 1000)
    viewer.window.add_plugin_dock_widget("napari-carspatial", "Legend")
    return viewer


def _wait_check(qtbot, sample):
    qtbot.waitUntil(lambda: "id_check" in sample.metadata, timeout=20000)
    return sample.metadata["id_check"]


def test_id_check_after_the_first_frame(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path, stores):
    from napari_carspatial._napari import background_runner

    good = stores["good"]
    viewer = _open_with_legend(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path)
    assert background_runner() is not None       # a dock installed it
    viewer.open(str(good), plugin="napari-carspatial")
    session = session_for(viewer)
    (sid,) = session.samples()
    sample = session.sample(sid)
    assert "id_check" not in sample.metadata      # the layers are in before the full check ran
    assert _wait_check(qtbot, sample) == "ok"
    assert session.busy(sid) is None              # nothing writes the table: edits never waited


def test_a_wrong_table_is_an_error_naming_the_counts(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path, stores):
    from napari_carspatial.widgets import progressive

    said = []
    monkeypatch.setattr(progressive, "notify", lambda msg, level="info": said.append((level, msg)))
    viewer = _open_with_legend(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path)
    viewer.open(str(stores["extra"]), plugin="napari-carspatial")
    session = session_for(viewer)
    (sid,) = session.samples()
    problem = _wait_check(qtbot, session.sample(sid))
    assert problem.startswith("1 of ") and "table ids are not in the mask (e.g. [999999])" in problem
    assert [lvl for lvl, msg in said if problem in msg] == ["error"]


def test_cells_without_rows_are_refused_at_once(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path, stores):
    from napari_carspatial._napari import reader

    said = []
    monkeypatch.setattr(reader, "notify", lambda msg, level="info": said.append((level, msg)))
    viewer = _open_with_legend(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path)
    viewer.open(str(stores["dropped"]), plugin="napari-carspatial")
    assert not session_for(viewer).samples() and not [ly for ly in viewer.layers if ly.metadata.get(META_ROLE)]
    assert [lvl for lvl, msg in said if "3 of " in msg and "have no table row" in msg] == ["error"]


def test_mcd_scale_bar_in_um_without_docks(make_napari_viewer_proxy):
    pytest.importorskip("readimc")
    mcd = _real("imc_raw_mcd") / "20210305_NE_mockData3" / "20210305_NE_mockData3.mcd"
    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 1000)
    viewer.open(str(mcd), plugin="napari-carspatial")
    assert not [ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "labels"]    # no mask to style
    assert viewer.canvas.overlays.scale_bar.visible
    images = [ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "image"]
    assert images and all(str(u) == "micrometer" for ly in images for u in ly.units)


def test_montage_names_readable_at_the_default_zoom(make_napari_viewer_proxy, qtbot):
    folder = _real("steinbock_imc_testdata")
    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 1000)
    qtbot.wait(200)
    viewer.open(str(folder), plugin="napari-carspatial")
    viewer.reset_view()
    tiles = next(ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "tiles")
    band_world = 2 * tiles.text.translation[0]
    band_px = band_world * tiles.scale[0] * camera(viewer).zoom
    # a 10-pt name is ~14 px high: its band holds it with a margin, at the zoom the user gets
    assert tiles.text.size == 10 and band_px >= 18, band_px


def test_cytomapper_tiff_opens_with_its_mask(make_napari_viewer_proxy):
    import tifffile

    folder = _real("cytomapper_pancreas_imc")
    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.add_plugin_dock_widget("napari-carspatial", "Legend")
    viewer.open(str(folder / "images" / "G01_imc.tiff"), plugin="napari-carspatial")
    (labels,) = [ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "labels"]
    mask = tifffile.imread(folder / "masks" / "G01_mask.tiff")
    np.testing.assert_array_equal(np.asarray(labels.data[0] if labels.multiscale else labels.data), mask)
    session = session_for(viewer)
    (sid,) = session.samples()
    s = session.sample(sid)
    assert s.n_cells == 122 and "CellType" in s.table.obs


def test_no_check_for_a_sample_closed_before_it_began(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path, stores):
    from napari_carspatial.io import measure_job as mj

    started = []
    real_run = mj.IdCheckJob.run
    monkeypatch.setattr(mj.IdCheckJob, "run", lambda self: started.append(1) or real_run(self))
    viewer = _open_with_legend(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path)
    viewer.open(str(stores["good"]), plugin="napari-carspatial")
    qtbot.waitUntil(lambda: bool(session_for(viewer).samples()), timeout=20_000)
    qtbot.wait(100)
    viewer.layers.clear()           # closed within the first-frame wait
    qtbot.wait(1500)
    assert not started
