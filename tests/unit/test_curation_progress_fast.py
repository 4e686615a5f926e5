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


def test_the_curated_column_from_codes_equals_the_column_through_objects():
    """The curated copy of the type column (made on the first curation of a table) is built from
    the codes; it equals the copy made through Python objects, missing values, unused and
    non-text categories included."""
    rng = np.random.default_rng(9)
    for values, cats in ((rng.choice(["T", "B", None], 500), ["T", "B", "unused"]),
                         (rng.choice([1, 2, 3], 500), None)):
        t = _table(500)
        t.obs["cell_type"] = pd.Categorical(values, categories=cats)
        src = t.obs["cell_type"].copy()
        cur = Curation(t)
        cat = src.cat.rename_categories([str(c) for c in src.cat.categories])
        want = pd.Categorical(cat.astype(object).where(cat.notna(), None), categories=list(cat.cat.categories))
        got = t.obs[cur.curated_key].array
        assert list(got.categories) == list(want.categories) and got.ordered == want.ordered
        np.testing.assert_array_equal(got.codes, want.codes)
        pd.testing.assert_series_equal(t.obs["cell_type"], src)   # the original is untouched


def test_joined_region_labels_equal_unique_over_rows():
    """The per-cell region labels (``obs["roi"]``) from bit-packed masks equal those from
    ``np.unique(axis=0)`` over the boolean matrix (the reference), overlaps, repeated names and
    cells in no region included; more than 63 regions take the reference path itself."""
    from napari_carspatial.model.curation import ROI_SEP, _joined

    def reference(masks, labels, n):
        combos, inv = np.unique(np.column_stack(masks), axis=0, return_inverse=True)
        names = []
        for c in combos:
            hit = [labels[j] for j in np.flatnonzero(c)]
            names.append(ROI_SEP.join(dict.fromkeys(hit)) if hit else None)
        cats = list(dict.fromkeys(x for x in names if x is not None))
        code_of = {c: i for i, c in enumerate(cats)}
        codes = np.array([code_of[x] if x is not None else -1 for x in names], np.int64)[np.asarray(inv).ravel()]
        return pd.Categorical.from_codes(codes, categories=cats)

    rng = np.random.default_rng(11)
    n = 4000
    for k in (1, 2, 5, 20, 21, 63, 70):
        masks = [rng.random(n) < rng.uniform(0.05, 0.6) for _ in range(k)]
        labels = [f"r{j % 4}" for j in range(k)]     # repeated names, as two ROIs of one class
        got, want = _joined(masks, labels, n), reference(masks, labels, n)
        assert list(got.categories) == list(want.categories), k
        np.testing.assert_array_equal(got.codes, want.codes)
    empty = _joined([], [], 5)
    assert empty.isna().all() and len(empty.categories) == 0
