"""Opening fast (issue 14, first frame at 10^6 cells): the full table-vs-mask id check of a large
mask runs after the layers are in, and says exactly what ``Sample.validate`` says.

* :func:`table_id_problem` gives ``Sample.validate``'s words for the same mismatch;
* :class:`IdCheckJob`: ``quick()`` (the smallest level's ids) refuses a wrong table at once,
  ``run()`` reads every pixel and names a mismatch the smallest level cannot see;
* the npe2 reader with a background runner installed (what any of our docks does) hands the
  job over with the sample id its layers carry, without one it checks while reading;
* ``read_spatialdata`` gives the sample the table it read (no copy of a 10^6-row table).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_carspatial.datasets import demo_sample
from napari_carspatial.io import measure_job as mj
from napari_carspatial.model import Sample, SampleError, set_table_link


def _sample(lab: np.ndarray, ids, *, chunks=16) -> Sample:
    import anndata as ad
    import pandas as pd

    ids = np.asarray(ids, dtype=np.int64)
    t = ad.AnnData(obs=pd.DataFrame({"cell_id": ids}, index=[str(i) for i in ids]))
    t.obsm["spatial"] = np.zeros((len(ids), 2))
    set_table_link(t, region="s_labels", instance_key="cell_id")
    d = da.from_array(lab, chunks=chunks)
    return Sample(name="s", labels=[d, d[::2, ::2], d[::4, ::4]], table=t)


def _mask() -> np.ndarray:
    lab = np.zeros((64, 64), np.uint32)
    lab[2:6, 2:6] = 3
    lab[20:30, 20:30] = 7
    lab[40:44, 50:54] = 11
    lab[61, 61] = 12          # one pixel: gone in the smaller levels
    return lab


def test_problem_text_is_validates():
    s = _sample(_mask(), [3, 7, 11, 12, 99])
    with pytest.raises(SampleError) as err:
        s.validate(check_ids=True)
    problem = mj.table_id_problem(s, np.array([3, 7, 11, 12]))
    assert problem is not None and problem.split(" [mask")[0] in str(err.value)
    assert "1 of 5 table ids are not in the mask (e.g. [99])" in problem
    assert mj.table_id_problem(_sample(_mask(), [3, 7, 11, 12]), np.array([3, 7, 11, 12])) is None


def test_job_quick_refuses_a_wrong_table_and_run_finds_the_rest():
    ok = mj.IdCheckJob(_sample(_mask(), [3, 7, 11, 12]))
    ok.quick()
    assert ok.run() is None and ok.stage == "done" and ok.progress == 1.0
    wrong = mj.IdCheckJob(_sample(_mask(), [1, 2, 3]))       # 7 and 11 show in the smallest level
    with pytest.raises(SampleError, match="smallest pyramid level have no table row"):
        wrong.quick()
    hidden = mj.IdCheckJob(_sample(_mask(), [3, 7, 11]))     # 12 is one pixel: only level 0 has it
    hidden.quick()
    assert "1 of 4 mask ids have no table row (e.g. [12])" in hidden.run()


def test_job_keeps_the_ids_it_was_made_with():
    s = _sample(_mask(), [3, 7, 11, 12])
    job = mj.IdCheckJob(s)
    s.table = s.table[:2].copy()      # an edit after the job was made does not race with the worker
    assert job.run() is None


def test_defer_only_large_lazy_masks(monkeypatch):
    s = _sample(_mask(), [3, 7, 11, 12])
    assert not mj.defer_id_check(s)                # 64 x 64 px: checked while reading
    monkeypatch.setattr(mj, "DEFER_ID_CHECK_PIXELS", 100)
    assert mj.defer_id_check(s)
    s.labels = [np.asarray(lv) for lv in s.labels]   # in memory: nothing slow to read
    assert not mj.defer_id_check(s)


@pytest.fixture
def store(tmp_path):
    from napari_carspatial.io import export_spatialdata

    s = demo_sample(n_cells=300, image=False, seed=1)
    return export_spatialdata(s, tmp_path / "small.sdata.zarr")


def test_reader_hands_the_check_to_the_runner(store, monkeypatch, tmp_path):
    from napari_carspatial._napari import reader

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mj, "DEFER_ID_CHECK_PIXELS", 0)
    got = []
    monkeypatch.setattr(reader, "_background", lambda sid, job: got.append((sid, job)))
    layers = reader.read_path(str(store))
    labels = [ly for ly in layers if not isinstance(ly, tuple)]
    assert len(got) == 1 and len(labels) == 1
    sid, job = got[0]
    assert labels[0].metadata["carspatial_sample"] == sid
    assert job.n_layers == 1         # the runner waits for this many layers of the sample (the mask)
    assert job.sample.n_cells == int(job.table_ids.size) and job.run() is None


def test_reader_without_runner_checks_while_reading(store, monkeypatch, tmp_path):
    from napari_carspatial._napari import reader

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mj, "DEFER_ID_CHECK_PIXELS", 0)
    monkeypatch.setattr(reader, "_background", None)
    called = []
    monkeypatch.setattr(mj, "check_table_ids", lambda s: called.append(s.name))
    out = reader.read_path(str(store))
    assert out and not (isinstance(out[0], tuple) and out[0][0] is None)     # not napari's null layer
    assert len(called) == 1


def test_read_spatialdata_keeps_the_table_it_read(store, monkeypatch):
    import spatialdata

    from napari_carspatial.io import read_spatialdata

    seen = {}
    real = spatialdata.read_zarr

    def spy(path, *a, **k):
        sd = real(path, *a, **k)
        seen["table"] = next(iter(sd.tables.values()))
        return sd

    monkeypatch.setattr(spatialdata, "read_zarr", spy)
    (s,) = read_spatialdata(store)
    assert s.table is seen["table"] and s.n_cells > 250


def test_job_cancelled_stops_at_the_next_block():
    s = _sample(_mask(), [3, 7, 11, 12], chunks=8)          # 64 blocks
    job = mj.IdCheckJob(s)
    seen = []
    orig = job._progress

    def first_block_then_cancel(done, total):
        seen.append(done)
        job.cancel()            # the sample left the viewer while its check ran
        orig(done, total)

    job._progress = first_block_then_cancel
    with pytest.raises(mj.MeasureCancelled):
        job.run()
    assert job.stage == "cancelled" and job.problem is None and len(seen) < 64
    again = mj.IdCheckJob(s)
    again.cancel()
    with pytest.raises(mj.MeasureCancelled):
        again.run()
