"""The headless "Measure cells" action with progress and cancel (``io.measure_job.MeasureJob``).

Checked against ``io.measure.measure_cells`` (the same quantify call without the job), against
steinbock's own per-cell intensities on a real acquisition, and, for a montage of steinbock's 15
acquisitions, against tiling the acquisitions' own measured tables with ``model.montage.montage``.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.io import read_sample
from napari_carspatial.io.measure import MEASURED, measure_cells
from napari_carspatial.io.measure_job import MeasureCancelled, MeasureJob, needs_measuring
from napari_carspatial.model import Sample, SampleError, instance_ids

NAME = "20210305_NE_mockData2_001"


def _blobs(h, w, *, n_channels=3, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint32)
    k = 0
    for y in range(5, h - 12, 16):
        for x in range(5, w - 12, 16):
            k += 1
            lab[y:y + 9, x:x + 9] = k
    img = rng.integers(0, 500, (n_channels, h, w)).astype(np.uint16)
    return Sample("blobs", image=[img], channel_names=[f"M{i}" for i in range(n_channels)], labels=[lab]).validate()


def test_job_equals_measure_cells_and_steinbock(steinbock_dir):
    s = read_sample(steinbock_dir / "img" / f"{NAME}.tiff", mask=steinbock_dir / "masks_deepcell" / f"{NAME}.tiff",
                    measure=False)
    assert s.table is None and needs_measuring(s)
    job = MeasureJob(s)
    t = job.run()
    assert s.table is None                          # run() does not touch the sample
    assert job.stage == "done" and job.progress == 1.0
    ref = measure_cells(s)
    np.testing.assert_array_equal(t.X, ref.X)
    pd.testing.assert_frame_equal(t.obs, ref.obs)
    np.testing.assert_array_equal(t.obsm["spatial"], ref.obsm["spatial"])
    # and steinbock's own table of this acquisition
    st = pd.read_csv(steinbock_dir / "intensities_deepcell" / f"{NAME}.csv").set_index("Object")
    assert sorted(instance_ids(t).tolist()) == sorted(st.index.tolist())
    ours = pd.DataFrame(t.X, index=instance_ids(t), columns=t.var_names).loc[st.index]
    np.testing.assert_allclose(ours[list(st.columns)].to_numpy(), st.to_numpy(), rtol=1e-5)
    job.store()
    assert s.table is t and s.metadata["table_source"] == MEASURED and not needs_measuring(s)
    assert "measured 55 cells" in job.message().lower()


def test_progress_counts_tiles_and_numpy_input_is_tiled():
    s = _blobs(2048, 3072)
    job = MeasureJob(s)
    assert job.n_tiles == 6
    seen = []
    own_post = job._posttask          # the job's callbacks go to its own scheduler calls

    def post(*args):
        own_post(*args)
        seen.append(job.progress)

    job._posttask = post
    t = job.run()
    assert job._done == 6
    assert max(seen) >= 5 / 6 - 1e-9 and min(seen) < 0.5     # it moved tile by tile
    ref = measure_cells(s)                                    # numpy in: one block, no tiles
    np.testing.assert_allclose(t.X, ref.X, rtol=1e-6)
    np.testing.assert_array_equal(t.obs["cell_id"].to_numpy(), ref.obs["cell_id"].to_numpy())
    np.testing.assert_allclose(t.obsm["spatial"], ref.obsm["spatial"])


def test_cancel_stops_before_the_remaining_tiles():
    s = _blobs(2048, 3072)
    job = MeasureJob(s)
    own_post = job._posttask

    def post(key, *args):
        own_post(key, *args)
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith("measure-"):
            job.cancel()                        # the user presses Cancel after the first tile

    job._posttask = post
    with pytest.raises(MeasureCancelled):
        job.run()
    assert job.stage == "cancelled" and job._done < job.n_tiles
    assert s.table is None
    with pytest.raises(RuntimeError):
        job.store()
    assert "cancelled" in job.message()


def test_cancel_leaves_other_dask_work_alone():
    """Only this job's graphs are counted and stopped: a dask computation running in another
    thread at the same time (napari slicing a dask image, say) still finishes, uncounted."""
    import time

    import dask.array as da

    s = _blobs(2048, 3072)
    job = MeasureJob(s)
    other = {}
    started = threading.Event()

    def slow(block):
        started.set()
        time.sleep(0.02)
        return block

    def compute_elsewhere():
        arr = da.ones((2000, 2000), chunks=250).map_blocks(slow)
        other["sum"] = int(arr.sum().compute(scheduler="threads"))

    def cancel_after_first_tile():
        while job._done < 1 and job.stage not in ("done", "failed"):
            time.sleep(0.0005)
        job.cancel()

    th = threading.Thread(target=compute_elsewhere)
    th.start()
    started.wait(10)
    # the job's callbacks go to its own scheduler calls: the other thread's computation (which
    # swaps dask's global callback registry while it runs) can drop neither progress nor cancel
    canceller = threading.Thread(target=cancel_after_first_tile)
    canceller.start()
    with pytest.raises(MeasureCancelled):
        job.run()
    canceller.join()
    th.join()
    assert other["sum"] == 4_000_000
    assert 1 <= job._done < job.n_tiles


def test_montage_job_equals_tiled_tables_of_each_acquisition(steinbock_dir):
    from napari_carspatial.io.measure import store_measured_table
    from napari_carspatial.model.montage import can_montage, montage

    samples = read_sample(steinbock_dir)
    for s in samples:
        s.table = None
    assert can_montage(samples)
    m = montage(samples)
    assert needs_measuring(m)
    t = MeasureJob(m).run()
    assert t.n_obs == 404                              # steinbock's deepcell cells
    for s in samples:
        store_measured_table(s)
    ref = montage(samples).table
    assert list(t.obs_names) == list(ref.obs_names)
    for col in ("cell_id", "source_cell_id", "area", "acquisition"):
        assert (t.obs[col].to_numpy() == ref.obs[col].to_numpy()).all(), col
    assert list(t.obs["acquisition"].cat.categories) == list(ref.obs["acquisition"].cat.categories)
    np.testing.assert_allclose(t.X, ref.X, rtol=1e-6)
    np.testing.assert_allclose(t.obsm["spatial"], ref.obsm["spatial"], atol=1e-9)


def test_no_mask_or_no_image_is_one_clear_error():
    s = _blobs(64, 64)
    with pytest.raises(SampleError, match="needs a mask"):
        MeasureJob(Sample("x", image=s.image, channel_names=s.channel_names))
    with pytest.raises(SampleError, match="needs an image"):
        MeasureJob(Sample("x", labels=s.labels))
    assert not needs_measuring(None)
