"""The fast mask-id pass (presence bitmap) against numpy.unique / label_stats, its cache keyed by
file identity, and the identity itself (files, zarr folders changed inside, SpatialData paths)."""

from __future__ import annotations

import os
import time

import dask.array as da
import numpy as np
import pytest

from napari_carspatial.model import SampleError, label_stats
from napari_carspatial.model import mask_ids as mi
from napari_carspatial.model.file_identity import file_identity, resolve_source


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _mask(seed=0, shape=(300, 257), n=400, dtype=np.uint32, hi=10_000):
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, hi), size=n, replace=False).astype(dtype)
    lab = ids[rng.integers(0, n, size=shape)]
    lab[rng.random(shape) < 0.3] = 0
    return lab


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int32, np.uint64])
def test_scan_ids_equals_unique(dtype):
    lab = _mask(dtype=dtype)
    want = np.unique(lab)
    want = want[want != 0].astype(np.int64)
    assert np.array_equal(mi.scan_ids(lab), want)
    assert np.array_equal(mi.scan_ids(da.from_array(lab, chunks=(64, 100))), want)
    assert np.array_equal(mi.scan_ids(da.from_array(lab, chunks=(64, 100))), label_stats(da.from_array(lab, chunks=64))["id"].to_numpy())


def test_scan_ids_negative_and_huge_ids_are_reported_like_label_stats():
    lab = np.array([[0, -3, 5], [7, 7, 0]], np.int32)
    assert mi.scan_ids(lab).tolist() == [-3, 5, 7]
    huge = np.array([[0, 2**63 + 5, 4]], np.uint64)
    got = mi.scan_ids(huge)
    assert got[0] < 0 and got[-1] == 4   # wraps to negative: the sample check refuses it
    big = np.array([[0, mi.BITMAP_MAX_ID + 10, 3]], np.uint32)
    assert mi.scan_ids(big).tolist() == [3, mi.BITMAP_MAX_ID + 10]


def test_scan_ids_progress_counts_blocks():
    seen = []
    mi.scan_ids(da.from_array(_mask(), chunks=(100, 100)), progress=lambda d, n: seen.append((d, n)))
    assert len(seen) == 9 and max(d for d, _ in seen) == 9 and {n for _, n in seen} == {9}


def _tiff(path, lab):
    import tifffile

    tifffile.imwrite(path, lab, tile=(64, 64))
    return path


def test_mask_ids_cached_by_file_identity(tmp_path, cache, monkeypatch):
    from napari_carspatial.io.masks import read_mask

    lab = _mask()
    p = _tiff(tmp_path / "m.tif", lab)
    calls = []
    real = mi.scan_ids
    monkeypatch.setattr(mi, "scan_ids", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = mi.mask_ids(read_mask(p)[0], source=p)
    again = mi.mask_ids(read_mask(p)[0], source=p)
    assert np.array_equal(first, again) and len(calls) == 1
    # the file changes (same size, new content and mtime): read again, never the old entry
    lab2 = lab.copy()
    lab2[lab2 == lab2.max()] = 1
    time.sleep(0.01)
    _tiff(p, lab2)
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = mi.mask_ids(read_mask(p)[0], source=p)
    assert len(calls) == 2
    want = np.unique(lab2)
    assert np.array_equal(third, want[want != 0])
    # a numpy mask (edited in memory) never uses the file's entry
    mi.mask_ids(lab2, source=p)
    assert len(calls) == 3


def test_folder_identity_follows_content_not_the_folder(tmp_path):
    z = tmp_path / "store.zarr" / "labels" / "cells"
    (z / "0").mkdir(parents=True)
    chunk = z / "0" / "c0"
    chunk.write_bytes(b"abcd")
    a = file_identity(z)
    st = os.stat(z)
    # rewrite a chunk in place: the folder's own mtime and the total size stay the same
    chunk.write_bytes(b"wxyz")
    os.utime(chunk, ns=(st.st_mtime_ns + 5 * 10**9, st.st_mtime_ns + 5 * 10**9))
    os.utime(z, ns=(st.st_atime_ns, st.st_mtime_ns))
    b = file_identity(z)
    assert a[:4] == b[:4] and a[4] != b[4]
    assert resolve_source(f"{tmp_path / 'store.zarr'}::labels/cells") == z
    assert file_identity(f"{tmp_path / 'store.zarr'}::labels/cells") == b
    assert file_identity(tmp_path / "missing") is None


def test_sample_validate_uses_the_fast_check_and_names_mismatches(tmp_path, cache):
    import anndata as ad
    import pandas as pd

    from napari_carspatial.io.masks import read_mask
    from napari_carspatial.model import Sample, set_table_link

    lab = _mask()
    p = _tiff(tmp_path / "m.tif", lab)
    ids = np.unique(lab)[1:].astype(np.int64)
    t = ad.AnnData(obs=pd.DataFrame({"cell_id": ids}, index=ids.astype(str)))
    t.obsm["spatial"] = np.zeros((ids.size, 2))
    set_table_link(t, region="r")
    Sample("s", labels=read_mask(p), table=t, paths={"mask": os.fspath(p)}).validate()
    t2 = t[1:].copy()
    with pytest.raises(SampleError, match="1 of 400 mask ids have no table row"):
        Sample("s", labels=read_mask(p), table=t2, paths={"mask": os.fspath(p)}).validate()
