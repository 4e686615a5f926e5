"""CurationSession.follow_table after a segmentation commit that appended rows (issue 14, append):
the new rows' regions equal what a new Curation computes for every cell, the undo stack is kept,
and a commit that dropped rows starts a new Curation."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from napari_carspatial.editing import CurationSession, SegmentationEditor
from napari_carspatial.editing.seg_ops import merge_cells, split_cell_by_line
from napari_carspatial.model import Sample
from napari_carspatial.model.curation import Curation


def _sample():
    lab = (((np.mgrid[0:40, 0:40][0] // 10) * 4 + np.mgrid[0:40, 0:40][1] // 10 + 1) * 2).astype(np.uint32)
    ids = np.unique(lab)
    yx = np.array([[(i // 4) * 10 + 4.5, (i % 4) * 10 + 4.5] for i in range(ids.size)])
    t = ad.AnnData(X=np.ones((ids.size, 1), np.float32),
                   obs=pd.DataFrame({"cell_id": ids, "cell_type": pd.Categorical(["a", "b"] * (ids.size // 2)),
                                     "area": np.full(ids.size, 100.0)}, index=[f"c{i}" for i in ids]))
    t.var_names = ["DAPI"]
    t.obsm["spatial"] = yx[:, ::-1].copy()
    return Sample("s", image=[np.ones((1, 40, 40), np.float32)], channel_names=["DAPI"], labels=[lab],
                  table=t).validate()


def test_follow_an_append_keeps_undo_and_matches_a_new_curation():
    s = _sample()
    cs = CurationSession(s, reviewer="t")
    cs.autosaver.enabled = False
    cs.add_roi(np.array([[-1, -1], [-1, 21], [11, 21], [11, -1]], float), name="R1", cls="Tumor")
    cs.select(np.array([3]))
    cs.assign("a")
    ed = SegmentationEditor(s)
    region = ed.region(0, 40, 0, 40)
    n0 = s.table.n_obs
    _, res = ed.apply(region, split_cell_by_line, 2, [(-1, 4.5), (11, 4.5)], ed.new_id)
    assert res.rows_added == [n0] and not res.rows_removed
    cs.follow_table(rows_added=res.rows_added, rows_removed=res.rows_removed)
    assert cs.curation.adata is s.table and len(cs.selected) == s.table.n_obs
    assert len(cs.curation.undo_stack) == 2
    fresh = Curation(s.table.copy(), rois=list(s.rois), type_key=cs.type_key)   # the reference: every cell
    for k in ("roi", "roi_class"):
        np.testing.assert_array_equal(s.table.obs[k].astype(str).to_numpy(), fresh.adata.obs[k].astype(str).to_numpy())
    assert s.table.obs["roi"].iloc[n0] == "R1"
    cs.undo()
    cs.undo()
    assert not cs.curation.undo_stack
    # a commit that drops a row: a new Curation (rows moved)
    _, res = ed.apply(region, merge_cells, [4, 6])
    assert res.rows_removed
    cs.follow_table(rows_added=res.rows_added, rows_removed=res.rows_removed)
    assert cs.curation.adata is s.table and len(cs.selected) == s.table.n_obs
    cs.select(np.array([0]))
    cs.assign("b")
    assert s.table.obs[cs.curated_key].iloc[0] == "b"
