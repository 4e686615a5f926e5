"""Readers on real data nobody here made (skipped where ../shared/data/real is absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.io import detect_format, read_sample, read_table
from napari_carspatial.model import instance_ids, pixel_size_um

CYTO_NAMES = ["H3", "CD99", "PIN", "CD8a", "CDH"]
STEINBOCK_NAMES = ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]


def _assert_ids_match(s):
    mask_ids = np.unique(s.labels[0].compute())
    mask_ids = mask_ids[mask_ids > 0]
    ids = instance_ids(s.table)
    assert len(ids) == len(np.unique(ids))  # exactly one row per id
    np.testing.assert_array_equal(np.sort(ids), mask_ids)


@pytest.fixture(scope="module")
def cyto_samples(cytomapper_dir):
    out = []
    for n in ("E34", "G01", "J02"):
        out.append(read_sample(cytomapper_dir / "images" / f"{n}_imc.tiff",
                               mask=cytomapper_dir / "masks" / f"{n}_mask.tiff",
                               table=cytomapper_dir / "cells.csv", pixel_size_um=1.0))
    return out


def test_cytomapper(cyto_samples, cytomapper_dir):
    assert sum(s.n_cells for s in cyto_samples) == 362
    assert [s.n_cells for s in cyto_samples] == [113, 122, 127]
    for s in cyto_samples:
        assert s.channel_names == CYTO_NAMES and s.image[0].shape == (5, 100, 100)
        assert list(s.table.var_names) == CYTO_NAMES
        assert s.pixel_size_um == 1.0 and pixel_size_um(s.table) == 1.0
        _assert_ids_match(s)
        ids = np.sort(instance_ids(s.table))
        assert not np.array_equal(ids, np.arange(1, len(ids) + 1))  # original, non-consecutive ids
        assert "CellType" in s.table.obs
    # interior cells: table counts equal the mean of the pixels under the mask
    s = cyto_samples[0]
    lab = s.labels[0].compute()
    img = s.image[0].compute()
    obs = s.table.obs
    interior = ~obs["touches_crop_border"].astype(bool).to_numpy()
    ids = instance_ids(s.table)[interior]
    flat = lab.ravel()
    for c in range(5):
        sums = np.bincount(flat, weights=img[c].ravel().astype(float), minlength=int(flat.max()) + 1)
        n = np.bincount(flat, minlength=int(flat.max()) + 1)
        np.testing.assert_allclose(sums[ids] / n[ids], s.table.X[interior, c], rtol=1e-5)


def test_cytomapper_table_saves_and_reads_back(cyto_samples, tmp_path):
    """The real table's id column (CellNb) is not also the index name, so it can be written."""
    from napari_carspatial.io import write_table

    s = cyto_samples[0]
    assert s.table.obs.index.name is None
    out = write_table(s.table, tmp_path / "curated.h5ad")
    back = read_table(out)
    assert back.n_obs == s.n_cells
    np.testing.assert_array_equal(instance_ids(back), instance_ids(s.table))
    assert list(back.obs["CellType"]) == list(s.table.obs["CellType"])


def test_cytomapper_without_pixel_size(cytomapper_dir):
    s = read_sample(cytomapper_dir / "images" / "G01_imc.tiff", mask=cytomapper_dir / "masks" / "G01_mask.tiff",
                    table=cytomapper_dir / "cells.csv")
    assert s.pixel_size_um is None and s.n_cells == 122


@pytest.fixture(scope="module")
def steinbock_samples(steinbock_dir):
    return read_sample(steinbock_dir)


def test_steinbock_deepcell(steinbock_samples, steinbock_dir):
    assert detect_format(steinbock_dir) == "steinbock"
    assert len(steinbock_samples) == 15
    assert sum(s.n_cells for s in steinbock_samples) == 404
    for s in steinbock_samples:
        assert s.channel_names == STEINBOCK_NAMES
        assert s.pixel_size_um == 1.0
        _assert_ids_match(s)
        csv = pd.read_csv(steinbock_dir / "intensities_deepcell" / f"{s.name}.csv").set_index("Object")
        got = pd.DataFrame(s.table.X, index=instance_ids(s.table), columns=list(s.table.var_names))
        np.testing.assert_allclose(got.loc[csv.index, STEINBOCK_NAMES].to_numpy(), csv[STEINBOCK_NAMES].to_numpy(),
                                   rtol=1e-6)
        conn = s.table.obsp["spatial_connectivities"]
        nb = pd.read_csv(steinbock_dir / "neighbors_deepcell" / f"{s.name}.csv")
        assert conn.nnz == len(nb)
    first = steinbock_samples[0]
    assert first.name == "20210305_NE_mockData1_001" and first.image[0].shape == (5, 60, 60)
    np.testing.assert_allclose(first.table.X[:2].ravel(), [0.0909090909, 0.1818181818, 0.0909090909, 0.0909090909,
                                                          0.9383063533, 0.1811638049, 0, 0.1428571429, 0.5014482907,
                                                          1.0034694331], rtol=1e-6)
    # regionprops centroids: obsm is (x, y) = (centroid-1, centroid-0)
    rp = pd.read_csv(steinbock_dir / "regionprops_deepcell" / f"{first.name}.csv")
    np.testing.assert_allclose(first.table.obsm["spatial"], rp[["centroid-1", "centroid-0"]].to_numpy())


def test_steinbock_ilastik(steinbock_dir):
    samples = read_sample(steinbock_dir, segmentation="ilastik")
    assert len(samples) == 15 and sum(s.n_cells for s in samples) == 354
    for s in samples:
        _assert_ids_match(s)


def test_steinbock_cells_h5ad(steinbock_dir):
    a = read_table(steinbock_dir / "cells.h5ad")
    assert a.n_obs == 404 and list(a.var_names) == STEINBOCK_NAMES
    # one image's rows, linked to its mask
    name = "20210305_NE_mockData2_001"
    s = read_sample(steinbock_dir / "img" / f"{name}.tiff", mask=steinbock_dir / "masks_deepcell" / f"{name}.tiff",
                    table=steinbock_dir / "cells.h5ad")
    _assert_ids_match(s)
    assert s.channel_names == STEINBOCK_NAMES


def test_steinbock_cells_csv(steinbock_dir):
    a = read_table(steinbock_dir / "cells.csv")  # all images: ids repeat, obs names stay unique
    assert a.n_obs == 404 and a.obs_names.is_unique and list(a.var_names) == STEINBOCK_NAMES
    name = "20210305_NE_mockData3_002"
    s = read_sample(steinbock_dir / "img" / f"{name}.tiff", mask=steinbock_dir / "masks_deepcell" / f"{name}.tiff",
                    table=steinbock_dir / "cells.csv")
    _assert_ids_match(s)
    assert list(s.table.var_names) == STEINBOCK_NAMES
