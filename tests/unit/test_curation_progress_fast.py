"""Curation.progress() (asked after every edit) equals the straightforward count: re-labelled cells
on category codes vs text, ROI cell counts cached by geometry and cell positions (a ROI moved,
cells moved by a segmentation edit, rows added)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from napari_carspatial.model import ROI
from napari_carspatial.model.curation import Curation, _n_changed, _positions_key, roi_contains


def _table(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1),
                        "cell_type": pd.Categorical(rng.choice(["T", "B", "Tumor"], n))}, index=[str(i) for i in range(n)])
    t = ad.AnnData(obs=obs)
    t.obsm["spatial"] = rng.uniform(0, 1000, (n, 2))
    return t


def _reference(cur: Curation) -> dict:
    obs = cur.adata.obs
    yx = cur.cell_yx()
    rev = obs["reviewed"].to_numpy(bool) if "reviewed" in obs else np.zeros(cur.adata.n_obs, bool)
    return {"n_changed": int((obs[cur.type_key].astype(str).to_numpy() != obs[cur.curated_key].astype(str).to_numpy()).sum()),
            "cells": [int(roi_contains(r, yx).sum()) for r in cur.rois],
            "reviewed": [int((roi_contains(r, yx) & rev).sum()) for r in cur.rois]}


def _check(cur):
    p, ref = cur.progress(), _reference(cur)
    assert p["n_changed"] == ref["n_changed"]
    assert p["rois"]["cells"].tolist() == ref["cells"]
    assert p["rois"]["reviewed"].tolist() == ref["reviewed"]


def test_progress_equals_the_reference_through_edits_and_moves():
    t = _table()
    rois = [ROI(name="a", polygon_yx=np.array([[0, 0], [0, 500], [500, 500], [500, 0]], float), cls="Tumor core", id="a"),
            ROI(name="b", polygon_yx=np.array([[200, 200], [200, 900], [900, 600]], float), cls="Stroma", id="b")]
    cur = Curation(t, rois=rois)
    _check(cur)
    cur.assign(np.arange(0, 3000, 7), "CAR T")
    cur.assign(np.arange(0, 100), "T")
    _check(cur)
    cur.confirm(np.arange(50, 400))
    _check(cur)
    rois[0].polygon_yx = np.array([[0, 0], [0, 800], [300, 800], [300, 0]], float)   # the ROI was edited
    _check(cur)
    t.obsm["spatial"][:500] += 300.0                                                  # cells moved in place
    _check(cur)
    cur.undo()
    _check(cur)


def test_n_changed_on_codes_equals_text_comparison():
    rng = np.random.default_rng(3)
    a = pd.Series(pd.Categorical(rng.choice(["x", "y", "z", None], 5000), categories=["x", "y", "z", "unused"]))
    b = pd.Series(pd.Categorical(rng.choice(["y", "x", "w", None], 5000), categories=["w", "y", "x"]))
    want = int((a.astype(str).to_numpy() != b.astype(str).to_numpy()).sum())
    assert _n_changed(a, b) == want
    assert _n_changed(a.astype(str), b.astype(object)) == int((a.astype(str).to_numpy() != b.astype(str).to_numpy()).sum())


def test_positions_key_changes_with_any_move_and_not_with_a_copy():
    """The ROI masks are kept while this fingerprint is equal: any change a segmentation edit or
    a caller could make in place must change it (one ulp, two rows swapped, a row added)."""
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 5000, (70_001, 2))
    k0 = _positions_key(xy)
    assert _positions_key(xy.copy()) == k0
    moved = xy.copy()
    moved[12_345, 1] = np.nextafter(moved[12_345, 1], np.inf)
    swapped = xy.copy()
    swapped[[5, 6]] = swapped[[6, 5]]
    tail = xy.copy()
    tail[-1, 0] += 1.0
    xy_swapped = xy.copy()
    xy_swapped[:, [0, 1]] = xy_swapped[:, [1, 0]]
    for other in (moved, swapped, tail, xy_swapped, xy[:-1], np.vstack([xy, xy[:1]])):
        assert _positions_key(other) != k0
