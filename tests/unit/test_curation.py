"""Curation model: curated column, exclusions, undo/redo, audit trail, review progress, ROIs."""

from __future__ import annotations

import json
import logging
import time

import anndata as ad
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_carspatial.model import ROI, get_log
from napari_carspatial.model.curation import (
    EXCLUDED_KEY,
    REVIEWED_KEY,
    ROI_KEY,
    ROI_UNS_KEY,
    Curation,
    roi_membership,
    rois_from_frame,
)

log = logging.getLogger(__name__)
TYPES = ["Tumor", "CAR T", "Stroma"]


def _table(n=400, seed=0):
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame({
        "cell_id": rng.permutation(np.arange(1, 2 * n + 1))[:n] ,
        "cell_type": pd.Categorical(rng.choice(TYPES, n), categories=TYPES),
    }, index=[f"c{i}" for i in range(n)])
    t = ad.AnnData(X=rng.random((n, 3), dtype=np.float32), obs=obs)
    t.obsm["spatial"] = rng.uniform(0, 100, (n, 2))  # (x, y) px
    t.uns["cell_type_colors"] = np.array(["#d9c7a3", "#ff00ff", "#8c8c8c"], dtype=object)
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region", "region": "r"}
    return t


def test_curated_column_is_separate_and_undo_restores_exactly():
    t = _table()
    orig = t.obs["cell_type"].copy()
    c = Curation(t, reviewer="alice")
    assert c.curated_key == "cell_type_curated"
    assert (t.obs["cell_type_curated"].astype(str) == orig.astype(str)).all()
    rows = np.arange(10, 60)
    c.assign(rows, "Macrophage (new)", note="CD68+ by eye")
    assert "Macrophage (new)" in c.categories
    assert (t.obs["cell_type_curated"].iloc[rows] == "Macrophage (new)").all()
    assert len(t.uns["cell_type_curated_colors"]) == len(c.categories)
    assert t.obs[REVIEWED_KEY].iloc[rows].all()
    assert t.obs[REVIEWED_KEY].sum() == rows.size
    pd.testing.assert_series_equal(t.obs["cell_type"], orig)  # the original is never changed
    c.undo()
    assert c.categories == TYPES  # the new category goes away with its undo
    assert (t.obs["cell_type_curated"].astype(str) == orig.astype(str)).all()
    assert not t.obs[REVIEWED_KEY].any()
    c.redo()
    assert (t.obs["cell_type_curated"].iloc[rows] == "Macrophage (new)").all()
    rows_log = get_log(t)
    assert list(rows_log["action"]) == ["assign", "undo", "redo"]
    assert set(rows_log["reviewer"]) == {"alice"}
    first = rows_log.iloc[0]
    assert json.loads(first["cell_ids"]) == t.obs["cell_id"].iloc[rows].tolist()
    assert json.loads(first["new"]) == "Macrophage (new)"
    old = json.loads(first["old"])  # per cell (aligned with cell_ids) when the old types differ
    assert old == orig.iloc[rows].astype(str).tolist()
    assert first["note"] == "CD68+ by eye"
    assert first["column"] == "cell_type_curated"


def test_exclude_include_confirm_and_progress():
    t = _table()
    c = Curation(t, reviewer="bob")
    c.exclude(np.arange(5), "fold", note="tissue fold")
    assert t.obs[EXCLUDED_KEY].iloc[:5].all()
    assert (t.obs["exclude_reason"].iloc[:5] == "fold").all()
    assert t.obs["exclude_reason"].iloc[5:].isna().all()
    c.include(np.arange(2))
    assert t.obs[EXCLUDED_KEY].sum() == 3
    c.confirm(np.arange(100, 120))
    p = c.progress()
    assert p["n_reviewed"] == 25
    assert p["n_excluded"] == 3
    assert p["n_changed"] == 0
    for _ in range(3):
        c.undo()
    assert not t.obs[EXCLUDED_KEY].any()
    assert not t.obs[REVIEWED_KEY].any()
    assert c.undo() is None
    assert c.can_redo


