"""OME-TIFF (flat, SubIFD pyramid, series pyramid) and plain TIFF stacks."""

from __future__ import annotations

import logging
from unittest import mock

import numpy as np
import pytest
import tifffile

from napari_carspatial.io import detect_format, read_image, read_sample, read_tiff
from napari_carspatial.model import ReaderError, SampleError

NAMES = ["CD3", "CD8", "PanCK"]


def write_ome(path, data, *, names=NAMES, px=0.5, unit="µm", subifds=0):
    meta = {"axes": "CYX", "Channel": {"Name": names}, "PhysicalSizeX": px, "PhysicalSizeXUnit": unit,
            "PhysicalSizeY": px, "PhysicalSizeYUnit": unit}
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(data, subifds=subifds, tile=(64, 64) if subifds else None, metadata=meta)
        for k in range(1, subifds + 1):
            tw.write(data[:, :: 2**k, :: 2**k], subfiletype=1, tile=(64, 64))


@pytest.fixture
def img():
    rng = np.random.default_rng(0)
    return rng.integers(0, 1000, (3, 256, 192), dtype=np.uint16)


def test_flat_ome_tiff(tmp_path, img):
    f = tmp_path / "flat.ome.tif"
    write_ome(f, img)
    d = read_image(f)
    assert d.channel_names == NAMES
    assert d.pixel_size_um == pytest.approx(0.5)
    assert d.levels[0].shape == img.shape
    np.testing.assert_array_equal(d.levels[0].compute(), img)
    assert detect_format(f) == "ome-tiff"


def test_pyramidal_subifds_lazy(tmp_path, img):
    f = tmp_path / "pyr.ome.tif"
    write_ome(f, img, px=250, unit="nm", subifds=2)
    # opening must not decode any pixel data (level 0 in particular)
    with mock.patch.object(tifffile.TiffPage, "decode", side_effect=AssertionError("pixels read on open")), \
         mock.patch.object(tifffile.TiffPage, "asarray", side_effect=AssertionError("pixels read on open")):
        d = read_tiff(f)
    assert [lvl.shape for lvl in d.levels] == [(3, 256, 192), (3, 128, 96), (3, 64, 48)]
    assert d.channel_names == NAMES
    assert d.pixel_size_um == pytest.approx(0.25)
    np.testing.assert_array_equal(d.levels[1].compute(), img[:, ::2, ::2])
    np.testing.assert_array_equal(d.levels[0][1, 10:20, 5:9].compute(), img[1, 10:20, 5:9])


def test_series_pyramid(tmp_path, img):
    """Older layout: one OME Image (tifffile series) per resolution."""
    f = tmp_path / "series.ome.tif"
    with tifffile.TiffWriter(f, ome=True) as tw:
        for k in range(3):
            tw.write(img[:, :: 2**k, :: 2**k], metadata={"axes": "CYX", "Channel": {"Name": NAMES},
                                                          "PhysicalSizeX": 1.0})
    d = read_tiff(f)
    assert [lvl.shape[1:] for lvl in d.levels] == [(256, 192), (128, 96), (64, 48)]
    assert d.channel_names == NAMES and d.pixel_size_um == 1.0


def test_page_names(tmp_path, img):
    f = tmp_path / "pages.tiff"
    with tifffile.TiffWriter(f) as tw:
        for i, n in enumerate(NAMES):
            tw.write(img[i], extratags=[(285, "s", 0, n, True)])
    d = read_image(f)
    assert d.channel_names == NAMES
    assert detect_format(f) == "tiff"


def test_perkinelmer_xml(tmp_path, img):
    f = tmp_path / "vectra.tif"
    with tifffile.TiffWriter(f) as tw:
        for i, n in enumerate(NAMES):
            desc = ("<?xml version='1.0' encoding='utf-8'?><PerkinElmer-QPI-ImageDescription><DescriptionVersion>2"
                    f"</DescriptionVersion><Name>DAPI {i}</Name><Biomarker>{n}</Biomarker></PerkinElmer-QPI-ImageDescription>")
            tw.write(img[i], description=desc, metadata=None, resolution=(20000, 20000), resolutionunit=3)
    d = read_image(f)
    assert d.channel_names == NAMES
    assert d.pixel_size_um == pytest.approx(0.5)


def test_imagej_labels(tmp_path, img):
    f = tmp_path / "ij.tif"
    tifffile.imwrite(f, img, imagej=True, metadata={"axes": "CYX", "Labels": NAMES, "unit": "micron"},
                     resolution=(2.0, 2.0))
    d = read_image(f)
    assert d.channel_names == NAMES
    assert d.pixel_size_um == pytest.approx(0.5)


def test_panel_beside_file(tmp_path, img):
    (tmp_path / "img").mkdir()
    f = tmp_path / "img" / "roi.tiff"
    tifffile.imwrite(f, img, photometric="minisblack")
    (tmp_path / "panel.csv").write_text("channel,name,keep\nIr191,DNA,1\nX,dropped,0\nY,CD3,1\nZ,CD8,1\n")
    assert read_image(f).channel_names == ["DNA", "CD3", "CD8"]


def test_cytomapper_panel_order(tmp_path, img):
    f = tmp_path / "roi.tiff"
    tifffile.imwrite(f, img, photometric="minisblack")
    (tmp_path / "panel.csv").write_text("channel_index_0based,name\n2,C\n0,A\n1,B\n")
    assert read_image(f).channel_names == ["A", "B", "C"]


def test_missing_panel_generic_names_warns(tmp_path, img, caplog):
    f = tmp_path / "roi.tiff"
    tifffile.imwrite(f, img, photometric="minisblack")
    with caplog.at_level(logging.WARNING):
        d = read_image(f)
    assert d.channel_names == ["channel_0", "channel_1", "channel_2"]
    assert "no channel names" in caplog.text


def test_panel_count_mismatch(tmp_path, img):
    f = tmp_path / "roi.tiff"
    tifffile.imwrite(f, img, photometric="minisblack")
    panel = tmp_path / "panel.csv"
    panel.write_text("name\nA\nB\n")
    with pytest.raises(SampleError) as e:
        read_image(f)
    msg = str(e.value)
    assert "panel.csv" in msg and "roi.tiff" in msg and "2 channels" in msg and "3 channels" in msg


def test_truncated_tiff(tmp_path, img):
    f = tmp_path / "cut.ome.tif"
    write_ome(f, img)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReaderError, match="cut.ome.tif"):
        read_sample(f)


def test_garbage_tiff(tmp_path):
    f = tmp_path / "junk.tif"
    f.write_bytes(b"this is not a tiff at all")
    with pytest.raises(ReaderError, match="junk.tif"):
        read_image(f)


def test_large_single_level_gets_strided_pyramid(tmp_path):
    f = tmp_path / "big.tif"
    tifffile.imwrite(f, np.zeros((1, 4100, 300), np.uint8), tile=(256, 256))
    d = read_image(f, channel_names=["a"])
    assert [lvl.shape[1] for lvl in d.levels] == [4100, 2050, 1025]


def test_truncated_pixel_data(tmp_path, img):
    """IFDs intact, pixel data cut: detected on open from the page offsets, not on first compute."""
    f = tmp_path / "tail.tif"
    tifffile.imwrite(f, img[0])
    with tifffile.TiffFile(f) as tif:
        last_ifd = max(p.offset for p in tif.pages)
    data = f.read_bytes()
    assert last_ifd + 1000 < len(data) - 100
    f.write_bytes(data[:-100])
    with pytest.raises(ReaderError, match=r"tail\.tif.*truncated"):
        read_image(f, channel_names=["a"])
