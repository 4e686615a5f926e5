"""quantify() against scikit-image regionprops and steinbock's tables (exact functions of image + mask)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from napari_carspatial.analysis.quantify import quantify

PROPS = ["label", "area", "centroid", "eccentricity", "solidity", "axis_major_length", "axis_minor_length",
         "intensity_mean", "intensity_median"]


def _voronoi(h, w, n, seed=0, gap=9):
    rng = np.random.default_rng(seed)
    seeds = np.zeros((h, w), np.int32)
    pts = rng.integers(0, [h, w], size=(n, 2))
    seeds[pts[:, 0], pts[:, 1]] = rng.choice(np.arange(1, 10**6), n, replace=False)
    d, ind = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    lab = seeds[ind[0], ind[1]]
    lab[d > gap] = 0
    return lab


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


@pytest.fixture(scope="module")
def synth():
    rng = np.random.default_rng(1)
    lab = _voronoi(240, 300, 120)
    img = (rng.random((3, *lab.shape)) * 1000).astype(np.float32)
    from skimage.measure import regionprops_table

    ref = regionprops_table(lab, np.moveaxis(img, 0, -1), properties=PROPS)
    return lab, img, ref


@pytest.mark.parametrize("chunks", [None, 64, 97])
def test_quantify_equals_regionprops(synth, chunks):
    """Single block and tiled (cells crossing tile borders) give regionprops' numbers."""
    import dask.array as da

    lab, img, ref = synth
    image = img if chunks is None else da.from_array(img, chunks=(3, chunks, chunks))
    a = quantify(image, lab, statistics=("mean", "median", "sum"), chunks=chunks)
    assert np.array_equal(a.obs["cell_id"].to_numpy(), ref["label"])
    assert np.array_equal(a.obs["area"].to_numpy(), ref["area"])
    assert _rel(a.obsm["spatial"][:, 1], ref["centroid-0"]) < 1e-9
    assert _rel(a.obsm["spatial"][:, 0], ref["centroid-1"]) < 1e-9
    for k in ("solidity", "axis_major_length", "axis_minor_length"):
        assert _rel(a.obs[k], ref[k]) < 1e-6, k
    assert np.max(np.abs(a.obs["eccentricity"] - ref["eccentricity"])) < 1e-6
    for c in range(3):
        assert _rel(a.X[:, c], ref[f"intensity_mean-{c}"]) < 1e-6
        assert _rel(a.layers["median"][:, c], ref[f"intensity_median-{c}"]) < 1e-6
        np.testing.assert_allclose(a.layers["sum"][:, c], a.X[:, c] * ref["area"], rtol=1e-6)
    bb = a.obsm["bbox"]
    assert (bb[:, 2] > bb[:, 0]).all() and (bb[:, 3] > bb[:, 1]).all()


def test_quantify_nuclear_compartments_and_crop(synth):
    lab, img, _ = synth
    nuc = ndi.binary_erosion(lab > 0, iterations=3)
    a = quantify(img, lab, nuclear_labels=nuc.astype(np.uint8), pixel_size_um=0.5, channel_names=["A", "B", "C"])
    assert list(a.var_names) == ["A", "B", "C"]
    ids = a.obs["cell_id"].to_numpy()
    # reference by hand for one cell
    cid = ids[5]
    m = lab == cid
    np.testing.assert_allclose(a.layers["nucleus_mean"][5], img[:, m & nuc].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(a.layers["cytoplasm_mean"][5], img[:, m & ~nuc].mean(axis=1), rtol=1e-6)
    assert a.obs["nucleus_area"].iloc[5] == int((m & nuc).sum())
    np.testing.assert_allclose(a.obs["area_um2"], a.obs["area"] * 0.25)
    # a crop with origin and cell_ids gives the same rows as the whole image
    y0, x0, y1, x1 = a.obsm["bbox"][5]
    b = quantify(img[:, y0 - 1:y1 + 1, x0 - 1:x1 + 1], lab[y0 - 1:y1 + 1, x0 - 1:x1 + 1], cell_ids=[cid],
                 origin=(y0 - 1, x0 - 1), channel_names=["A", "B", "C"])
    assert b.n_obs == 1
    np.testing.assert_allclose(b.X[0], a.X[5], rtol=1e-6)
    np.testing.assert_allclose(b.obsm["spatial"][0], a.obsm["spatial"][5])
    np.testing.assert_array_equal(b.obsm["bbox"][0], a.obsm["bbox"][5])
    assert b.obs["solidity"].iloc[0] == pytest.approx(a.obs["solidity"].iloc[5])


def test_quantify_shape_only_and_empty():
    lab = np.zeros((20, 20), np.uint16)
    a = quantify(None, lab)
    assert a.n_obs == 0
    lab[2:5, 3:9] = 7
    a = quantify(None, lab)
    assert a.obs["area"].tolist() == [18]
    with pytest.raises(ValueError):
        quantify(np.zeros((2, 5, 5)), lab)


def test_quantify_equals_steinbock(steinbock_dir):
    """Means, area, centroids, axes and eccentricity equal steinbock's tables for all 15 images."""
    import tifffile

    n_cells = 0
    for img_path in sorted((steinbock_dir / "img").glob("*.tiff")):
        name = img_path.stem
        img = tifffile.imread(img_path)
        lab = tifffile.imread(steinbock_dir / "masks_deepcell" / f"{name}.tiff")
        inten = pd.read_csv(steinbock_dir / "intensities_deepcell" / f"{name}.csv")
        rp = pd.read_csv(steinbock_dir / "regionprops_deepcell" / f"{name}.csv")
        a = quantify(img, lab, channel_names=list(inten.columns[1:]))
        assert np.array_equal(a.obs["cell_id"].to_numpy(), inten["Object"].to_numpy())
        np.testing.assert_allclose(a.X, inten.iloc[:, 1:].to_numpy(), rtol=1e-6, atol=1e-9)
        assert np.array_equal(a.obs["area"].to_numpy(), rp["area"].to_numpy())
        np.testing.assert_allclose(a.obsm["spatial"][:, 1], rp["centroid-0"], rtol=1e-9)
        np.testing.assert_allclose(a.obsm["spatial"][:, 0], rp["centroid-1"], rtol=1e-9)
        for k in ("axis_major_length", "axis_minor_length"):
            np.testing.assert_allclose(a.obs[k], rp[k], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(a.obs["eccentricity"], rp["eccentricity"], atol=1e-6)
        n_cells += a.n_obs
    assert n_cells == 404
