"""Results that cannot mislead (issue 14 item 11) and plots in the legend's colours (item 4),
headless: what the Analysis dock shows is computed and formatted here."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from napari_carspatial.analysis import plotting  # noqa: E402
from napari_carspatial.analysis.results import (  # noqa: E402
    compute,
    edit_role,
    focus_type,
    role_table,
    type_colors,
)
from napari_carspatial.datasets import demo_sample  # noqa: E402

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def demo():
    s = demo_sample(size=800, seed=0, timepoint="post", image=False)
    comp = s.table.obs["compartment"].astype(str).to_numpy()
    regions = {"core": comp == "Tumor core", "margin": comp == "Invasive margin"}
    return s, regions


@pytest.fixture(scope="module")
def cart(demo):
    s, regions = demo
    return compute(s.table, "cart", regions=regions, seed=0)


def test_cart_fractions_have_counts_and_wilson_intervals(cart):
    from statsmodels.stats.proportion import proportion_confint

    iv = cart.tables["intervals"]
    fr = iv[iv["method"] == "Wilson score"]
    assert len(fr) >= 8
    assert ((fr["lo"] <= fr["value"] + 1e-12) & (fr["value"] <= fr["hi"] + 1e-12)).all()
    np.testing.assert_allclose(fr["count"] / fr["nobs"], fr["value"], atol=1e-9)   # k/n is the fraction
    lo, hi = proportion_confint(fr["count"], fr["nobs"], method="wilson")
    np.testing.assert_allclose(fr["lo"], lo, atol=1e-12)
    np.testing.assert_allclose(fr["hi"], hi, atol=1e-12)
    dens = iv[iv["metric"] == "car_t_density_per_mm2"]
    assert (dens["lo"] < dens["value"]).all() and (dens["value"] < dens["hi"]).all()


def test_cart_comparison_is_a_difference_with_an_interval(cart):
    c = cart.tables["comparisons"]
    d = c[(c["region_a"] == "margin") & (c["region_b"] == "core")].set_index("metric")
    m = cart.tables["metrics"].pivot(index="metric", columns="region", values="value")
    for k in ("car_t_density_per_mm2", "frac_car_t_contact_myeloid"):
        assert d.loc[k, "difference"] == pytest.approx(m.loc[k, "margin"] - m.loc[k, "core"])
        assert d.loc[k, "lo"] < d.loc[k, "difference"] < d.loc[k, "hi"]
    # the margin holds many more CAR T cells per mm² than the core: the interval excludes 0
    assert d.loc["car_t_density_per_mm2", "lo"] > 0
    r = c[(c["region_a"] == "core") & (c["region_b"] == "margin")].set_index("metric")
    assert r.loc["car_t_density_per_mm2", "lo"] == pytest.approx(-d.loc["car_t_density_per_mm2", "hi"])


def test_display_table_speaks_plain_words(cart):
    t = plotting.display_table(cart, "margin", "core")
    text = " ".join(t.astype(str).to_numpy().ravel()) + " ".join(t.columns)
    for code in ("n_car_t", "area_mm2", "frac_", "_per_mm2", "log2_oe_"):
        assert code not in text
    assert "CAR T cells (n)" in set(t["Measure"]) and "Area (mm²)" in set(t["Measure"])
    row = t[t["Measure"].str.startswith("CAR T touching myeloid")].iloc[0]
    assert "/" in row["margin"] and "[" in row["margin"]             # 64% [60–68] · 344/540
    assert "pts" in row["margin − core"] and " to " in row["margin − core"]
    z = t[t["Measure"].str.contains("grows with n")]
    assert (z["margin − core"] == "not compared (z grows with n)").all()   # no difference of z-scores


def test_unmapped_roles_are_na_with_the_reason_never_zero(demo):
    s, regions = demo
    r = compute(s.table, "cart", regions=regions, roles={"car_t": []})
    t = plotting.display_table(r, "margin")
    row = t[t["Measure"] == "CAR T density (cells/mm²)"].iloc[0]
    assert row["margin"] == "n/a" and "not mapped" in row["Note"]
    fig = Figure(figsize=(5, 5))
    plotting.plot_result(fig, r, "margin", view="measures")
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "not mapped" in texts                                     # the figure says why, draws no 0


def test_metric_labels_have_units():
    assert plotting.metric_label("n_car_t", "cells") == "CAR T cells (n)"
    assert plotting.metric_label("area_mm2", "mm²") == "Area (mm²)"
    assert plotting.metric_label("area_mm2", "Mpx²") == "Area (Mpx²)"      # no pixel size: it says so
    assert plotting.metric_label("frac_car_t_pd1_pos") == "PD-1+ CAR T (% of CAR T cells)"
    assert plotting.metric_label("frac_car_t_within_r_of_tumor", params={"near_radius_um": 30}).startswith(
        "CAR T within 30 µm of a tumour cell")


def _artist_colors(fig):
    cols = set()
    for ax in fig.axes:
        cols |= {to_hex(line.get_color()) for line in ax.get_lines()}
        cols |= {to_hex(p.get_facecolor()) for p in ax.patches}
        for c in ax.collections:
            for fc in c.get_facecolor():
                cols.add(to_hex(fc))
    return cols


def test_plots_use_the_legend_colours(demo):
    s, regions = demo
    a = s.table
    legend = type_colors(a, "cell_type")
    assert list(legend) == list(a.obs["cell_type"].cat.categories)
    assert [to_hex(c) for c in a.uns["cell_type_colors"]] == list(legend.values())
    for st in ("cooccurrence", "nhood", "interactions", "ripley", "centrality"):
        r = compute(a, st, regions=regions, seed=0)
        assert r.params["colors"] == legend                            # stored with the result
        fig = Figure(figsize=(6, 5), layout="constrained")
        plotting.plot_result(fig, r, "margin")
        used = _artist_colors(fig)
        shown = [t for t in legend if t in set(r.tables[next(iter(r.tables))].astype(str).to_numpy().ravel())]
        assert {legend[t] for t in shown} <= used, st
        # the legend changes a colour: the figure follows (the dock passes the legend's colours)
        new = dict(legend, **{shown[0]: "#123456"})
        fig = Figure(figsize=(6, 5), layout="constrained")
        plotting.plot_result(fig, r, "margin", colors=new)
        assert "#123456" in _artist_colors(fig), st


def test_cooccurrence_is_small_multiples_not_overlapping_lines(demo):
    s, regions = demo
    r = compute(s.table, "cooccurrence", regions=regions)
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    plotting.plot_result(fig, r, "margin", compare="core", focus="CAR T")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 10                                         # one per neighbour type
    assert all(len(ax.get_lines()) <= 3 for ax in panels)             # region, compare, the line at 1
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    plotting.plot_result(fig, r, "margin", focus="CAR T", types=["Macrophage", "Tumor"])
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2


def _inside(ax) -> bool:
    x0, x1 = sorted(ax.get_xlim())
    ok = True
    for p in ax.patches:
        bb = p.get_bbox()
        if p.get_visible() and p.get_width() > 0:
            ok &= x0 - 1e-9 <= bb.x0 and bb.x1 <= x1 + 1e-9
    for c in ax.collections:
        for seg in getattr(c, "get_segments", list)():
            seg = np.asarray(seg)
            if seg.size:
                ok &= bool(np.all((seg[:, 0] >= x0 - 1e-9) & (seg[:, 0] <= x1 + 1e-9)))
    return bool(ok)


def test_no_bar_or_interval_beyond_the_axis(cart, demo):
    s, regions = demo
    for view in ("measures", "all"):
        for cmp in (None, "core"):
            fig = Figure(figsize=(5.5, 6), layout="constrained")
            plotting.plot_result(fig, cart, "margin", compare=cmp, view=view)
            fig.canvas.draw()
            assert all(_inside(ax) for ax in fig.axes), (view, cmp)
    r = compute(s.table, "centrality", regions=regions)
    fig = Figure(figsize=(5, 5), layout="constrained")
    plotting.plot_result(fig, r, "margin", compare="core")
    assert all(_inside(ax) for ax in fig.axes)


def test_enrichment_compared_as_log2_oe_difference(demo):
    s, regions = demo
    r = compute(s.table, "nhood", regions=regions)
    oe = r.tables["log2_oe"]
    c = r.tables["comparisons"]
    d = c[(c["region_a"] == "margin") & (c["region_b"] == "core")]
    a = oe[oe["region"] == "margin"].set_index(["row", "col"])["log2_oe"]
    b = oe[oe["region"] == "core"].set_index(["row", "col"])["log2_oe"]
    got = d.set_index(["row", "col"])["difference"]
    np.testing.assert_allclose(got.to_numpy(), (a - b).loc[got.index].to_numpy(), equal_nan=True)
    fig = Figure(figsize=(5, 5), layout="constrained")
    plotting.plot_result(fig, r, "margin", compare="core")
    title = fig.axes[0].get_title(loc="left")
    assert "log2 obs / exp" in title and "z" not in title.split()


def test_roles_table_edit_and_store_roundtrip(demo, tmp_path):
    import anndata as ad

    from napari_carspatial.analysis.roles import resolve_roles, store_roles

    s, _ = demo
    a = s.table.copy()
    m = resolve_roles(a, cell_type_key="cell_type")
    t = role_table(a, m).set_index("role")
    assert t.loc["car_t", "types"] == ["CAR T"] and t.loc["car_t", "source"] == "inferred"
    assert t.loc["car_t", "n_cells"] == (a.obs["cell_type"] == "CAR T").sum()
    assert t.loc["pdl1_macrophage", "source"] == "derived"
    m2 = edit_role(m, "myeloid", types=["Macrophage", "Other"])
    assert m.types["myeloid"] == ["Macrophage"]                       # the input is not changed
    assert m2.types["myeloid"] == ["Macrophage", "Other"] and "Other" not in m2.unmapped
    m3 = edit_role(m2, "CAR T", rule="CD3+ CAR+", adata=a)
    assert m3.rules["car_t"].text == "CD3+ CAR+" and "CAR T" in m3.unmapped
    with pytest.raises(Exception, match="no marker 'CD999'"):
        edit_role(m2, "car_t", rule="CD999+", adata=a)
    store_roles(a, m3)
    p = tmp_path / "t.h5ad"
    a.write_h5ad(p)
    b = ad.read_h5ad(p)
    back = resolve_roles(b, cell_type_key="cell_type")
    assert back.types["myeloid"] == ["Macrophage", "Other"] and back.rules["car_t"].text == "CD3+ CAR+"
    assert role_table(b, back).set_index("role").loc["myeloid", "source"] == "stored"


def test_focus_and_colours_follow_the_roles(demo):
    s, _ = demo
    a = s.table
    assert focus_type(a, "cell_type") == "CAR T"
    assert focus_type(a, "cell_type", {"car_t": ["CD8 T"]}) == "CD8 T"
    before = dict(a.uns)
    type_colors(a, "compartment")
    assert set(a.uns) == set(before)                                    # read only


def test_engaged_pairs_equal_brute_force(demo):
    from napari_carspatial.analysis.engaged import engaged_pairs
    from napari_carspatial.analysis.results import region_graph

    s, regions = demo
    a = s.table
    m = regions["margin"]
    g = region_graph(a, m, {"method": "delaunay", "max_distance_um": 30})
    e = engaged_pairs(a, "cell_type", ligand="CD274", receptor="PDCD1", sender="Macrophage", receiver="CAR T",
                      graph=g, mask=m, thresholds={"ligand": 200.0, "receptor": 150.0})
    rows = np.flatnonzero(m)
    types = a.obs["cell_type"].astype(str).to_numpy()
    pdl1 = np.asarray(a[:, "PD-L1"].X).ravel()
    pd1 = np.asarray(a[:, "PD-1"].X).ravel()
    gg = ((g + g.T) > 0).tocoo()
    want = {(rows[i], rows[j]) for i, j in zip(gg.row, gg.col, strict=True) if i != j
            and types[rows[i]] == "Macrophage" and types[rows[j]] == "CAR T"
            and pdl1[rows[i]] > 200 and pd1[rows[j]] > 150}
    got = set(zip(e.table["sender_row"], e.table["receiver_row"], strict=True))
    assert got == want and len(got) > 0
    xy = np.asarray(a.obsm["spatial"], float)
    k = 0
    assert np.allclose(e.segments_yx[k, 0], xy[e.table["sender_row"].iloc[k]][::-1])
    assert np.allclose(e.segments_yx[k, 1], xy[e.table["receiver_row"].iloc[k]][::-1])
    assert e.summary["n_engaged"] == len(got) and "engaged" in e.describe()


def test_ligrec_runs_on_the_demo_protein_panel_and_says_why_not_elsewhere(demo):
    from napari_carspatial.model import SampleError

    s, regions = demo
    r = compute(s.table, "ligrec", regions=regions)
    t = r.tables["spatial"]
    assert set(t["ligand"]) == {"CD274"} and set(t["source"]) == {"PD-L1"}   # PD-L1 / PD-1 as markers
    assert t["pvalue"].notna().any()
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    plotting.plot_result(fig, r, "margin")                             # one pair: sender x receiver matrix
    assert "CD274 → PDCD1" in fig.axes[0].get_title(loc="left")
    tab = plotting.display_table(r, "margin")
    assert tab.columns[0] == "Ligand → receptor"
    a = s.table.copy()
    a.var_names = [f"g{i}" for i in range(a.n_vars)]
    with pytest.raises(SampleError, match="no ligand-receptor pair of the CAR T preset"):
        compute(a, "ligrec")


@pytest.mark.skipif(not (REAL / "xenium_crop").is_dir(), reason="shared real data not here")
def test_ligrec_on_the_xenium_crop_says_the_panel_has_no_pair():
    from napari_carspatial.io import read_sample
    from napari_carspatial.model import SampleError

    (s,) = read_sample(REAL / "xenium_crop")
    a = s.table
    a.obs["t"] = pd.Categorical(np.where(np.asarray(a[:, "CD3E"].X.todense()).ravel() > 0, "T", "B"))
    for pairs in ("cart", "consensus"):
        with pytest.raises(SampleError, match="30 in all"):
            compute(a, "ligrec", cluster_key="t", options={"lr_pairs": pairs})
