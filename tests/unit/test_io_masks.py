"""Label masks and OME-Zarr images/labels."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_carspatial.io import detect_format, read_mask, read_omezarr, read_sample
from napari_carspatial.model import SampleError


def _labels(dtype=np.uint32):
    lab = np.zeros((64, 48), dtype)
    lab[2:10, 3:9] = 7
    lab[20:30, 20:40] = 200 if np.iinfo(dtype).max < 1000 else 1000
    lab[40:50, 5:15] = 3
    return lab


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.int64])
def test_integer_masks(tmp_path, dtype):
    f = tmp_path / "mask.tif"
    tifffile.imwrite(f, _labels(dtype))
    levels = read_mask(f)
    assert levels[0].dtype == dtype and levels[0].shape == (64, 48)
    assert set(np.unique(levels[0].compute())) == set(np.unique(_labels(dtype)))


def test_float_mask_rejected(tmp_path):
    f = tmp_path / "prob.tif"
    tifffile.imwrite(f, _labels().astype(np.float32))
    with pytest.raises(SampleError, match=r"prob\.tif.*float32.*integer"):
        read_mask(f)


def test_empty_mask_rejected(tmp_path):
    f = tmp_path / "empty.tif"
    tifffile.imwrite(f, np.zeros((32, 32), np.uint16))
    with pytest.raises(SampleError, match=r"empty\.tif.*mask has no cells"):
        read_mask(f)


def test_strided_mask_pyramid(tmp_path):
    lab = np.zeros((5000, 64), np.uint16)
    lab[100:200, 10:20] = 5
    f = tmp_path / "tall.tif"
    tifffile.imwrite(f, lab, tile=(256, 64))
    levels = read_mask(f)
    assert [lv.shape for lv in levels] == [(5000, 64), (2500, 32), (1250, 16)]
    np.testing.assert_array_equal(levels[1].compute(), lab[::2, ::2])


def test_ome_tiff_mask_pyramid(tmp_path):
    lab = _labels(np.uint16)
    f = tmp_path / "cell.ome.tif"
    with tifffile.TiffWriter(f, ome=True) as tw:
        tw.write(lab, subifds=1, tile=(16, 16), metadata={"axes": "YX"})
        tw.write(lab[::2, ::2], subfiletype=1, tile=(16, 16))
    levels = read_mask(f)
    assert [lv.shape for lv in levels] == [(64, 48), (32, 24)]


def write_ngff(path, data, *, version="0.4", names=None, scale=0.65, labels=None):
    """Minimal NGFF writer (2 levels) for tests: 0.4 -> zarr v2 attrs, 0.5 -> zarr v3 'ome' attrs."""
    fmt = 2 if version == "0.4" else 3
    g = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    axes = [{"name": "c", "type": "channel"}] if data.ndim == 3 else []
    axes += [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}]
    datasets = []
    for k in range(2):
        f = 2**k
        arr = data[..., ::f, ::f]
        g.create_array(str(k), data=arr, chunks=arr.shape)
        sc = ([1.0] if data.ndim == 3 else []) + [scale * f, scale * f]
        datasets.append({"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": sc}]})
    ms = {"multiscales": [{"version": version, "axes": axes, "datasets": datasets}]}
    if names:
        ms["omero"] = {"channels": [{"label": n} for n in names]}
    if version == "0.4":
        g.attrs.update(ms)
    else:
        g.attrs["ome"] = {"version": "0.5", **ms}
    if labels is not None:
        lg = g.create_group("labels")
        lg.attrs.update({"labels": ["cells"]} if version == "0.4" else {"ome": {"labels": ["cells"]}})
        write_ngff(path / "labels" / "cells", labels, version=version, scale=scale)
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_omezarr_image(tmp_path, version):
    rng = np.random.default_rng(1)
    img = rng.random((3, 64, 48)).astype(np.float32)
    p = write_ngff(tmp_path / "img.ome.zarr", img, version=version, names=["A", "B", "C"])
    d = read_omezarr(p)
    assert [lv.shape for lv in d.levels] == [(3, 64, 48), (3, 32, 24)]
    assert d.channel_names == ["A", "B", "C"]
    assert d.pixel_size_um == pytest.approx(0.65)
    np.testing.assert_array_equal(d.levels[1].compute(), img[:, ::2, ::2])
    assert detect_format(p) == "ome-zarr"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_omezarr_with_labels(tmp_path, version):
    img = np.ones((2, 64, 48), np.uint16)
    p = write_ngff(tmp_path / "s.zarr", img, version=version, names=["A", "B"], labels=_labels())
    s = read_sample(p)
    assert s.labels is not None and s.labels[0].shape == (64, 48) and len(s.labels) == 2
    assert s.channel_names == ["A", "B"] and s.pixel_size_um == pytest.approx(0.65)
    # labels group readable as a mask on its own
    assert read_mask(p / "labels" / "cells")[0].dtype == np.uint32


def test_omezarr_float_labels_rejected(tmp_path):
    p = write_ngff(tmp_path / "f.zarr", _labels().astype(np.float64))
    with pytest.raises(SampleError, match="integer"):
        read_mask(p)


def test_mask_shape_mismatch(tmp_path):
    img = tmp_path / "img.ome.tif"
    tifffile.imwrite(img, np.zeros((2, 50, 50), np.uint8), ome=True, metadata={"axes": "CYX"})
    m = tmp_path / "mask.tif"
    tifffile.imwrite(m, _labels())
    with pytest.raises(SampleError, match=r"mask\.tif.*\(64, 48\).*\(50, 50\)"):
        read_sample(img, mask=m)
