"""File > Open (``viewer.open(path, plugin="napari-carspatial")``) for every instrument format.

Checked against the sources' own numbers: channel names from readimc / the panel / the
MIBItiff descriptions, pixel size (layer scale in µm), cell counts (steinbock: 404 deepcell
cells), the first view (one nuclear channel + lineage markers), colormaps black at 0, and named
montage tiles.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from napari_carspatial._napari import META_ROLE, session_for

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


def _real(sub):
    p = REAL / sub
    if not p.exists():
        pytest.skip(f"real data {p} is absent")
    return p


def _images(viewer):
    return [ly for ly in viewer.layers if ly.__class__.__name__ == "Image"]


def _check_colormaps_black_at_zero(viewer):
    for ly in _images(viewer):
        rgba = ly.colormap.map(np.array([0.0]))[0]
        assert np.allclose(rgba[:3], 0.0), (ly.name, ly.colormap.name)
        assert ly.blending == "additive"


def test_open_steinbock_folder_montage(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    viewer.open(str(_real("steinbock_imc_testdata")), plugin="napari-carspatial")
    imgs = _images(viewer)
    assert [ly.name for ly in imgs] == ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]
    assert [ly.name for ly in imgs if ly.visible] == ["Cytokeratin 5", "Laminin", "H3K27Ac"]
    _check_colormaps_black_at_zero(viewer)
    labels = [ly for ly in viewer.layers if ly.metadata.get(META_ROLE) == "labels"]
    assert len(labels) == 1
    sample = session_for(viewer).sample_of(labels[0])
    assert sample.n_cells == 404 and tuple(labels[0].scale) == (1.0, 1.0)
    tiles = [ly for ly in viewer.layers if ly.__class__.__name__ == "Shapes"]
    assert len(tiles) == 1 and len(tiles[0].data) == 15
    assert list(tiles[0].features["acquisition"])[:2] == ["mockData1_001", "mockData1_002"]
    assert tiles[0].text.visible and tiles[0].text.string.format == "{acquisition}"


def test_open_mcd_each_acquisition_named(make_napari_viewer_proxy):
    pytest.importorskip("readimc")
    from readimc import MCDFile

    mcd = _real("imc_raw_mcd") / "20210305_NE_mockData2" / "20210305_NE_mockData2.mcd"
    viewer = make_napari_viewer_proxy()
    viewer.open(str(mcd), plugin="napari-carspatial")
    with MCDFile(mcd) as f:
        acqs = [a for s in f.slides for a in s.acquisitions]
        ref0 = f.read_acquisition(acqs[0])
    imgs = _images(viewer)
    assert len(imgs) == 5 * len(acqs)                    # 3 acquisitions: each its own layers
    first = [ly for ly in imgs if ly.name.startswith("ROI_001: ")]
    assert [ly.name.split(": ", 1)[1] for ly in first] == ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]
    np.testing.assert_array_equal(np.asarray(first[4].data), ref0[4])
    assert tuple(first[0].scale) == (1.0, 1.0)
    _check_colormaps_black_at_zero(viewer)
    tiles = [ly for ly in viewer.layers if ly.__class__.__name__ == "Shapes"]
    assert list(tiles[0].features["acquisition"]) == ["ROI_001", "ROI_002", "ROI_003"]


def test_open_mibitiff_names_from_descriptions(make_napari_viewer_proxy, tmp_path):
    spec = importlib.util.spec_from_file_location("mibi_writer", ROOT / "tests" / "unit" / "test_io_mibi.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    data = rng.poisson(0.4, (64, 48, len(mod.TARGETS))).astype(np.uint16)
    path = tmp_path / "Point1.tiff"
    written, _ = mod.write_mibitiff(path, data, mod.TARGETS)
    viewer = make_napari_viewer_proxy()
    viewer.open(str(path), plugin="napari-carspatial")
    imgs = _images(viewer)
    assert [ly.name for ly in imgs] == [t for t, _ in written]          # "CD3", not "CD3 (159)"
    assert [ly.name for ly in imgs if ly.visible] == ["CD3", "dsDNA", "Keratin"]
    assert imgs[0].scale[0] == pytest.approx(mod.SIZE_UM / 64)
    _check_colormaps_black_at_zero(viewer)


def test_open_image_with_mask_measures_cells(make_napari_viewer_proxy):
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.io import read_sample

    sb = _real("steinbock_imc_testdata")
    name = "20210305_NE_mockData2_001"
    viewer = make_napari_viewer_proxy()
    layers = add_sample_layers(viewer, read_sample(sb / "img" / f"{name}.tiff", mask=sb / "masks_deepcell" / f"{name}.tiff"))
    lab = next(ly for ly in layers if ly.metadata.get(META_ROLE) == "labels")
    import pandas as pd

    assert session_for(viewer).sample_of(lab).n_cells == len(pd.read_csv(sb / "intensities_deepcell" / f"{name}.csv"))
    assert "index" in lab.features and len(lab.features) == session_for(viewer).sample_of(lab).n_cells
