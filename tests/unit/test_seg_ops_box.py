"""The segmentation operations work on the box of the cells they change; on random label crops
they give exactly the pixels and ids of the whole-crop versions they replaced
(``_seg_ops_reference.py``), cells at the crop edge included."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import _seg_ops_reference as ref
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.editing import seg_ops as ops


def _crop(seed, shape=(90, 120)):
    """Voronoi-like cells of ~150 px with background gaps, some touching the crop edge."""
    rng = np.random.default_rng(seed)
    n = 40
    pts = rng.uniform(0, 1, (n, 2)) * shape
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    owner = np.argmin(d, axis=-1)
    ids = rng.choice(np.arange(1, 10_000), n, replace=False).astype(np.uint32)
    lab = ids[owner]
    lab[np.sqrt(d.min(axis=-1)) > 9] = 0
    lab[rng.random(shape) < 0.02] = 0
    return lab, ids, pts


def _ids(start=50_000):
    c = itertools.count(start)
    return lambda: next(c)


def _both(fn_new, fn_ref, lab, *args, new_id=False, **kw):
    a, b = lab.copy(), lab.copy()
    if new_id:
        ra = fn_new(a, *args, _ids(), **kw)
        rb = fn_ref(b, *args, _ids(), **kw)
    else:
        ra = fn_new(a, *args, **kw)
        rb = fn_ref(b, *args, **kw)
    assert ra == rb
    np.testing.assert_array_equal(a, b)
    return a, ra


@pytest.mark.parametrize("seed", range(6))
def test_split_by_line_equals_the_whole_crop_version(seed):
    lab, ids, pts = _crop(seed)
    for k in range(len(ids)):
        cid = int(ids[k])
        ys, xs = np.nonzero(lab == cid)
        if ys.size < 20:
            continue
        cy, cx = ys.mean(), xs.mean()
        for line in ([[ys.min() - 3, cx], [ys.max() + 3, cx + 2]],
                     [[cy, xs.min() - 50], [cy + 1, xs.max() + 50]],           # runs far outside the cell
                     [[cy - 5, cx - 5], [cy + 5, cx + 5], [cy + 5, cx - 9]]):   # a polyline
            _both(ops.split_cell_by_line, ref.ref_split_cell_by_line, lab, cid, np.array(line, float), new_id=True)


def test_split_by_line_refuses_background_and_absent_cells():
    lab, ids, _ = _crop(1)
    line = np.array([[0, 0], [80, 110]], float)
    for cid in (0, 123_456):
        a = lab.copy()
        assert ops.split_cell_by_line(a, cid, line, _ids()) == set()
        np.testing.assert_array_equal(a, lab)


@pytest.mark.parametrize("seed", range(4))
def test_split_by_seeds_equals_the_whole_crop_version(seed):
    lab, ids, pts = _crop(seed)
    rng = np.random.default_rng(seed + 10)
    intensity = rng.normal(size=lab.shape)
    for k in range(len(ids)):
        cid = int(ids[k])
        ys, xs = np.nonzero(lab == cid)
        if ys.size < 30:
            continue
        pick = rng.choice(ys.size, 3, replace=False)
        seeds = np.stack([ys[pick], xs[pick]], 1).astype(float)
        _both(ops.split_cell_by_seeds, ref.ref_split_cell_by_seeds, lab, cid, seeds, new_id=True, intensity=intensity)
        _both(ops.split_cell_by_seeds, ref.ref_split_cell_by_seeds, lab, cid, seeds, new_id=True)


@pytest.mark.parametrize("seed", range(4))
def test_grow_shrink_merge_delete_draw_equal_the_whole_crop_versions(seed):
    lab, ids, pts = _crop(seed)
    for k in range(0, len(ids), 3):
        cid = int(ids[k])
        for n in (1, 2, 3.5, 7):
            _both(ops.grow_cell, ref.ref_grow_cell, lab, cid, n)
            _both(ops.shrink_cell, ref.ref_shrink_cell, lab, cid, n)
        pair = [int(ids[k]), int(ids[(k + 1) % len(ids)]), int(ids[(k + 5) % len(ids)])]
        _both(ops.merge_cells, ref.ref_merge_cells, lab, pair)
        _both(ops.merge_cells, ref.ref_merge_cells, lab, pair[:2], into=pair[1])
        _both(ops.delete_cells, ref.ref_delete_cells, lab, pair)
    poly = np.array([[5, 5], [5, 60], [40, 70], [30, 2]], float)
    _both(ops.draw_cell, ref.ref_draw_cell, lab, poly, 77_777)
    _both(ops.draw_cell, ref.ref_draw_cell, lab, poly, 77_777, overwrite=True)


def test_set_block_keeps_sparse_x_sparse_and_equals_dense():
    import scipy.sparse as sp

    from napari_carspatial.editing.seg_table import set_block

    rng = np.random.default_rng(0)
    dense = rng.random((200, 30)).astype(np.float32)
    dense[dense < 0.8] = 0
    dense[3, 4] = np.nan
    rows, cols = np.array([3, 17, 150]), np.array([4, 5, 29])
    vals = rng.random((3, 3)).astype(np.float32)
    want = dense.copy()
    want[np.ix_(rows, cols)] = vals
    for fmt in ("csr", "csc"):
        got = set_block(sp.csr_matrix(dense).asformat(fmt), rows, cols, vals)
        assert sp.issparse(got) and got.format == fmt and got.dtype == np.float32
        np.testing.assert_array_equal(got.toarray(), want)
    np.testing.assert_array_equal(set_block(dense.copy(), rows, cols, vals), want)


def test_append_rows_keeps_sparse_x_sparse():
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from napari_carspatial.editing.seg_table import append_rows

    rng = np.random.default_rng(1)
    X = sp.random(500, 40, density=0.05, format="csr", random_state=2, dtype=np.float32)
    obs = pd.DataFrame({"cell_id": np.arange(1, 501), "t": pd.Categorical(rng.choice(["a", "b"], 500))},
                       index=[str(i) for i in range(1, 501)])
    base = ad.AnnData(X=X, obs=obs)
    base.obsm["spatial"] = rng.random((500, 2))
    new = ad.AnnData(X=np.full((2, 40), np.nan, np.float32),
                     obs=pd.DataFrame({"cell_id": [600, 601], "t": ["a", "b"]}, index=["600", "601"]))
    new.obsm["spatial"] = rng.random((2, 2))
    keep = np.ones(500, bool)
    keep[[10, 20]] = False
    out = append_rows(base, new, keep=keep)
    assert sp.issparse(out.X) and out.X.shape == (500, 40)
    np.testing.assert_array_equal(out.X[:498].toarray(), X[np.flatnonzero(keep)].toarray())
    assert np.isnan(out.X[498:].toarray()).all()
    assert out.obs["cell_id"].tolist()[-2:] == [600, 601]


def test_commit_on_a_sparse_table_keeps_x_sparse():
    """A split re-measures cells of a table whose X is sparse (an RNA table): X is never densified."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from napari_carspatial.editing import RegionEdit, SegmentationEditor
    from napari_carspatial.model import Sample

    lab = np.zeros((60, 80), np.uint32)
    lab[5:25, 5:25] = 1
    lab[35:55, 10:50] = 3
    ids = [1, 3]
    obs = pd.DataFrame({"cell_id": ids, "cell_type": pd.Categorical(["Tumor", "CAR T"])}, index=["1", "3"])
    X = sp.csr_matrix(np.array([[0, 2, 0], [5, 0, 0]], np.float32))
    t = ad.AnnData(X=X, obs=obs)
    t.var_names = ["DAPI", "GeneA", "GeneB"]
    t.obsm["spatial"] = np.array([[15, 15], [30, 45]], float)
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region", "region": "r"}
    img = np.full((1, 60, 80), 7.0, np.float32)
    s = Sample("sparse", image=[img], channel_names=["DAPI"], labels=[lab], table=t)
    ed = SegmentationEditor(s, reviewer="r")
    edit = RegionEdit(ed, ed.region(0, 60, 0, 80))
    assert edit.split_by_line([[30, 30], [58, 30]]) is not None
    res = edit.commit()
    t2 = s.table
    assert res.added and sp.issparse(t2.X) and t2.n_obs == 3
    row = {int(c): i for i, c in enumerate(t2.obs["cell_id"])}
    x = t2.X.toarray()
    assert x[row[3], 0] == 7.0 and x[row[3], 1] == 0.0          # re-measured DAPI, genes kept
    assert x[row[1]].tolist() == [0.0, 2.0, 0.0]
    new = row[res.added[0]]
    assert x[new, 0] == 7.0 and np.isnan(x[new, 1:]).all()     # a new cell has no gene counts: NaN


