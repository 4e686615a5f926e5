"""Issue 14 latency (lat): fast paths equal their references on small samples.

* ``Curation.progress`` (its region masks kept while the regions and a fingerprint of the
  positions are equal) equals the same count with nothing kept, after every kind of edit and
  after changes made behind the session's back;
* the display levels read one cached tile with a halo in both modes and, with ``interior``,
  give a cell's inside its own code in outline mode: equal to ``codes_pyramid`` (the dask
  reference) for random masks, boxes and both modes.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial._napari.lut import (
    LutState,
    TileCache,
    category_lut,
    codes_pyramid,
    lut_pyramid,
)
from napari_carspatial.editing import CurationSession
from napari_carspatial.model import Sample

TYPES = ["Tumor", "CAR T", "Stroma"]


def _sample(n=300, seed=0):
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1),
                        "cell_type": pd.Categorical(rng.choice(TYPES, n), categories=TYPES)},
                       index=[f"c{i}" for i in range(n)])
    t = ad.AnnData(X=rng.random((n, 3), dtype=np.float32), obs=obs)
    t.obsm["spatial"] = rng.uniform(0, 100, (n, 2))
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region", "region": "r"}
    return Sample("S1", table=t)


def _same_progress(a, b):
    assert {k: v for k, v in a.items() if k != "rois"} == {k: v for k, v in b.items() if k != "rois"}
    pd.testing.assert_frame_equal(a["rois"], b["rois"])


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))


def test_progress_with_kept_region_masks_equals_a_fresh_count_after_every_edit():
    s = _sample()
    cs = CurationSession(s, reviewer="t", autosave=False)

    def fresh():
        cs.curation._roi_mask_cache = None   # nothing kept: every region tested against every cell
        return cs.curation.progress()

    def check():
        _same_progress(cs.progress(), fresh())
        cs.progress()
        _same_progress(cs.progress(), fresh())   # with the masks kept from the call before

    check()
    cs.add_roi([[0, 0], [0, 60], [60, 60], [60, 0]], name="core 1", cls="tumor core")
    check()
    cs.select(np.arange(0, 300, 3))
    cs.assign("CAR T")
    check()
    cs.exclude("fold")
    check()
    cs.undo()
    check()
    cs.select_polygon([[0, 0], [0, 60], [60, 60], [60, 0]])
    cs.confirm()
    check()
    cs.mark_roi_reviewed(cs.curation.rois[0].id)
    check()
    cs.undo()
    cs.undo()
    check()
    # changes behind the session's back: a column written in place, a cell moved in place
    s.table.obs.loc[s.table.obs_names[:7], "reviewed"] = True
    check()
    s.table.obsm["spatial"][:20] = 99.0
    check()
    cs.remove_roi(cs.curation.rois[0].id)
    check()
    # the answer is a copy: changing it changes nothing kept
    p = cs.progress()
    p["rois"].loc[:, "cells"] = -1
    p["n_reviewed"] = -1
    _same_progress(cs.progress(), fresh())


def _mask(rng, shape=(70, 90), n=40):
    lab = np.zeros(shape, np.uint32)
    ids = rng.choice(np.arange(1, 5000), n, replace=False)
    for cid in ids:
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(3, 15, 2)
        lab[y:y + h, x:x + w] = cid
    return lab


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_levels_with_interior_codes_equal_the_dask_reference(seed):
    rng = np.random.default_rng(seed)
    lab = _mask(rng)
    levels = [lab, lab[::2, ::2]]
    ids = np.unique(lab)
    ids = ids[ids > 0]
    codes = rng.integers(-1, 3, ids.size)    # -1: missing
    n = 3
    lut = category_lut(ids, codes, n_codes=2 * n + 1)
    cache = TileCache()
    for outline_only in (False, True, False, True):
        for interior in (0, n):
            state = LutState(lut, outline_only=outline_only, interior=interior)
            got_levels = lut_pyramid(levels, state, cache)
            ref = [np.asarray(x) for x in codes_pyramid(levels, lut, outline_only=outline_only, interior=interior)]
            for got, want in zip(got_levels, ref, strict=True):
                np.testing.assert_array_equal(np.asarray(got), want)
                for _ in range(6):
                    y0, x0 = rng.integers(0, want.shape[0]), rng.integers(0, want.shape[1])
                    y1, x1 = rng.integers(y0, want.shape[0] + 1), rng.integers(x0, want.shape[1] + 1)
                    np.testing.assert_array_equal(got[y0:y1, x0:x1], want[y0:y1, x0:x1])
    # interior codes are the cell's code + n, only inside cells, only in outline mode
    filled = np.asarray(codes_pyramid([lab], lut)[0])
    out = np.asarray(codes_pyramid([lab], lut, outline_only=True, interior=n)[0])
    inside = (out != filled)
    np.testing.assert_array_equal(out[inside], filled[inside] + n)
    assert (filled[inside] > 0).all()
    # the halo-read tile is shared by both modes: switching mode reads nothing new
    cache2 = TileCache()
    st = LutState(lut, outline_only=False, interior=n)
    lvl = lut_pyramid([lab], st, cache2)[0]
    lvl[10:50, 20:70]
    misses = cache2.misses
    st.set(outline_only=True)
    lvl[10:50, 20:70]
    assert cache2.misses == misses


@pytest.mark.parametrize("radius", [3.0, 8.0, 40.0])
def test_neighbors_without_the_tree_equal_the_kdtree(radius):
    """The inspector's neighbours by an x-band search equal the KD-tree's (the reference)."""
    from napari_carspatial._napari.inspect import CellIndex

    s = _sample(n=2000, seed=3)
    fast = CellIndex(s)
    ref = CellIndex(s)
    assert ref.tree is not None   # built: its neighbours come from the KD-tree
    for row in range(0, 2000, 37):
        got = fast.neighbors(row, radius_px=radius)
        want = ref.neighbors(row, radius_px=radius)
        np.testing.assert_array_equal(got, want)
    assert fast._tree is None


def test_kept_median_cell_diameter_follows_area_changes():
    """The outline fade asks for the median cell diameter on every zoom step and edit; the kept
    median equals a fresh one after the areas change in place, get NaNs or the table changes."""
    from napari_carspatial._napari.layers import cell_diameter_world

    s = _sample()
    rng = np.random.default_rng(4)
    s.table.obs["area"] = rng.uniform(20, 200, s.table.n_obs)

    def fresh():
        a = s.table.obs["area"].to_numpy(float)
        a = a[np.isfinite(a) & (a > 0)]
        return float(2 * np.sqrt(np.median(a) / np.pi) * 0.5)

    assert cell_diameter_world(s, 0.5) == fresh()
    assert cell_diameter_world(s, 0.5) == fresh()   # kept
    s.table.obs.iloc[: s.table.n_obs // 2, s.table.obs.columns.get_loc("area")] = 900.0   # in place
    assert cell_diameter_world(s, 0.5) == fresh()
    s.table.obs.iloc[:5, s.table.obs.columns.get_loc("area")] = np.nan
    assert cell_diameter_world(s, 0.5) == fresh()
    s.table.obs.iloc[5:9, s.table.obs.columns.get_loc("area")] = 1.0
    assert cell_diameter_world(s, 0.5) == fresh()
    s.table = s.table[: 100].copy()
    assert cell_diameter_world(s, 0.5) == fresh()


def test_selection_summary_on_codes_equals_value_counts():
    s = _sample(n=600, seed=2)
    cs = CurationSession(s, reviewer="t", autosave=False)
    col = cs.curation.curated_key
    s.table.obs.iloc[::11, s.table.obs.columns.get_loc(col)] = np.nan   # some cells without a type
    rng = np.random.default_rng(7)
    for frac in (0.0, 0.05, 0.5, 1.0):
        cs.select(np.flatnonzero(rng.random(s.table.n_obs) < frac))
        got = cs.selection_summary()
        want = s.table.obs[col][cs.selected].astype(str).value_counts()
        assert got == {str(k): int(v) for k, v in want.items() if v}
        assert list(got.values()) == sorted(got.values(), reverse=True)   # most first
