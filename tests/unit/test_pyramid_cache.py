"""Pyramid cache of flat slides: built once, then read_image's lower levels come from it,
identical to the lazy strided levels; keyed by the file's identity; never breaks opening."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_carspatial.io import pyramid_cache as pc
from napari_carspatial.io import read_image


@pytest.fixture()
def flat(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60000, (2, 4500, 2100), dtype=np.uint16)
    path = tmp_path / "flat.ome.tif"
    tifffile.imwrite(path, img, ome=True, tile=(256, 256), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "CD3"]}})
    return path, img


def test_build_then_read_from_cache(flat):
    path, img = flat
    before = read_image(path)
    assert len(before.levels) == 3  # 4500 -> 2250 -> 1125, strided and lazy
    assert pc.cached_levels(path, before.levels[0]) is None
    fractions = list(pc.iter_build_pyramid_cache(path, band_rows=512))
    assert fractions[-1] == 1.0 and len(fractions) == 2 * 9
    after = read_image(path)
    assert len(after.levels) == 4 and after.channel_names == ["DAPI", "CD3"]  # cached down to <= 1024 px
    for k in (1, 2, 3):
        assert "from-zarr" in after.levels[k].name  # no longer a slice of level 0
        np.testing.assert_array_equal(np.asarray(after.levels[k]), img[:, :: 2 ** k, :: 2 ** k])
        if k < len(before.levels):
            np.testing.assert_array_equal(np.asarray(after.levels[k]), np.asarray(before.levels[k]))
    entry = pc.cache_path(path, after.levels[0])
    assert entry.parent == pc.cache_root() and not list(entry.parent.glob(".*.tmp"))
    # a second build is a no-op; the entry is an OME-Zarr our reader opens too
    assert pc.build_pyramid_cache(path) == entry
    from napari_carspatial.io.omezarr import read_omezarr

    z = read_omezarr(entry)
    np.testing.assert_array_equal(np.asarray(z.levels[-1]), img[:, ::8, ::8])


def test_changed_file_is_not_served_from_cache(flat):
    path, img = flat
    pc.build_pyramid_cache(path, band_rows=1024)
    assert pc.cached_levels(path, read_image(path).levels[0]) is not None
    img2 = img.copy()
    img2[:, :100] = 7
    tifffile.imwrite(path, img2, ome=True, tile=(256, 256), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "CD3"]}})
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    r = read_image(path)
    assert pc.cached_levels(path, r.levels[0]) is None
    np.testing.assert_array_equal(np.asarray(r.levels[2])[:, :25], img2[:, :100:4, ::4])


def test_cancel_and_broken_entries(flat):
    path, img = flat
    gen = pc.iter_build_pyramid_cache(path, band_rows=512)
    next(gen)
    gen.close()  # cancelled after one band: nothing usable, no temporary folder left
    lvl0 = read_image(path).levels[0]
    entry = pc.cache_path(path, lvl0)
    assert not entry.exists() and not list(pc.cache_root().glob(".*.tmp"))
    pc.build_pyramid_cache(path)
    (entry / "carspatial_cache.json").write_text("{not json")  # damaged entry: ignored, never raises
    assert pc.cached_levels(path, lvl0) is None
    assert len(read_image(path).levels) == 3
    assert pc.clear_pyramid_cache() == 1 and not entry.exists()
    small = np.zeros((1, 300, 300), np.uint16)
    assert not pc.needs_pyramid_cache(small)