def test_rois_membership_overlap_undo_and_reviewed_region():
    t = _table()
    rois = []
    c = Curation(t, rois=rois, reviewer="carol")
    a = ROI("core 1", np.array([[0, 0], [0, 60], [60, 60], [60, 0]], float), cls="Tumor core")
    b = ROI("margin 1", np.array([[40, 40], [40, 100], [100, 100], [100, 40]], float), cls="Invasive margin")
    c.add_roi(a)
    c.add_roi(b)
    assert rois == [a, b]  # the sample's list is updated in place
    yx = t.obsm["spatial"][:, ::-1]
    in_a = (yx[:, 0] < 60) & (yx[:, 1] < 60)
    in_b = (yx[:, 0] > 40) & (yx[:, 1] > 40)
    roi = t.obs[ROI_KEY].astype(object)
    assert (roi[in_a & in_b] == "core 1 | margin 1").all()
    assert (roi[in_a & ~in_b] == "core 1").all()
    assert roi[~in_a & ~in_b].isna().all()
    memb = roi_membership(t)
    assert memb["core 1"].to_numpy().tolist() == in_a.tolist()
    c.mark_roi_reviewed(a.id)
    assert t.obs[REVIEWED_KEY].to_numpy()[in_a].all()
    assert c.progress()["rois"].set_index("name").loc["core 1", "marked"]
    c.undo()
    assert not t.obs[REVIEWED_KEY].any()
    assert not c.reviewed_rois
    c.edit_roi(b.id, name="margin east", cls="Stroma")
    assert [r.name for r in rois] == ["core 1", "margin east"]
    c.undo()
    assert [r.name for r in rois] == ["core 1", "margin 1"]
    c.remove_roi("core 1")
    assert [r.name for r in rois] == ["margin 1"]
    assert (t.obs[ROI_KEY].astype(object) != "core 1").all()
    c.undo()
    assert [r.name for r in rois] == ["core 1", "margin 1"]
    back = rois_from_frame(t.uns[ROI_UNS_KEY])
    assert [(r.name, r.cls, r.id) for r in back] == [(r.name, r.cls, r.id) for r in rois]
    np.testing.assert_allclose(back[0].polygon_yx, a.polygon_yx)


def test_saved_table_restores_curation(tmp_path):
    from napari_carspatial.io import read_table, write_table

    t = _table()
    rois = []
    c = Curation(t, rois=rois, reviewer="dana")
    c.assign(np.arange(7), "CAR T")
    c.add_roi(ROI("TLS 1", np.array([[0, 0], [0, 30], [30, 30]], float), cls="TLS"))
    p = write_table(t, tmp_path / "curated.h5ad")
    t2 = read_table(p)
    rois2 = []
    c2 = Curation.from_table(t2, rois=rois2)
    assert c2.curated_key == "cell_type_curated"
    assert c2.type_key == "cell_type"
    assert [r.name for r in rois2] == ["TLS 1"]
    assert (t2.obs["cell_type_curated"].astype(str).to_numpy() == t.obs["cell_type_curated"].astype(str).to_numpy()).all()
    assert list(get_log(t2)["reviewer"]) == ["dana", "dana"]
    assert list(t2.uns["cell_type_curated_colors"]) == list(t.uns["cell_type_curated_colors"])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["assign", "exclude", "confirm", "include", "undo", "redo"]),
                          st.integers(0, 2**31), st.sampled_from(["Tumor", "CAR T", "new A", "new B"])),
                min_size=1, max_size=12))
def test_undo_everything_returns_to_the_start(ops):
    t = _table(n=120)
    c = Curation(t, reviewer="hyp")
    start = t.obs.copy()
    for op, seed, val in ops:
        rows = np.random.default_rng(seed).random(t.n_obs) < 0.3
        if op == "assign":
            c.assign(rows, val)
        elif op == "exclude":
            c.exclude(rows, "artefact")
        elif op == "confirm":
            c.confirm(rows)
        elif op == "include":
            c.include(rows)
        else:
            getattr(c, op)()
    while c.undo() is not None:
        pass
    for col in start.columns:
        pd.testing.assert_series_equal(t.obs[col], start[col], check_categorical=True)
    while c.redo() is not None:  # and redo all of it again works
        pass


def test_100k_selection_reannotated_and_undone_quickly():
    n = 100_000
    rng = np.random.default_rng(3)
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1),
                        "cell_type": pd.Categorical(rng.choice(TYPES, n), categories=TYPES)})
    obs.index = obs.index.astype(str)
    t = ad.AnnData(obs=obs)
    t.obsm["spatial"] = rng.uniform(0, 5000, (n, 2))
    c = Curation(t, reviewer="speed")
    before = t.obs["cell_type_curated"].copy()
    rows = np.arange(n)
    t0 = time.perf_counter()
    c.assign(rows, "CAR T")
    t1 = time.perf_counter()
    c.undo()
    t2 = time.perf_counter()
    assert (t.obs["cell_type_curated"].astype(str) == before.astype(str)).all()
    c.redo()
    assert (t.obs["cell_type_curated"] == "CAR T").all()
    log.warning("100k cells: assign %.3f s, undo %.3f s (audit rows included)", t1 - t0, t2 - t1)
