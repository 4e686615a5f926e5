"""Intervals of region results against statsmodels and scipy, and their coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis.uncertainty import (
    block_bootstrap,
    cart_intervals,
    compare_intervals,
    mover_difference,
    oe_intervals,
    poisson_interval,
    tile_areas,
    tile_codes,
    wilson_interval,
)

K = np.array([0, 1, 3, 9, 30, 70, 540, 5, 17])
N = np.array([9, 9, 30, 9, 70, 70, 540, 5, 1000])


def test_wilson_equals_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for conf in (0.95, 0.9, 0.99):
        lo, hi = wilson_interval(K, N, confidence=conf)
        slo, shi = proportion_confint(K, N, alpha=1 - conf, method="wilson")
        np.testing.assert_allclose(lo, slo, atol=1e-12)
        np.testing.assert_allclose(hi, shi, atol=1e-12)
    lo, hi = wilson_interval(0, 0)
    assert np.isnan(lo) and np.isnan(hi)       # no cells: no interval, never [0, 0]


def test_mover_of_wilson_is_newcombe_as_statsmodels():
    from statsmodels.stats.proportion import confint_proportions_2indep

    rng = np.random.default_rng(1)
    for _ in range(40):
        n1, n2 = rng.integers(1, 200, 2)
        k1, k2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
        l1, h1 = wilson_interval(k1, n1)
        l2, h2 = wilson_interval(k2, n2)
        d, lo, hi = mover_difference(k1 / n1, l1, h1, k2 / n2, l2, h2)
        slo, shi = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
        assert d == pytest.approx(k1 / n1 - k2 / n2)
        assert lo == pytest.approx(slo, abs=1e-10)
        assert hi == pytest.approx(shi, abs=1e-10)


def test_poisson_interval_equals_statsmodels_exact():
    from statsmodels.stats.rates import confint_poisson

    for k in (0, 1, 2, 9, 30, 540):
        lo, hi = poisson_interval(k)
        slo, shi = confint_poisson(k, 1.0, method="exact-c")
        assert lo == pytest.approx(slo, abs=1e-10)
        assert hi == pytest.approx(shi, rel=1e-10)
    assert poisson_interval(0)[0] == 0 and poisson_interval(0)[1] > 3.6   # 0 cells: up to ~3.7, not [0, 0]


def test_block_bootstrap_equals_scipy_percentile():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    counts = rng.poisson(4, 40).astype(float)
    areas = rng.uniform(0.005, 0.01, 40)
    ts = np.column_stack([counts, areas])
    bs = block_bootstrap(ts, lambda s: s[..., 0] / s[..., 1], n_boot=500, seed=11)

    def stat(i, axis=-1):
        return counts[i].sum(axis=axis) / areas[i].sum(axis=axis)

    ref = bootstrap((np.arange(40),), stat, paired=True, vectorized=True, method="percentile", n_resamples=500,
                    rng=np.random.default_rng(11))
    assert bs.estimate == pytest.approx(counts.sum() / areas.sum())
    assert bs.lo == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert bs.hi == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    np.testing.assert_allclose(np.sort(bs.replicates), np.sort(ref.bootstrap_distribution), rtol=1e-12)


def _field(rng, n, side_um, clustered):
    if not clustered:
        return rng.uniform(0, side_um, (n, 2))
    centers = rng.uniform(0, side_um, (max(1, n // 25), 2))
    pts = centers[rng.integers(0, len(centers), n)] + rng.normal(0, 15, (n, 2))
    return np.clip(pts, 0, side_um - 1e-6)


def test_density_interval_coverage_clustered_cells():
    """CAR T cells clustered in a uniform tissue: the block bootstrap covers the true density
    about as often as it says, the Poisson interval alone far less (it ignores the clustering)."""
    from anndata import AnnData

    rng = np.random.default_rng(0)
    side = 1000.0   # µm, 1 mm²
    cover_bs = cover_po = 0
    runs = 60
    for _ in range(runs):
        tissue = rng.uniform(0, side, (4000, 2))
        # true intensity: 300 / mm² on average, in clusters
        car = _field(rng, rng.poisson(300), side, clustered=True)
        xy = np.r_[tissue, car]
        a = AnnData(np.zeros((len(xy), 1)), obsm={"spatial": xy})
        is_car = np.r_[np.zeros(len(tissue), bool), np.ones(len(car), bool)]
        m = pd.DataFrame({"region": "r", "metric": ["car_t_density_per_mm2", "area_mm2"],
                          "value": [is_car.sum() / 1.0, 1.0], "unit": "", "note": ""})
        iv = cart_intervals(a, m, regions={"r": np.ones(len(xy), bool)},
                            role_cells={"car_t": is_car, "tumor": ~is_car, "myeloid": ~is_car},
                            pixel_size_um=1.0, n_boot=400, seed=1)
        row = iv[iv["metric"] == "car_t_density_per_mm2"].iloc[0]
        cover_bs += row["lo"] <= 300 <= row["hi"]
        plo, phi = poisson_interval(is_car.sum())
        cover_po += plo <= 300 <= phi
        assert "block bootstrap" in row["method"]
    assert cover_bs / runs >= 0.85
    assert cover_po / runs < cover_bs / runs


def test_tiles_and_areas():
    xy = np.array([[0, 0], [10, 10], [150, 5], [250, 250], [255, 260]], float)
    c = tile_codes(xy, 100)
    assert len(set(c)) == 3 and c[0] == c[1] and c[3] == c[4]
    a = tile_areas(xy, c, total_area=1.0)
    assert a.sum() == pytest.approx(1.0)
    # (0, 0) and (10, 10) share one 20 µm square; (250, 250) and (255, 260) lie in two
    assert a[c[3]] == pytest.approx(2 * a[c[0]])
    a0 = tile_areas(xy, c)
    assert a0[c[2]] == pytest.approx(400 / 1e6)


def test_cart_intervals_nan_and_zero_counts():
    """A fraction without denominator has no interval (NaN, the note kept); 0 CAR T cells in a
    region gets the Poisson upper bound, never [0, 0]."""
    from anndata import AnnData

    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 500, (300, 2))
    a = AnnData(np.zeros((300, 1)), obsm={"spatial": xy})
    car = np.zeros(300, bool)
    m = pd.DataFrame({"region": "r", "metric": ["n_car_t", "area_mm2", "car_t_density_per_mm2",
                                                "frac_car_t_contact_tumor"],
                      "value": [0.0, 0.25, 0.0, np.nan], "unit": "", "note": ["", "", "no CAR T cells in this region",
                                                                           "no CAR T cells in this region"]})
    iv = cart_intervals(a, m, regions={"r": np.ones(300, bool)}, role_cells={"car_t": car, "tumor": ~car,
                                                                             "myeloid": ~car}, pixel_size_um=1.0)
    d = iv.set_index("metric")
    assert d.loc["car_t_density_per_mm2", "lo"] == 0
    assert d.loc["car_t_density_per_mm2", "hi"] == pytest.approx(poisson_interval(0)[1] / 0.25)
    assert "exact Poisson" in d.loc["car_t_density_per_mm2", "method"]
    assert np.isnan(d.loc["frac_car_t_contact_tumor", "lo"])
    assert d.loc["frac_car_t_contact_tumor", "note"] == "no CAR T cells in this region"


def test_oe_intervals_match_nhood_counts_and_expected():
    from anndata import AnnData

    from napari_carspatial.analysis.graph import spatial_graph
    from napari_carspatial.analysis.nhood import nhood_enrichment

    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 600, (800, 2))
    types = pd.Categorical(rng.choice(["A", "B", "C"], 800, p=[0.5, 0.3, 0.2]))
    a = AnnData(np.zeros((800, 1)), obs=pd.DataFrame({"t": types}, index=[str(i) for i in range(800)]),
                obsm={"spatial": xy})
    g = spatial_graph(a, method="delaunay", max_distance=40, pixel_size_um=1.0).connectivities
    ref = nhood_enrichment(a, cluster_key="t", connectivities=g)
    iv = oe_intervals(types.codes, list(types.categories), g, xy, n_boot=200)
    obs = iv.pivot(index="row", columns="col", values="observed").loc[["A", "B", "C"], ["A", "B", "C"]].to_numpy()
    E = iv.pivot(index="row", columns="col", values="expected").loc[["A", "B", "C"], ["A", "B", "C"]].to_numpy()
    np.testing.assert_allclose(obs, ref.count)
    np.testing.assert_allclose(E, ref.expected, rtol=1e-9)
    # random labels: every log2 O/E interval around 0 is plausible, and every one contains its estimate
    assert (iv["lo"] <= iv["log2_oe"]).all() and (iv["log2_oe"] <= iv["hi"]).all()
    assert ((iv["lo"] <= 0) & (iv["hi"] >= 0)).mean() >= 0.75


def test_compare_intervals_differences():
    t = pd.DataFrame({"region": ["a", "a", "b", "b"], "metric": ["x", "y", "x", "y"], "value": [0.6, 2.0, 0.2, 2.0],
                      "lo": [0.5, np.nan, 0.1, np.nan], "hi": [0.7, np.nan, 0.35, np.nan]})
    c = compare_intervals(t, "a", "b", overlap=3).set_index("metric")
    assert c.loc["x", "difference"] == pytest.approx(0.4)
    assert c.loc["x", "lo"] == pytest.approx(0.4 - np.hypot(0.1, 0.15))
    assert c.loc["x", "hi"] == pytest.approx(0.4 + np.hypot(0.1, 0.1))
    assert "share 3 cells" in c.loc["x", "note"]
    assert np.isnan(c.loc["y", "lo"]) and c.loc["y", "note"] == "no interval in one region"
