"""Every output can say where the pixel size came from: file tag, OME, user, or unknown."""

from __future__ import annotations

import pytest

from napari_carspatial.model import SampleError
from napari_carspatial.model.pixel_size import pixel_size_info, set_pixel_size_source


def test_sources_of_real_and_written_files(tmp_path, steinbock_dir, cytomapper_dir):
    from napari_carspatial.datasets import write_demo
    from napari_carspatial.io import read_sample

    st = read_sample(steinbock_dir)[0]
    assert pixel_size_info(st).source.startswith("steinbock images.csv") and pixel_size_info(st).value == 1.0
    cy = read_sample(cytomapper_dir / "images" / "G01_imc.tiff", mask=cytomapper_dir / "masks" / "G01_mask.tiff",
                     table=cytomapper_dir / "cells.csv")
    assert pixel_size_info(cy).value is None and pixel_size_info(cy).source == "unknown"
    assert "--pixel-size-um" in pixel_size_info(cy).describe()
    got = pixel_size_info(cy, override=1.0)
    assert (got.value, got.source) == (1.0, "user")
    with pytest.raises(SampleError, match="positive"):
        pixel_size_info(cy, override=0)
    paths = write_demo(tmp_path / "demo", size=160)
    demo = read_sample(paths["image"])
    assert pixel_size_info(demo).source == "OME-XML PhysicalSizeX" and pixel_size_info(demo).value == 0.5
    # a table on its own: the pixel size it carries in uns, or the tag a reader recorded
    back = read_sample(paths["table"])
    assert pixel_size_info(back).source == "cell table (uns)"
    set_pixel_size_source(back.table, "inForm component_data.tif")
    assert pixel_size_info(back).source == "inForm component_data.tif"
    assert pixel_size_info(adata=back.table).value == 0.5
