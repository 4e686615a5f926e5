"""The run-length quantification path against scikit-image on awkward masks and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import regionprops_table

from napari_carspatial.analysis import _quantify_kernels as K
from napari_carspatial.analysis.quantify import _runs, measure_block, quantify


def _awkward_mask(seed=0):
    """Single pixels, C shapes (several runs per row), holes, cells on every image border,
    a cell split into two pieces, ids far apart."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((90, 130), np.uint32)
    lab[0, 0] = 7  # single pixel in a corner
    lab[10:30, 10:30] = 900_000  # square with a hole
    lab[15:20, 15:20] = 0
    lab[40:60, 5:25] = 12  # C shape: two runs per row in the middle rows
    lab[45:55, 10:25] = 0
    lab[:, 129] = 5  # right border column
    lab[89, :60] = 3  # bottom border row
    lab[60:70, 40:50] = 44  # two pieces of one id
    lab[60:70, 60:70] = 44
    noise = rng.integers(1, 4, (30, 40)) * 1000  # many tiny cells touching each other
    lab[5:35, 80:120] = noise
    return lab


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32])
def test_runs_equal_regionprops(dtype):
    lab = _awkward_mask()
    rng = np.random.default_rng(1)
    img = (rng.random((4, *lab.shape)) * 4000).astype(dtype)
    a = quantify(img, lab)
    ref = regionprops_table(lab.astype(np.int64), np.moveaxis(img, 0, -1),
                            properties=("label", "area", "centroid", "solidity", "intensity_mean",
                                        "axis_major_length", "eccentricity"))
    np.testing.assert_array_equal(a.obs["cell_id"].to_numpy(), ref["label"])
    np.testing.assert_array_equal(a.obs["area"].to_numpy(), ref["area"])
    np.testing.assert_allclose(a.obsm["spatial"][:, 1], ref["centroid-0"], rtol=1e-12)
    np.testing.assert_allclose(a.obsm["spatial"][:, 0], ref["centroid-1"], rtol=1e-12)
    np.testing.assert_allclose(a.obs["solidity"], ref["solidity"], rtol=1e-9)
    np.testing.assert_allclose(a.obs["axis_major_length"], ref["axis_major_length"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.obs["eccentricity"], ref["eccentricity"], rtol=1e-9, atol=1e-9)
    for c in range(4):
        np.testing.assert_allclose(a.X[:, c], ref[f"intensity_mean-{c}"], rtol=1e-6)


def test_dense_and_hashed_ids_agree():
    lab = _awkward_mask()
    img = np.random.default_rng(2).integers(0, 1000, (3, *lab.shape)).astype(np.uint16)
    dense = lab.copy()
    ids = np.unique(lab[lab > 0])
    remap = np.zeros(int(lab.max()) + 1, np.uint32)
    remap[ids] = np.arange(1, ids.size + 1)
    dense = remap[lab]
    r_sparse = _runs(lab, None)
    r_dense = _runs(dense, None)
    np.testing.assert_array_equal(r_sparse[2], r_dense[2])  # same local indices, both sorted by id
    a, b = measure_block(lab, img), measure_block(dense, img)
    np.testing.assert_array_equal(a["sums"], b["sums"])
    np.testing.assert_array_equal(a["convex"], b["convex"])
    np.testing.assert_array_equal(a["n"], b["n"])
    # the hash table alone, against numpy's unique
    labs = np.random.default_rng(3).integers(1, 2**40, 5000)
    local, uniq = K.hash_local(labs)
    u, inv = np.unique(labs, return_inverse=True)
    np.testing.assert_array_equal(uniq, u)
    np.testing.assert_array_equal(local, inv)


def test_nucleus_split_and_empty():
    lab = _awkward_mask()
    nuc = np.zeros_like(lab)
    nuc[::2, ::3] = 1  # nucleus flags that cut runs everywhere
    img = np.random.default_rng(4).integers(0, 500, (2, *lab.shape)).astype(np.uint16)
    out = measure_block(lab, img, nuc)
    ids = out["ids"]
    for j, cid in enumerate(ids):
        m = lab == cid
        mn = m & (nuc > 0)
        assert out["nuc_n"][j] == mn.sum()
        np.testing.assert_array_equal(out["nuc_sums"][:, j], img[:, mn].sum(axis=1))
        np.testing.assert_array_equal(out["sums"][:, j], img[:, m].sum(axis=1))
    empty = measure_block(np.zeros((5, 7), np.uint32), img[:, :5, :7])
    assert empty["ids"].size == 0 and empty["sums"].shape == (2, 0)
