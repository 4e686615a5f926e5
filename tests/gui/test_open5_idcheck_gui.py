"""File > Open of a large mask read from a file (issue 14): its full id check runs after the first
frame in a separate process, and a mismatch only the full check can see still gets its one error
line naming the counts (as the in-thread path, ``test_open_first_frame_gui``)."""

from __future__ import annotations

import pytest

from napari_carspatial._napari import session_for


@pytest.fixture
def extra_store(tmp_path):
    """A store with one table row the mask has no cell for (the smallest level cannot show it)."""
    import anndata as ad
    import spatialdata

    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.io import export_spatialdata

    good = export_spatialdata(demo_sample(n_cells=300, image=False, seed=2), tmp_path / "good.sdata.zarr")
    sd = spatialdata.read_zarr(good)
    name = next(iter(sd.tables))
    t = sd.tables[name]
    key = t.uns["spatialdata_attrs"]["instance_key"]
    row = t[-1:].copy()
    row.obs_names = ["ghost"]
    row.obs[key] = 999_999
    t2 = ad.concat([t, row], merge="first", uns_merge="first")
    t2.uns = t.uns
    del sd.tables[name]
    sd.tables[name] = t2
    sd.write(tmp_path / "extra.sdata.zarr")
    return tmp_path / "extra.sdata.zarr"


def test_full_check_in_a_process_reports_the_mismatch(make_napari_viewer_proxy, qtbot, monkeypatch, tmp_path,
                                                      extra_store):
    from napari_carspatial.io import measure_job as mj
    from napari_carspatial.widgets import progressive

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mj, "DEFER_ID_CHECK_PIXELS", 0)      # this small mask takes the large masks' path
    monkeypatch.setattr(mj, "PROCESS_ID_CHECK_PIXELS", 0)
    monkeypatch.setattr(mj, "ID_CHECK_NICE", 0)     # a loaded test machine must not starve the check
    in_process = []
    real = mj.IdCheckJob._scan_in_process
    monkeypatch.setattr(mj.IdCheckJob, "_scan_in_process",
                        lambda self, *a, **k: in_process.append(self.sample.name) or real(self, *a, **k))
    said = []
    monkeypatch.setattr(progressive, "notify", lambda msg, level="info": said.append((level, msg)))
    viewer = make_napari_viewer_proxy(show=True)
    viewer.window.resize(1600, 1000)
    viewer.window.add_plugin_dock_widget("napari-carspatial", "Legend")
    viewer.open(str(extra_store), plugin="napari-carspatial")
    session = session_for(viewer)
    (sid,) = session.samples()
    sample = session.sample(sid)
    qtbot.waitUntil(lambda: "id_check" in sample.metadata, timeout=30000)
    problem = sample.metadata["id_check"]
    assert in_process == [sample.name]
    assert problem.startswith("1 of ") and "table ids are not in the mask (e.g. [999999])" in problem
    assert [lvl for lvl, msg in said if problem in msg] == ["error"]
    assert session.busy(sid) is None
