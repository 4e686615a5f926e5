"""The headless measurement tables (model/measurements.py) against pandas on the same table."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.model import ROI, Sample
from napari_carspatial.model.measurements import MISSING, CellMeasurements, region_measurements


def _sample(n=200, seed=0, px=0.5, curated=True):
    rng = np.random.default_rng(seed)
    types = rng.choice(["Tumor", "CAR T", "Macrophage"], size=n)
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1) * 2, "cell_type": pd.Categorical(types),
                        "area": rng.uniform(20, 80, n)}, index=[f"c{i}" for i in range(n)])
    if curated:
        cur = types.copy()
        cur[:10] = "B cell"
        obs["cell_type_curated"] = pd.Categorical(cur)
        obs["excluded"] = np.arange(n) % 17 == 0
    X = rng.random((n, 3)).astype(np.float32)
    t = ad.AnnData(X=X, obs=obs)
    t.var_names = ["CD3", "CAR", "PanCK"]
    t.obsm["spatial"] = rng.uniform(0, 100, (n, 2))
    lab = np.zeros((100, 100), np.uint32)
    s = Sample("m", image=[np.zeros((1, 100, 100), np.float32)], channel_names=["DAPI"], pixel_size_um=px,
               labels=[lab], table=t)
    s.rois.append(ROI("left", np.array([[0, 0], [0, 50], [100, 50], [100, 0]], float), cls="Tumor core"))
    s.rois.append(ROI("empty", np.array([[200, 200], [200, 210], [210, 210]], float), cls="Stroma"))
    return s


def test_columns_with_units_and_the_cli_type_column():
    m = CellMeasurements(_sample())
    titles = [c.title for c in m.columns]
    assert titles[:4] == ["cell id", "type", "curated type", "excluded"]
    assert "area (µm²)" in titles
    assert "x (µm)" in titles
    assert titles[-3:] == ["CD3 mean", "CAR mean", "PanCK mean"]
    assert (m.type_key, m.curated_key) == ("cell_type", "cell_type_curated")
    s = _sample(px=None)
    assert "area (px²)" in [c.title for c in CellMeasurements(s).columns]


def test_values_text_and_area_in_um2():
    s = _sample()
    m = CellMeasurements(s)
    j = m.index_of("area")
    np.testing.assert_allclose(m.values(j), s.table.obs["area"].to_numpy() * 0.25)
    assert m.text(3, 0) == str(int(s.table.obs["cell_id"].iloc[3]))
    assert m.text(0, m.index_of("curated")) == "B cell"
    k = m.index_of("marker:CAR")
    np.testing.assert_allclose(m.values(k), s.table.X[:, 1])
    s.table.obs["area"] = s.table.obs["area"].astype(float)
    s.table.obs.iloc[5, s.table.obs.columns.get_loc("area")] = np.nan
    assert CellMeasurements(s).text(5, j) == MISSING     # never "nan"


@pytest.mark.parametrize("key", ["area", "marker:PanCK", "curated", "cell_id"])
@pytest.mark.parametrize("descending", [False, True])
def test_order_matches_pandas(key, descending):
    s = _sample()
    m = CellMeasurements(s)
    j = m.index_of(key)
    rows = np.flatnonzero(np.arange(s.table.n_obs) % 3 != 0)
    got = m.order(j, rows, descending=descending)
    frame = m.to_frame().iloc[rows]
    col = frame.columns[j]
    ref = frame[col].astype(str) if m.columns[j].kind == "category" else frame[col]
    expected = ref.sort_values(ascending=not descending, kind="stable").index.to_numpy()
    np.testing.assert_array_equal(m.values(j)[got], m.values(j)[expected])


def test_mask_filters_by_class_roi_region():
    s = _sample()
    from napari_carspatial.model.curation import Curation

    cur = Curation(s.table, reviewer="r", rois=s.rois)
    cur.update_roi_membership()
    obs = s.table.obs
    m = CellMeasurements(s)
    got = m.mask(curated="CAR T")
    np.testing.assert_array_equal(got, (obs["cell_type_curated"] == "CAR T").to_numpy())
    inside = m.mask(roi="left")
    assert 0 < inside.sum() < len(inside)
    np.testing.assert_array_equal(inside, (obs["roi"].astype(str) == "left").to_numpy())
    np.testing.assert_array_equal(m.mask(region="Tumor core"), inside)
    np.testing.assert_array_equal(m.mask(roi="left", curated="Tumor"),
                                  inside & (obs["cell_type_curated"] == "Tumor").to_numpy())
    with pytest.raises(KeyError):
        m.mask(nope="x")


def test_region_rows_area_counts_density():
    s = _sample()
    df = region_measurements(s).set_index("region")
    t = s.table
    yx = np.asarray(t.obsm["spatial"])[:, ::-1]
    inside = yx[:, 1] < 50            # the "left" rectangle: x < 50 px (y 0..100)
    kept = inside & ~t.obs["excluded"].to_numpy()
    area_mm2 = 100 * 50 * 0.25 / 1e6
    assert df.loc["left", "area (mm²)"] == pytest.approx(area_mm2)
    assert df.loc["left", "cells"] == kept.sum()
    assert df.loc["left", "excluded"] == (inside & t.obs["excluded"].to_numpy()).sum()
    n_car = (kept & (t.obs["cell_type_curated"] == "CAR T").to_numpy()).sum()
    assert df.loc["left", "CAR T cells"] == n_car
    assert df.loc["left", "CAR T per mm²"] == pytest.approx(n_car / area_mm2)
    assert df.loc["empty", "cells"] == 0                      # an empty region says 0 over a known area
    assert df.loc["empty", "CAR T per mm²"] == 0.0
    assert "area (px²)" not in df.columns


def test_csv_export_in_view_order(tmp_path):
    s = _sample()
    m = CellMeasurements(s)
    rows = m.order(m.index_of("area"), np.flatnonzero(m.mask(type="Tumor")), descending=True)
    n = m.to_csv(tmp_path / "cells.csv", rows)
    back = pd.read_csv(tmp_path / "cells.csv")
    assert n == len(back) == len(rows)
    assert list(back["cell id"]) == [m.cell_id(r) for r in rows]
    assert set(back["type"]) == {"Tumor"}
    assert back["area (µm²)"].is_monotonic_decreasing
