"""Edit operations, incremental re-measurement, table consistency, undo, saving and reopening."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial.analysis.quantify import quantify
from napari_carspatial.editing import segmentation as se
from napari_carspatial.model import get_log, instance_ids


@pytest.fixture(scope="module")
def demo_base():
    from napari_carspatial.datasets import demo_sample

    return demo_sample(size=512)


@pytest.fixture()
def demo(demo_base):
    import copy

    s = copy.copy(demo_base)
    s.table = demo_base.table.copy()
    return s


def _touching_pair(lab):
    a, b = lab[:, :-1], lab[:, 1:]
    m = (a != b) & (a > 0) & (b > 0)
    i = np.flatnonzero(m.ravel())[len(np.flatnonzero(m.ravel())) // 2]
    y, x = divmod(i, a.shape[1])
    return int(a[y, x]), int(b[y, x])


def _check_rows(sample, ids):
    """Table rows of ``ids`` equal a full re-quantification of the edited mask."""
    full = quantify(sample.image[0].compute(), sample.labels[0].compute(), channel_names=sample.channel_names)
    se.check_consistency(sample.labels[0], sample.table)
    t = sample.table
    tid = instance_ids(t)
    for cid in ids:
        if cid not in set(tid.tolist()):
            continue
        k, kf = int(np.flatnonzero(tid == cid)[0]), int(np.flatnonzero(full.obs["cell_id"].to_numpy() == cid)[0])
        np.testing.assert_allclose(np.asarray(t.X[k]), full.X[kf], rtol=1e-5)
        assert t.obs["area"].iloc[k] == full.obs["area"].iloc[kf]
        np.testing.assert_allclose(t.obsm["spatial"][k], full.obsm["spatial"][kf])


def test_all_operations_on_demo(demo):
    ed = se.SegmentationEditor(demo)
    n0 = demo.table.n_obs
    untouched = demo.table.obs.set_index("cell_id")["cell_type"].copy()
    r = ed.region(100, 400, 100, 400)
    c1, c2 = _touching_pair(r.data)
    areas = {c: int((r.data == c).sum()) for c in (c1, c2)}
    types = demo.table.obs.set_index("cell_id").loc[[c1, c2], "cell_type"].astype(str).tolist()
    # merge: the bigger cell's id stays; type covering most area; reported and audited
    _, res = ed.apply(r, se.merge_cells, [c1, c2])
    kept = max(areas, key=areas.get)
    assert res.removed == [min(areas, key=areas.get)]
    assert res.merged
    assert res.merged[0][0] == kept
    assert demo.table.obs.set_index("cell_id").loc[kept, "cell_type"] == types[[c1, c2].index(kept)]
    assert demo.table.n_obs == n0 - 1
    _check_rows(demo, [kept])
    # split by a line through the merged cell
    ys, xs = np.nonzero(r.data == kept)
    cy, cx = ys.mean(), xs.mean()
    vertical = np.ptp(xs) >= np.ptp(ys)
    line = [(cy - 40, cx), (cy + 40, cx)] if vertical else [(cy, cx - 40), (cy, cx + 40)]
    _, res = ed.apply(r, se.split_cell_by_line, kept, line, ed.new_id)
    assert len(res.added) == 1
    assert kept in res.updated
    assert demo.table.obs.set_index("cell_id").loc[res.added[0], "cell_type"] == se.UNASSIGNED
    _check_rows(demo, res.affected)
    # split by seeds (watershed on the nuclear channel)
    ys, xs = np.nonzero(r.data == kept)
    seeds = [(ys[0], xs[0]), (ys[-1], xs[-1])]
    dapi = np.asarray(demo.image[0][0, 100:400, 100:400])
    _, res = ed.apply(r, se.split_cell_by_seeds, kept, seeds, ed.new_id, intensity=dapi)
    assert len(res.added) == 1
    _check_rows(demo, res.affected)
    # delete, draw (new id = max + 1), grow, shrink
    victim = int(r.data[150, 150]) or int(np.unique(r.data)[5])
    _, res = ed.apply(r, se.delete_cells, [victim])
    assert res.removed == [victim]
    top = int(instance_ids(demo.table).max())
    nid = ed.new_id()
    assert nid > top
    _, res = ed.apply(r, se.draw_cell, [(10, 10), (10, 30), (30, 30), (30, 10)], nid, overwrite=True)
    assert nid in res.added
    _, res = ed.apply(r, se.grow_cell, nid, 3)
    a1 = demo.table.obs.set_index("cell_id").loc[nid, "area"]
    _, res = ed.apply(r, se.shrink_cell, nid, 2)
    assert demo.table.obs.set_index("cell_id").loc[nid, "area"] < a1
    _check_rows(demo, res.affected)
    # untouched cells keep their annotations; the audit has one row per commit (+ merge type)
    now = demo.table.obs.set_index("cell_id")["cell_type"]
    common = untouched.index.intersection(now.index).difference(pd_index(res, ed))
    assert (now.loc[common].astype(str) == untouched.loc[common].astype(str)).mean() > 0.99
    log = get_log(demo.table)
    assert {"segmentation.merge_cells", "segmentation.merge_type", "segmentation.delete_cells",
            "segmentation.draw_cell", "segmentation.shrink_cell"} <= set(log["action"])
    assert demo.table.uns["carspatial"]["stale"]
    assert len(demo.table.uns["carspatial"]["stale_regions"]) >= 6


def pd_index(res, ed):
    import pandas as pd

    return pd.Index([], dtype=np.int64)


def test_undo_restores_cells_and_annotations(demo):
    ed = se.SegmentationEditor(demo)
    r = ed.region(0, 256, 0, 256)
    before_lab = r.data.copy()
    victim = int(np.unique(r.data[r.data > 0])[3])
    t_before = demo.table.obs.set_index("cell_id").loc[victim, "cell_type"]
    _, res = ed.apply(r, se.delete_cells, [victim])
    assert victim not in set(instance_ids(demo.table).tolist())
    r.data[:] = before_lab  # what napari's undo does to the layer
    res = ed.commit(r, action="segmentation.undo")
    assert res.added == [victim]
    assert demo.table.obs.set_index("cell_id").loc[victim, "cell_type"] == t_before
    se.check_consistency(demo.labels[0], demo.table)


def test_new_cells_get_gating_call(demo):
    from napari_carspatial.analysis.gating import Gate, GatingScheme, PhenotypeRule, store_gating

    scheme = GatingScheme(gates={"CD3": Gate("CD3", threshold=-1.0)}, rules=[PhenotypeRule("T", [("CD3", "+")])])
    store_gating(demo.table, scheme, key="gated")
    ed = se.SegmentationEditor(demo)
    r = ed.region(0, 200, 0, 200)
    nid = ed.new_id()
    _, res = ed.apply(r, se.draw_cell, [(5, 5), (5, 20), (20, 20), (20, 5)], nid, overwrite=True)
    row = demo.table.obs.set_index("cell_id").loc[nid]
    assert row["gated"] == "T"
    assert row["cell_type"] == se.UNASSIGNED


def test_undo_delete_keeps_the_gating_call(demo):
    """A deleted cell brought back by undo keeps its stored call; rules only run on new cells."""
    from napari_carspatial.analysis.gating import Gate, GatingScheme, PhenotypeRule, store_gating

    # gate high so most cells are "Other"; then hand-edit one cell's call as a reviewer would
    scheme = GatingScheme(gates={"CD3": Gate("CD3", threshold=1e9)}, rules=[PhenotypeRule("T", [("CD3", "+")])])
    store_gating(demo.table, scheme, key="gated")
    ed = se.SegmentationEditor(demo)
    r = ed.region(0, 256, 0, 256)
    before_lab = r.data.copy()
    victim = int(np.unique(r.data[r.data > 0])[5])
    obs = demo.table.obs
    col = obs["gated"]
    if "T (reviewed)" not in col.cat.categories:
        obs["gated"] = col.cat.add_categories(["T (reviewed)"])
    obs.loc[obs["cell_id"] == victim, "gated"] = "T (reviewed)"
    ed.apply(r, se.delete_cells, [victim])
    r.data[:] = before_lab
    ed.commit(r, action="segmentation.undo")
    assert demo.table.obs.set_index("cell_id").loc[victim, "gated"] == "T (reviewed)"


def test_save_and_reopen(demo, tmp_path):
    from napari_carspatial.datasets import write_demo
    from napari_carspatial.io import read_sample, write_table
    from napari_carspatial.io.mask_store import save_corrected_mask

    files = write_demo(tmp_path, size=384)
    s = read_sample(files["image"], mask=files["mask"], table=files["table"])
    ed = se.SegmentationEditor(s)
    r = ed.region(0, 384, 0, 384)
    c1, c2 = _touching_pair(r.data)
    ed.apply(r, se.merge_cells, [c1, c2])
    out = save_corrected_mask(ed.store)
    assert out.name.endswith(".corrected.zarr")
    assert out.parent == files["mask"].parent
    tpath = write_table(s.table, tmp_path / "corrected.h5ad")
    s2 = read_sample(files["image"], mask=out, table=tpath)
    assert s2.table.n_obs == s.table.n_obs
    np.testing.assert_array_equal(s2.labels[0].compute(), s.labels[0].compute())
    assert "segmentation.merge_cells" in set(get_log(s2.table)["action"])


def test_operations_on_steinbock(steinbock_dir, tmp_path):
    import shutil

    from napari_carspatial.io import read_sample

    # edit a copy: the shared real data must never get a working copy next to it
    work = tmp_path / "steinbock"
    shutil.copytree(steinbock_dir, work)
    s = [x for x in read_sample(work) if x.name.endswith("mockData2_001")][0]
    ed = se.SegmentationEditor(s)
    H, W = s.shape_yx
    r = ed.region(0, H, 0, W)
    c1, c2 = _touching_pair(r.data)
    _, res = ed.apply(r, se.merge_cells, [c1, c2])
    assert res.removed
    _check_rows(s, res.affected)
    cid = res.merged[0][0] if res.merged else max(c1, c2)
    ys, xs = np.nonzero(r.data == cid)
    _, res = ed.apply(r, se.split_cell_by_seeds, cid, [(ys[0], xs[0]), (ys[-1], xs[-1])], ed.new_id,
                      intensity=np.asarray(s.image[0][-1]))
    _check_rows(s, res.affected)
    _, res = ed.apply(r, se.delete_cells, [int(np.unique(r.data)[1])])
    se.check_consistency(s.labels[0], s.table)


def test_append_rows_matches_pandas():
    """The numpy row removal / append gives what AnnData subsetting + pandas concat give."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 50
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1), "area": rng.integers(5, 50, n),
                        "ecc": rng.random(n), "flag": rng.random(n) > 0.5, "note": ["x"] * n,
                        "cell_type": pd.Categorical(rng.choice(["a", "b"], n))},
                       index=[str(i) for i in range(1, n + 1)])
    t = ad.AnnData(X=rng.random((n, 3)).astype(np.float32), obs=obs,
                   obsm={"spatial": rng.random((n, 2)), "bbox": rng.integers(0, 9, (n, 4))})
    t.obsp["g"] = np.eye(n)
    t.uns["cell_type_colors"] = np.array(["#ff0000", "#00ff00"], dtype=object)
    new = pd.DataFrame({"cell_id": [60, 61], "area": [3.5, 4.0], "ecc": [0.1, 0.2], "flag": [True, False],
                        "note": ["", ""], "cell_type": ["unassigned", "a"]}, index=["60", "61"])
    rows = ad.AnnData(X=np.ones((2, 3), np.float32), obs=new,
                      obsm={"spatial": np.zeros((2, 2)), "bbox": np.ones((2, 4), np.int64)})
    keep = np.ones(n, bool)
    keep[[0, 7, 8, 30, n - 1]] = False
    ref_obs = pd.concat([t.obs[keep], new.assign(cell_type=pd.Categorical(new["cell_type"]))])
    out = se.append_rows(t, rows, keep=keep)
    assert out is not t
    assert t.n_obs == n
    assert out.n_obs == keep.sum() + 2
    assert list(out.obs_names) == list(ref_obs.index)
    for c in ["cell_id", "area", "ecc", "flag", "note"]:
        np.testing.assert_array_equal(out.obs[c].to_numpy(), ref_obs[c].to_numpy())
    assert list(out.obs["cell_type"].astype(str)) == list(ref_obs["cell_type"].astype(str))
    assert "unassigned" in out.obs["cell_type"].cat.categories
    assert len(out.uns["cell_type_colors"]) == len(out.obs["cell_type"].cat.categories)
    np.testing.assert_array_equal(out.X, np.concatenate([t.X[keep], rows.X]))
    np.testing.assert_array_equal(out.obsm["bbox"], np.concatenate([t.obsm["bbox"][keep], rows.obsm["bbox"]]))
    assert out.obsm["bbox"].dtype == t.obsm["bbox"].dtype
    assert len(out.obsp.keys()) == 0
    assert "g" in t.obsp
    out.obs["cell_type"] = out.obs["cell_type"].cat.add_categories(["z"])  # independent of t
    assert "z" not in t.obs["cell_type"].cat.categories


