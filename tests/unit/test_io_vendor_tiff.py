"""Akoya QPTIFF and Lunaphore COMET OME-TIFF, on files written to the vendors' layouts.

No shareable real file of either kind is here, so the tests write them:

* QPTIFF follows the page order tifffile's ``qpi`` series builder (``TiffFile._series_qpi``)
  and the vendors' own files use: one tiled page per channel at full resolution, each with
  ``Software = PerkinElmer-QPI`` and a ``<PerkinElmer-QPI-ImageDescription>`` XML (the element set
  Vectra/Mantra write: DescriptionVersion, AcquisitionSoftware, ImageType FullResolution,
  Identifier, SlideID, Barcode, ComputerName, IsUnmixedComponent, ExposureTime, SignalUnits, Name,
  Color, Objective, plus ``<Biomarker>`` as PhenoCycler-Fusion writes), resolution in pixels per
  centimetre; then one RGB thumbnail page; then one page per channel for each half-size level
  (ImageType ReducedResolution); then the overview (macro) page.
* COMET: an OME-TIFF (OME-XML 2016-06 in the first page, SubIFD pyramid) whose ``Channel``
  elements carry the marker in ``Name`` and the optical filter in ``Fluor`` (DAPI, TRITC, Cy5),
  ``PhysicalSizeX/Y`` in µm, one ``Plane`` per channel with ``ExposureTime``. No COMET
  specification was found in the searchable corpora; this is the OME-XML subset COMET images are
  read by (names, filters, pixel size, pyramid), written with tifffile's OME writer.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_carspatial.io import detect_format, read_sample

PX_UM = 0.4975   # Vectra Polaris 20x


def _qpi_description(name, *, image_type="FullResolution", biomarker=None, color="0,0,255", exposure=100):
    bio = f"\r\n  <Biomarker>{biomarker}</Biomarker>" if biomarker else ""
    return ('<?xml version="1.0" encoding="utf-16"?>\r\n<PerkinElmer-QPI-ImageDescription>\r\n'
            "  <DescriptionVersion>2</DescriptionVersion>\r\n  <AcquisitionSoftware>VectraPolaris</AcquisitionSoftware>\r\n"
            f"  <ImageType>{image_type}</ImageType>\r\n  <Identifier>5f0e2e6a-0000-4000-8000-000000000000</Identifier>\r\n"
            "  <SlideID>S1</SlideID>\r\n  <Barcode />\r\n  <ComputerName>POLARIS</ComputerName>\r\n"
            "  <IsUnmixedComponent>False</IsUnmixedComponent>\r\n"
            f"  <ExposureTime>{exposure}</ExposureTime>\r\n  <SignalUnits>64</SignalUnits>\r\n  <Name>{name}</Name>{bio}\r\n"
            f"  <Color>{color}</Color>\r\n  <Objective>20x [20x]</Objective>\r\n"
            "</PerkinElmer-QPI-ImageDescription>")


def write_qptiff(path, levels, names, biomarkers=None):
    ppcm = 1e4 / PX_UM
    biomarkers = biomarkers or [None] * len(names)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for c, (n, b) in enumerate(zip(names, biomarkers, strict=True)):
            tw.write(levels[0][c], tile=(64, 64), metadata=None, software="PerkinElmer-QPI",
                     description=_qpi_description(n, biomarker=b, exposure=10 * (c + 1)),
                     resolution=(ppcm, ppcm), resolutionunit="CENTIMETER")
        tw.write(np.zeros((32, 32, 3), np.uint8), metadata=None, software="PerkinElmer-QPI",
                 description=_qpi_description("Thumbnail", image_type="Thumbnail"))
        for k, lvl in enumerate(levels[1:], start=1):
            for c, (n, b) in enumerate(zip(names, biomarkers, strict=True)):
                tw.write(lvl[c], tile=(64, 64), metadata=None, software="PerkinElmer-QPI",
                         description=_qpi_description(n, image_type="ReducedResolution", biomarker=b),
                         resolution=(ppcm / 2 ** k, ppcm / 2 ** k), resolutionunit="CENTIMETER")
        tw.write(np.zeros((40, 100, 3), np.uint8), metadata=None, software="PerkinElmer-QPI",
                 description=_qpi_description("Overview", image_type="Overview"))


def _levels(n_c, size=256):
    rng = np.random.default_rng(0)
    l0 = rng.integers(0, 4000, (n_c, size, size)).astype(np.uint16)
    return [l0, l0[:, ::2, ::2].copy(), l0[:, ::4, ::4].copy()]


def test_qptiff_vectra_names_pyramid_pixel_size(tmp_path):
    names = ["DAPI", "Opal 520", "Opal 570", "Opal 690", "Autofluorescence"]
    levels = _levels(len(names))
    path = tmp_path / "slide.qptiff"
    write_qptiff(path, levels, names)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_qpi and tif.series[0].kind == "qpi" and len(tif.series[0].levels) == 3
    assert detect_format(path) == "tiff"
    s = read_sample(path)
    assert s.channel_names == names
    assert s.pixel_size_um == pytest.approx(PX_UM, rel=1e-6)
    assert [tuple(lvl.shape) for lvl in s.image] == [tuple(lvl.shape) for lvl in levels]
    np.testing.assert_array_equal(s.image[1].compute(), levels[1])
    meta = s.metadata["channel_metadata"]
    assert [m["fluor"] for m in meta] == names and meta[0]["exposure_time"] == "10" and meta[0]["color"] == "0,0,255"


def test_qptiff_phenocycler_biomarkers_name_the_channels(tmp_path):
    fluors = ["DAPI", "Cy5", "ATTO550", "AF750"]
    markers = ["DAPI", "CD3e", "Pan-Cytokeratin", "CD68"]
    path = tmp_path / "fusion.qptiff"
    write_qptiff(path, _levels(4), fluors, biomarkers=markers)
    s = read_sample(path)
    assert s.channel_names == markers
    assert [m["fluor"] for m in s.metadata["channel_metadata"]] == fluors
    from napari_carspatial._napari.layers import channel_plan

    plan = channel_plan(s)
    assert plan["visible"] == [True, True, True, True]   # nuclear + tumour + T + myeloid


def write_comet(path, data, names, fluors, px=0.23):
    meta = {"axes": "CYX", "PhysicalSizeX": px, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": px,
            "PhysicalSizeYUnit": "µm", "Channel": {"Name": names, "Fluor": fluors},
            "Plane": {"ExposureTime": [50.0 * (i + 1) for i in range(len(names))], "ExposureTimeUnit": ["ms"] * len(names)}}
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        tw.write(data, subifds=2, tile=(64, 64), metadata=meta, photometric="minisblack")
        for f in (2, 4):
            tw.write(data[:, ::f, ::f], subfiletype=1, tile=(64, 64), photometric="minisblack")


def test_comet_ome_tiff_names_filters_pyramid(tmp_path):
    names = ["DAPI", "CD3", "PanCK", "CD68", "CD8", "TRITC background"]
    fluors = ["DAPI", "TRITC", "Cy5", "TRITC", "Cy5", "TRITC"]
    data = _levels(len(names))[0]
    path = tmp_path / "comet_run.ome.tiff"
    write_comet(path, data, names, fluors)
    assert detect_format(path) == "ome-tiff"
    s = read_sample(path)
    assert s.channel_names == names
    assert s.pixel_size_um == pytest.approx(0.23)
    assert len(s.image) == 3 and tuple(s.image[2].shape) == (len(names), 64, 64)
    np.testing.assert_array_equal(s.image[0][3].compute(), data[3])
    meta = s.metadata["channel_metadata"]
    assert [m["fluor"] for m in meta] == fluors
    from napari_carspatial._napari.layers import channel_plan

    plan = channel_plan(s)
    shown = [n for n, v in zip(names, plan["visible"], strict=True) if v]
    assert shown == ["DAPI", "CD3", "PanCK", "CD68"] and "TRITC background" not in shown
