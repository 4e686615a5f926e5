"""The chunked mask store: region write-back, per-region pyramid update, a 20,000 x 20,000 round trip."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_carspatial.io.mask_store import (
    MaskStore,
    corrected_path,
    level_shapes,
    read_provenance,
    save_corrected_mask,
    working_copy_path,
)
from napari_carspatial.model import SampleError

BIG = 20_000
CH = 1024
CELL = 32  # a cell every 32 px: 625 x 625 = 390,625 cells


def _grid_ids(y0, y1, x0, x1):
    yy = np.arange(y0, y1, dtype=np.uint32)[:, None]
    xx = np.arange(x0, x1, dtype=np.uint32)[None, :]
    ids = (yy // CELL) * np.uint32(BIG // CELL + 1) + (xx // CELL) + np.uint32(1)
    ids[((yy % CELL) < 2) | ((xx % CELL) < 2)] = 0
    return ids


@pytest.fixture(scope="module")
def big_mask(tmp_path_factory):
    """A 20,000 x 20,000 uint32 OME-Zarr-like mask written chunk by chunk (1.6 GB uncompressed)."""
    path = tmp_path_factory.mktemp("big") / "slide_mask.zarr"
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    arr = g.create_array("0", shape=(BIG, BIG), chunks=(CH, CH), dtype=np.uint32, fill_value=0)
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{"version": "0.5", "axes": [
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}], "datasets": [{"path": "0"}]}]}
    from concurrent.futures import ThreadPoolExecutor

    def one(yx):
        y0, x0 = yx
        arr[y0:y0 + CH, x0:x0 + CH] = _grid_ids(y0, min(BIG, y0 + CH), x0, min(BIG, x0 + CH))

    with ThreadPoolExecutor(2) as ex:  # chunk by chunk; never the whole mask in memory
        list(ex.map(one, [(y, x) for y in range(0, BIG, CH) for x in range(0, BIG, CH)]))
    return path


def test_big_mask_round_trip(big_mask, tmp_path):
    """Edit a region of a 20k x 20k mask: only that region changes, at every pyramid level."""
    import dask.array as da

    from napari_carspatial.io import read_sample  # noqa: F401 - the reader path is exercised below
    from napari_carspatial.io.masks import read_mask

    before = {p.name: p.stat().st_mtime_ns for p in big_mask.rglob("*") if p.is_file()}
    levels = read_mask(big_mask)
    st = MaskStore.open_working_copy(big_mask, labels=levels[0])
    assert st.path == working_copy_path(big_mask) and st.path.exists()
    assert [tuple(a.shape) for a in st.levels] == level_shapes((BIG, BIG))
    # edit a region that straddles chunk borders
    y0, x0 = 10_200, 9_990
    reg = st.read(y0, y0 + 300, x0, x0 + 300)
    assert np.array_equal(reg, _grid_ids(y0, y0 + 300, x0, x0 + 300))
    new = reg.copy()
    cid = int(reg[40, 40])
    new[new == cid] = 0
    new[100:140, 100:140] = st.reserve_ids(1)[0]
    written = st.write(y0, x0, new)
    assert written[0] == (0, y0, y0 + 300, x0, x0 + 300)
    assert st.edit_count == 1
    # level 0 and every lower level equal the striding of the edited level 0, around the region
    pyr = st.pyramid()
    for k, lvl in enumerate(pyr):
        f = 2 ** k
        a0, a1 = max(0, (y0 - 2048) // f), (y0 + 2348) // f
        b0, b1 = max(0, (x0 - 2048) // f), (x0 + 2348) // f
        got = lvl[a0:a1, b0:b1].compute()
        exp = _grid_ids(a0 * f, a1 * f, b0 * f, b1 * f)[::f, ::f]
        ry, rx = np.arange(a0, a1) * f, np.arange(b0, b1) * f
        inside = ((ry >= y0) & (ry < y0 + 300))[:, None] & ((rx >= x0) & (rx < x0 + 300))[None, :]
        new_s = np.zeros_like(exp)
        iy = np.clip(ry - y0, 0, 299)
        ix = np.clip(rx - x0, 0, 299)
        new_s[:] = new[iy][:, ix]
        exp = np.where(inside, new_s, exp)
        assert np.array_equal(got, exp), f"level {k}"
    # the original is untouched
    after = {p.name: p.stat().st_mtime_ns for p in big_mask.rglob("*") if p.is_file()}
    assert before == after
    # reopen the working copy: the edit is there
    st2 = MaskStore.open_working_copy(big_mask, resume=True)
    assert np.array_equal(st2.read(y0, y0 + 300, x0, x0 + 300), new)
    assert st2.max_id == st.max_id
    assert isinstance(pyr[0], da.Array)


def test_save_corrected_small(tmp_path):
    import tifffile

    from napari_carspatial.io.masks import read_mask

    lab = _grid_ids(0, 300, 0, 400)
    src = tmp_path / "m.tiff"
    tifffile.imwrite(src, lab)
    st = MaskStore.open_working_copy(src)
    assert working_copy_path(src).exists()
    blk = st.read(0, 50, 0, 50)
    blk[blk == blk[10, 10]] = 0
    st.write(0, 0, blk)
    out = save_corrected_mask(st, note="test")
    assert out == corrected_path(src) == tmp_path / "m.corrected.zarr"
    prov = read_provenance(out)
    assert prov["edit_count"] == 1 and prov["source"] == str(src) and len(prov["source_sha256"]) == 64
    assert prov["tool_version"] and prov["time"]
    back = read_mask(out)[0].compute()
    assert np.array_equal(back[:50, :50], blk) and np.array_equal(back[50:], lab[50:])
    assert np.array_equal(tifffile.imread(src), lab)
    with pytest.raises(SampleError, match="over the original"):
        save_corrected_mask(st, out=src)


def test_memory_store():
    lab = _grid_ids(0, 100, 0, 130)
    st = MaskStore.open_working_copy(None, labels=lab)
    assert st.path is None and st.max_id == int(lab.max())
    assert st.reserve_ids(2).tolist() == [lab.max() + 1, lab.max() + 2]


def test_working_copy_never_in_a_read_only_folder(tmp_path, monkeypatch):
    """Even as root (tests, containers) a folder whose permission bits say read-only is not written."""
    import os
    import stat

    import tifffile

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    src_dir = tmp_path / "shared"
    src_dir.mkdir()
    lab = np.zeros((64, 64), np.uint16)
    lab[5:20, 5:20] = 3
    src = src_dir / "mask.tif"
    tifffile.imwrite(src, lab)
    os.chmod(src_dir, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        st = MaskStore.open_working_copy(src)
        assert st.path.is_relative_to(tmp_path / "cache")
        assert sorted(p.name for p in src_dir.iterdir()) == ["mask.tif"]
    finally:
        os.chmod(src_dir, stat.S_IRWXU)


def test_stale_working_copy_moved_aside_not_reused(tmp_path):
    import tifffile

    lab = np.zeros((64, 64), np.uint16)
    lab[5:20, 5:20] = 3
    src = tmp_path / "mask.tif"
    tifffile.imwrite(src, lab)
    st = MaskStore.open_working_copy(src)
    st.write(5, 5, np.zeros((15, 15), np.uint32))   # an edit: cell 3 erased
    assert st.edit_count == 1 and not np.any(st.read(0, 64, 0, 64) == 3)
    fresh = MaskStore.open_working_copy(src)        # e.g. the slide reopened with its original table
    assert np.any(fresh.read(0, 64, 0, 64) == 3)     # starts from the source, not the old edits
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("mask.tif.carspatial-edit.") and p != fresh.path]
    assert len(backups) == 1                          # the old edits are kept, not deleted
    resumed = MaskStore.open_working_copy(src, resume=True)
    assert np.any(resumed.read(0, 64, 0, 64) == 3)
