"""Contact graph from masks: a brute-force reference on the real cytomapper masks, tiling, ids."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_carspatial.analysis.contact import contact_graph, contact_pairs


def _reference(mask, expand_px=0, connectivity=2):
    """Per-label dilation: label a touches b if dilating a by one step hits b (slow, obvious)."""
    from skimage.segmentation import expand_labels

    m = expand_labels(mask, expand_px) if expand_px else mask
    st = ndimage.generate_binary_structure(2, connectivity)
    pairs = set()
    for a in np.unique(m[m > 0]):
        ring = ndimage.binary_dilation(m == a, structure=st) & (m != a) & (m > 0)
        for b in np.unique(m[ring]):
            pairs.add((min(a, b), max(a, b)))
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


@pytest.fixture(scope="module")
def masks(cytomapper_dir):
    import tifffile

    return {s: tifffile.imread(cytomapper_dir / "masks" / f"{s}_mask.tiff") for s in ("E34", "G01", "J02")}


@pytest.mark.parametrize("expand_px,connectivity", [(0, 2), (1, 1), (1, 2), (2, 2)])
def test_contact_pairs_equal_reference_on_real_masks(masks, expand_px, connectivity):
    # CellProfiler leaves a one-pixel background line between cells: without expansion no
    # mask touches another; one pixel of expansion closes the lines (about 2 contacts per cell)
    for m in masks.values():
        got = contact_pairs(m, expand_px=expand_px, connectivity=connectivity)
        np.testing.assert_array_equal(got, _reference(m, expand_px, connectivity))
        n_cells = len(np.unique(m)) - 1
        assert (len(got) == 0) if expand_px == 0 else (len(got) > 1.5 * n_cells)


def test_touching_masks_without_expansion():
    m = np.zeros((6, 9), np.int32)
    m[1:4, 1:4], m[1:4, 4:6], m[4:6, 6:8], m[0, 8] = 7, 3, 9, 11
    np.testing.assert_array_equal(contact_pairs(m), [[3, 7], [3, 9]])  # 3-9 touch diagonally
    np.testing.assert_array_equal(contact_pairs(m, connectivity=1), [[3, 7]])
    np.testing.assert_array_equal(contact_pairs(m), _reference(m))


def test_tiles_and_dask_do_not_change_the_result(masks):
    import dask.array as da

    m = masks["G01"]
    whole = contact_pairs(m, expand_px=3)
    np.testing.assert_array_equal(contact_pairs(m, expand_px=3, tile=17), whole)
    np.testing.assert_array_equal(contact_pairs(da.from_array(m, chunks=23), expand_px=3, tile=31), whole)
    assert len(contact_pairs(m, expand_px=3)) > len(contact_pairs(m))


def test_contact_graph_maps_ids_to_rows(masks):
    m = masks["E34"]
    ids = np.unique(m[m > 0])
    rng = np.random.default_rng(0)
    rows = rng.permutation(ids)[:-5]  # shuffled rows, five mask labels without a row
    a = ad.AnnData(obs=pd.DataFrame({"cell_id": rows}, index=[str(i) for i in rows]))
    com = np.array(ndimage.center_of_mass(np.ones_like(m), m, rows))
    a.obsm["spatial"] = com[:, ::-1]
    g = contact_graph(a, m, expand_px=1)
    adj = g.connectivities
    assert g.method == "contact" and (adj != adj.T).nnz == 0 and adj.diagonal().sum() == 0
    pairs = {tuple(p) for p in contact_pairs(m, expand_px=1)}
    r, c = adj.nonzero()
    got = {(min(rows[i], rows[j]), max(rows[i], rows[j])) for i, j in zip(r, c, strict=False)}
    assert len(got) > 100 and got == {p for p in pairs if p[0] in set(rows) and p[1] in set(rows)}
    # touching cells are close: centroid distance bounded by cell size
    assert g.distances.data.max() < 40


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        contact_pairs(np.zeros((2, 2, 2), np.int32))
    with pytest.raises(ValueError, match="expand_px"):
        contact_pairs(np.zeros((4, 4), np.int32), expand_px=-1)
    assert contact_pairs(np.zeros((4, 4), np.int32)).shape == (0, 2)
