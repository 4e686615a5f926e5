"""The deferred id check of a large mask read from a file runs in a separate process (issue 14:
in a thread of the GUI's process it slowed every interaction meanwhile).

* the process reads the mask from its file itself and finds what the in-thread path finds (the
  same problem line); its ids are cached by file identity as before (a second check reads no pixels);
* cancel terminates the process and caches nothing;
* a mask held in memory keeps the in-thread path.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_carspatial.io import measure_job as mj
from napari_carspatial.model import Sample, set_table_link


def _mask() -> np.ndarray:
    lab = np.zeros((64, 64), np.uint32)
    lab[2:6, 2:6] = 3
    lab[20:30, 20:30] = 7
    lab[40:44, 50:54] = 11
    lab[61, 61] = 12          # one pixel: only level 0 has it
    return lab


def _table(ids):
    import anndata as ad
    import pandas as pd

    ids = np.asarray(ids, dtype=np.int64)
    t = ad.AnnData(obs=pd.DataFrame({"cell_id": ids}, index=[str(i) for i in ids]))
    set_table_link(t, region="s_labels", instance_key="cell_id")
    return t


@pytest.fixture
def on_disk(tmp_path, monkeypatch):
    """A 64 x 64 mask stored as zarr (16 blocks), read lazily as the readers do."""
    import zarr

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mj, "PROCESS_ID_CHECK_PIXELS", 0)     # this small mask takes the large masks' path
    monkeypatch.setattr(mj, "ID_CHECK_NICE", 0)     # a loaded test machine must not starve the check
    path = tmp_path / "mask.zarr"
    z = zarr.open_array(str(path), mode="w", shape=(64, 64), chunks=(16, 16), dtype=np.uint32)
    z[:] = _mask()

    def sample(ids):
        d = da.from_zarr(str(path))
        s = Sample(name="s", labels=[d, d[::2, ::2], d[::4, ::4]], table=_table(ids))
        s.paths["mask"] = str(path)
        return s

    return sample


def test_process_finds_what_the_thread_finds_and_caches(on_disk, monkeypatch):
    s = on_disk([3, 7, 11])                      # 12 is in the mask, not in the table
    job = mj.IdCheckJob(s)
    assert job.in_process
    job.quick()                                  # 12 is not in the smallest level
    problem = job.run()
    in_memory = Sample(name="s", labels=[_mask()], table=_table([3, 7, 11]))
    expected = mj.table_id_problem(in_memory, np.array([3, 7, 11, 12]))
    assert problem.split(" [mask")[0] == expected.split(" [mask")[0]
    assert "1 of 4 mask ids have no table row (e.g. [12])" in problem
    assert job.stage == "done" and job.progress == 1.0

    # cached by the file's identity: the next check of this mask starts no process
    monkeypatch.setattr(mj.IdCheckJob, "_scan_in_process", lambda *a, **k: pytest.fail("read the pixels again"))
    assert mj.IdCheckJob(on_disk([3, 7, 11, 12])).run() is None


def test_cancel_terminates_the_process_and_caches_nothing(on_disk):
    s = on_disk([3, 7, 11, 12])
    job = mj.IdCheckJob(s)
    procs = []
    orig = job._progress

    def first_block_then_cancel(done, total):
        procs.append(job._proc)
        job.cancel()            # the sample left the viewer while its check ran
        orig(done, total)

    job._progress = first_block_then_cancel
    with pytest.raises(mj.MeasureCancelled):
        job.run()
    assert job.stage == "cancelled" and job.problem is None
    assert procs and procs[0].poll() is not None         # the process is gone
    assert not mj._ids_cached(s)                         # nothing cached: the next open checks again


def test_a_mask_in_memory_stays_in_the_thread(monkeypatch):
    monkeypatch.setattr(mj, "PROCESS_ID_CHECK_PIXELS", 0)
    d = da.from_array(_mask(), chunks=16)
    s = Sample(name="s", labels=[d, d[::2, ::2]], table=_table([3, 7, 11, 12]))
    assert mj.process_source(s) is None                 # no file behind it
    s.paths["mask"] = "/nonexistent/mask.zarr"
    assert mj.process_source(s) is None
    assert mj.IdCheckJob(s).run() is None