# --------------------------------------------------------------------------- the real steinbock masks
ROOT = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
STEINBOCK = REAL / "steinbock_imc_testdata"


def _steinbock_masks():
    if not STEINBOCK.is_dir():
        pytest.skip(f"real data folder {STEINBOCK} is absent")
    import tifffile

    # the largest acquisition (most cells) of each segmentation: DeepCell and ilastik
    name = "20210305_NE_mockData2_001"
    nuclear = list(pd.read_csv(STEINBOCK / "panel.csv")["name"]).index("H3K27Ac")   # DeepCell's nuclear channel
    img = tifffile.imread(STEINBOCK / "img" / f"{name}.tiff")[nuclear].astype(np.float64)
    return [(seg, tifffile.imread(STEINBOCK / f"masks_{seg}" / f"{name}.tiff"), img) for seg in ("deepcell", "ilastik")]


def test_every_operation_equals_the_whole_crop_version_on_the_real_steinbock_masks():
    """Every cell of steinbock's DeepCell and ilastik masks (cells on the image edge, touching
    cells, uint16 ids): split by a vertical and a horizontal line, split by two seeds (on the
    nuclear channel and without), grow, shrink, merge with its neighbour, delete: identical
    pixels and ids to the whole-crop reference."""
    from scipy import ndimage as ndi

    for seg, lab0, img in _steinbock_masks():
        lab = lab0.astype(np.uint32)
        ids = np.unique(lab)
        ids = ids[ids > 0]
        assert ids.size > 30, seg
        n_split = 0
        for cid in ids.tolist():
            ys, xs = np.nonzero(lab == cid)
            cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
            for line in ([[ys.min() - 2, cx], [ys.max() + 2, cx]], [[cy, xs.min() - 2], [cy, xs.max() + 2]]):
                a, got = _both(ops.split_cell_by_line, ref.ref_split_cell_by_line, lab, cid, np.array(line, float),
                               new_id=True)
                n_split += len(got) > 1
            if ys.size >= 4:
                pick = [0, ys.size - 1]
                seeds = np.stack([ys[pick], xs[pick]], 1).astype(float)
                _both(ops.split_cell_by_seeds, ref.ref_split_cell_by_seeds, lab, cid, seeds, new_id=True,
                      intensity=img)
                _both(ops.split_cell_by_seeds, ref.ref_split_cell_by_seeds, lab, cid, seeds, new_id=True)
            for n in (1, 2.5):
                _both(ops.grow_cell, ref.ref_grow_cell, lab, cid, n)
                _both(ops.shrink_cell, ref.ref_shrink_cell, lab, cid, n)
            ring = ndi.binary_dilation(lab == cid) & (lab != cid) & (lab > 0)
            if ring.any():
                _both(ops.merge_cells, ref.ref_merge_cells, lab, [cid, int(lab[ring][0])])
            _both(ops.delete_cells, ref.ref_delete_cells, lab, [cid])
        assert n_split > ids.size // 2, seg   # the lines really cut most cells
        np.testing.assert_array_equal(lab, lab0)   # the input was never touched