def test_save_corrected_is_one_act(tmp_path):
    """The headless "Save table and corrected mask…": the mask next to the original (never over
    it), the table whose provenance names the corrected mask; the sample's own files refused."""
    import anndata as ad

    from napari_carspatial.datasets import write_demo
    from napari_carspatial.io import read_sample
    from napari_carspatial.model import SampleError

    files = write_demo(tmp_path, size=256)
    s = read_sample(files["image"], mask=files["mask"], table=files["table"])
    mask_before = files["mask"].read_bytes()
    ed = se.SegmentationEditor(s)
    assert not ed.store_ready and not ed.has_edits
    r = ed.region(0, 256, 0, 256)
    assert ed.store_ready
    c1, c2 = _touching_pair(r.data)
    ed.apply(r, se.merge_cells, [c1, c2])
    assert ed.has_edits
    for own in (files["table"], files["mask"]):
        with pytest.raises(SampleError, match="never overwritten"):
            se.save_corrected(ed, own)
    want_mask = se.corrected_mask_path(s, tmp_path / "out.h5ad")
    assert want_mask.parent == files["mask"].parent and want_mask.name.endswith(".corrected.zarr")
    seen = []
    mask_out, table_out = se.save_corrected(ed, tmp_path / "out.h5ad", progress=lambda d, t: seen.append((d, t)))
    assert mask_out == want_mask and table_out.is_file()
    assert files["mask"].read_bytes() == mask_before            # the original mask is untouched
    prov = ad.read_h5ad(table_out).uns["carspatial"]["provenance"]
    assert str(mask_out) in str(prov["mask"])
    assert seen and seen[-1][0] == seen[-1][1]                  # checksum progress reached the end
    s2 = read_sample(files["image"], mask=mask_out, table=table_out)
    np.testing.assert_array_equal(s2.labels[0].compute(), s.labels[0].compute())
    se.check_consistency(s2.labels[0], s2.table)
    with pytest.raises(SampleError):
        se.save_corrected(ed, table_out)                        # exists, no overwrite
