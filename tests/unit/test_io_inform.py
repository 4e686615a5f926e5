"""inForm cell tables: position units from the export's own headers, and the _component_data name match.

No shareable inForm export is here; the tables below use inForm's column names as phenoptr's
sample data has them (``Path``, ``Sample Name``, ``Tissue Category``, ``Phenotype``, ``Cell ID``,
``Cell X Position``, ``Cell Y Position``, ``Nucleus Area (pixels)`` or ``(square microns)``,
``Entire Cell <marker> Mean (Normalized Counts, Total Weighting)``, ``inForm <version>``), and the
unit rule of phenoptr's ``read_cell_seg_data``: microns when a column names microns or none names
pixels; micron positions are slide coordinates, offset by the component image's
``XPosition``/``YPosition`` tags (cm) at its resolution (pixels per cm).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_carspatial.io import read_sample, read_table
from napari_carspatial.io.inform import inform_stem, position_unit

FIELD = "Set4_1-6plex_[16142,55840]"
MPP = 0.4964                      # µm per pixel (Vectra 20x)
TOP_LEFT_UM = (16142.0 - 60 * MPP / 2, 55840.0 - 40 * MPP / 2)   # field centre in the name, 60 x 40 px


def _component_image(folder):
    img = np.zeros((3, 40, 60), np.float32)
    path = folder / f"{FIELD}_component_data.tif"
    ppcm = 1e4 / MPP
    with tifffile.TiffWriter(path) as tw:
        for c, name in enumerate(["DAPI", "CD8", "PanCK"]):
            desc = ("<PerkinElmer-QPI-ImageDescription><DescriptionVersion>2</DescriptionVersion>"
                    f"<ImageType>FullResolution</ImageType><IsUnmixedComponent>True</IsUnmixedComponent>"
                    f"<Name>{name}</Name></PerkinElmer-QPI-ImageDescription>")
            x_cm = (TOP_LEFT_UM[0] / 1e4)
            y_cm = (TOP_LEFT_UM[1] / 1e4)
            tw.write(img[c], software="PerkinElmer-QPI", metadata=None, description=desc,
                     resolution=(ppcm, ppcm), resolutionunit="CENTIMETER",
                     extratags=[(286, "2I", 1, (int(round(x_cm * 1e8)), 100000000)),
                                (287, "2I", 1, (int(round(y_cm * 1e8)), 100000000))])
    return path


def _mask(folder):
    lab = np.zeros((40, 60), np.uint16)
    lab[5:15, 10:20] = 1
    lab[20:30, 35:50] = 2
    path = folder / f"{FIELD}_mask.tif"
    tifffile.imwrite(path, lab)
    return path, lab


def _table(folder, *, microns: bool):
    px = np.array([[14.5, 9.5], [42.0, 24.5]])     # (x, y) centroids of cells 1, 2 in field pixels
    pos = px * MPP + np.array(TOP_LEFT_UM) if microns else px
    area = "Nucleus Area (square microns)" if microns else "Nucleus Area (pixels)"
    df = pd.DataFrame({
        "Path": ["C:\\data"] * 2, "Sample Name": [f"{FIELD}.im3"] * 2, "Tissue Category": ["Tumor", "Stroma"],
        "Phenotype": ["CK+", "CD8+"], "Cell ID": [1, 2], "Cell X Position": pos[:, 0], "Cell Y Position": pos[:, 1],
        area: [25.0, 30.0],
        "Entire Cell DAPI Mean (Normalized Counts, Total Weighting)": [1.5, 2.5],
        "Entire Cell CD8 Mean (Normalized Counts, Total Weighting)": [0.1, 9.0],
        "Entire Cell PanCK Mean (Normalized Counts, Total Weighting)": [7.0, 0.2],
        "inForm 2.4.8": ["", ""],
    })
    path = folder / f"{FIELD}_cell_seg_data.txt"
    df.to_csv(path, sep="\t", index=False)
    return path, px


def test_names_match_without_inform_suffixes():
    assert inform_stem(f"{FIELD}_component_data.tif") == FIELD
    assert inform_stem(f"{FIELD}_cell_seg_data.txt") == FIELD
    assert inform_stem(f"{FIELD}.im3") == FIELD


def test_units_from_headers():
    assert position_unit(["Cell X Position", "Nucleus Area (pixels)"]) == "px"
    assert position_unit(["Cell X Position", "Nucleus Area (square microns)"]) == "um"
    assert position_unit(["Cell X Position", "Cell ID"]) == "um"       # no unit anywhere: microns (newer exports)


@pytest.mark.parametrize("microns", [False, True])
def test_inform_table_opens_in_field_pixels_without_warning(tmp_path, caplog, microns):
    img = _component_image(tmp_path)
    mask, _ = _mask(tmp_path)
    table, px = _table(tmp_path, microns=microns)
    with caplog.at_level(logging.WARNING, logger="napari_carspatial"):
        s = read_sample(img, mask=mask, table=table)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    assert s.pixel_size_um == pytest.approx(MPP, rel=1e-4)
    assert s.n_cells == 2 and list(s.table.var_names) == ["DAPI", "CD8", "PanCK"]
    np.testing.assert_allclose(np.asarray(s.table.obsm["spatial"]), px, atol=1e-3)
    if microns:
        np.testing.assert_allclose(s.table.obs["Cell X Position (µm)"], px[:, 0] * MPP + TOP_LEFT_UM[0])


def test_micron_table_without_component_image_uses_mask_centroids(tmp_path, caplog):
    table, px = _table(tmp_path, microns=True)
    with caplog.at_level(logging.WARNING, logger="napari_carspatial"):
        t = read_table(table, pixel_size_um=MPP)
    assert "spatial" not in t.obsm       # never µm slide coordinates taken as pixels
    assert any("microns" in r.getMessage() for r in caplog.records)
