"""Pixel size provenance: every reader records where the pixel size came from
(``Sample.metadata["pixel_size_source"]``), ``carspatial quantify --pixel-size-um`` overrides the
image's and records ``user``. Real data: steinbock (images.csv), raw IMC (.mcd, .txt beside its
.mcd), cytomapper TIFFs (no pixel size), the Xenium crop (no experiment.xenium)."""

from __future__ import annotations

import argparse

import anndata as ad
import pytest

from napari_carspatial.io import read_sample
from napari_carspatial.model import SampleError
from napari_carspatial.model.pixel_size import pixel_size_info, set_pixel_size_source


def test_imc_readers_record_the_source(steinbock_dir, real_data_root):
    st = read_sample(steinbock_dir)[0]
    assert st.metadata["pixel_size_source"] == "steinbock images.csv (acquisition width / width px)"
    assert pixel_size_info(st).value == 1.0
    raw = real_data_root / "imc_raw_mcd" / "20210305_NE_mockData1"
    mcd = read_sample(raw / "20210305_NE_mockData1.mcd")
    assert len(mcd) == 3
    assert {(pixel_size_info(s).value, pixel_size_info(s).source) for s in mcd} == {
        (1.0, ".mcd acquisition (AblationDistanceBetweenShotsX)")}
    txt = read_sample(raw / "20210305_NE_mockData1_ROI_001_1.txt")
    assert (pixel_size_info(txt).value, pixel_size_info(txt).source) == (1.0, ".mcd beside the .txt export")
    # the user's value wins over the file's, and says so
    txt = read_sample(raw / "20210305_NE_mockData1_ROI_001_1.txt", pixel_size_um=0.8)
    assert (pixel_size_info(txt).value, pixel_size_info(txt).source) == (0.8, "user")


def test_tiff_user_and_platform_sources(cytomapper_dir, real_data_root, tmp_path):
    from napari_carspatial.datasets import write_demo

    img = cytomapper_dir / "images" / "G01_imc.tiff"
    assert "pixel_size_source" not in read_sample(img).metadata   # the file has none: nothing is claimed
    s = read_sample(img, mask=cytomapper_dir / "masks" / "G01_mask.tiff", table=cytomapper_dir / "cells.csv",
                    pixel_size_um=1.0)
    assert (pixel_size_info(s).value, pixel_size_info(s).source) == (1.0, "user")
    demo = read_sample(write_demo(tmp_path / "demo", size=96)["image"])
    assert demo.metadata["pixel_size_source"] == "OME-XML PhysicalSizeX" and demo.pixel_size_um == 0.5
    # the reader's record wins over a source a table saved earlier carries
    set_pixel_size_source(s.table, "stale")
    assert pixel_size_info(s).source == "user"
    set_pixel_size_source(s, "manifest pixel_size_um")
    assert s.table.uns["carspatial"]["pixel_size_source"] == "manifest pixel_size_um"
    x = read_sample(real_data_root / "xenium_crop")
    x = x[0] if isinstance(x, list) else x
    assert pixel_size_info(x) == pixel_size_info(x).__class__(
        0.2125, "Xenium's documented morphology pixel (experiment.xenium missing)")


def _quantify(image, mask, out, pixel_size_um=None):
    from napari_carspatial.commands import quantify

    args = argparse.Namespace(image=str(image), mask=str(mask), output=str(out), nuclear=None, scheduler=None,
                              workers=1, in_process_max=None, statistics="mean", tile=1024, panel=None,
                              overwrite=False, pixel_size_um=pixel_size_um)
    assert quantify.run(args) == 0
    return ad.read_h5ad(out)


def test_quantify_pixel_size_override(cytomapper_dir, tmp_path):
    """cytomapper's TIFFs carry no pixel size (1 µm per its README): without the option the table
    has none; --pixel-size-um 1 stores it with source 'user' and areas in µm²."""
    img, mask = cytomapper_dir / "images" / "G01_imc.tiff", cytomapper_dir / "masks" / "G01_mask.tiff"
    plain = _quantify(img, mask, tmp_path / "plain.h5ad")
    assert pixel_size_info(adata=plain).source == "unknown"
    given = _quantify(img, mask, tmp_path / "given.h5ad", pixel_size_um=1.0)
    assert given.uns["carspatial"]["pixel_size_um"] == 1.0
    assert pixel_size_info(adata=given) == pixel_size_info(adata=given).__class__(1.0, "user")
    assert given.n_obs == plain.n_obs == 122
    with pytest.raises(SampleError, match="positive"):
        _quantify(img, mask, tmp_path / "bad.h5ad", pixel_size_um=0.0)
    assert not (tmp_path / "bad.h5ad").exists()


def test_quantify_records_the_files_source(tmp_path):
    from napari_carspatial.datasets import write_demo

    d = write_demo(tmp_path / "demo", size=96)
    t = _quantify(d["image"], d["mask"], tmp_path / "t.h5ad")
    assert pixel_size_info(adata=t) == pixel_size_info(adata=t).__class__(0.5, "OME-XML PhysicalSizeX")
