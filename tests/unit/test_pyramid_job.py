"""Building a flat slide's pyramid cache for an open sample, with progress and cancel
(``io.pyramid_job.PyramidJob`` over perf's ``io.pyramid_cache``): the cached levels equal the
strided levels they replace, the next read uses them, a cancelled build leaves nothing."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile

from napari_carspatial.io import pyramid_cache as pc
from napari_carspatial.io import read_sample
from napari_carspatial.io.pyramid_job import (
    CACHED,
    FLAT,
    PyramidCancelled,
    PyramidJob,
    pyramid_state,
)
from napari_carspatial.model import SampleError


@pytest.fixture()
def flat(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    img = rng.integers(0, 60000, (2, 4500, 2100), dtype=np.uint16)
    path = tmp_path / "flat.ome.tif"
    tifffile.imwrite(path, img, ome=True, tile=(256, 256), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "CD3"]}})
    return path, img


def test_job_builds_stores_and_next_read_uses_the_cache(flat):
    path, img = flat
    s = read_sample(path)
    assert pyramid_state(s) == FLAT and len(s.image) == 3          # strided, lazy
    strided = [np.asarray(lv) for lv in s.image]
    job = PyramidJob(s)
    seen = []
    levels = None

    def run():
        nonlocal levels
        levels = job.run()

    th = threading.Thread(target=run)
    th.start()
    while th.is_alive():
        seen.append(job.progress)
        th.join(0.005)
    assert job.stage == "done" and job.progress == 1.0 and len(levels) == 4
    assert levels[0] is s.image[0]                                 # level 0 stays the file's
    for k in range(1, 4):
        np.testing.assert_array_equal(np.asarray(levels[k]), img[:, :: 2 ** k, :: 2 ** k])
        if k < 3:
            np.testing.assert_array_equal(np.asarray(levels[k]), strided[k])
    assert len(s.image) == 3                                       # run() does not touch the sample
    job.store()
    assert len(s.image) == 4 and "from-zarr" in s.image[3].name
    assert pyramid_state(s) == CACHED
    again = read_sample(path)                                       # the next open reads the cache
    assert len(again.image) == 4 and "from-zarr" in again.image[1].name
    assert pyramid_state(again) == CACHED
    assert "4-level pyramid" in job.message()


def test_cancel_leaves_no_entry(flat):
    path, _ = flat
    s = read_sample(path)
    job = PyramidJob(s)
    job.cancel()
    with pytest.raises(PyramidCancelled):
        job.run()
    # cancelled after the first band
    job = PyramidJob(s)
    import napari_carspatial.io.pyramid_cache as mod

    real = mod.iter_build_pyramid_cache

    def one_band_then_cancel(*a, **k):
        for i, f in enumerate(real(*a, **k)):
            if i == 0:
                job.cancel()
            yield f

    mod.iter_build_pyramid_cache = one_band_then_cancel
    try:
        with pytest.raises(PyramidCancelled):
            job.run()
    finally:
        mod.iter_build_pyramid_cache = real
    assert job.stage == "cancelled" and 0 < job.progress < 1
    assert not pc.cache_path(path, s.image[0]).exists() and not list(pc.cache_root().glob(".*.tmp"))
    assert pyramid_state(s) == FLAT and len(s.image) == 3
    with pytest.raises(RuntimeError):
        job.store()


def test_only_flat_tiffs_get_a_job(tmp_path, flat):
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((2, 300, 300), np.uint16))
    s = read_sample(small)
    assert pyramid_state(s) is None
    with pytest.raises(SampleError, match="no pyramid cache needed"):
        PyramidJob(s)
    pyr = tmp_path / "pyr.ome.tif"
    data = np.zeros((1, 4096, 4096), np.uint16)
    with tifffile.TiffWriter(pyr, ome=True) as tw:
        tw.write(data, subifds=2, tile=(256, 256), metadata={"axes": "CYX"})
        tw.write(data[:, ::2, ::2], subfiletype=1, tile=(256, 256))
        tw.write(data[:, ::4, ::4], subfiletype=1, tile=(256, 256))
    assert pyramid_state(read_sample(pyr)) is None                 # the file has its own pyramid
    assert pyramid_state(None) is None
