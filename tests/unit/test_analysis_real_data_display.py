"""What the Analysis dock showed wrongly on real data (cytomapper IMC, steinbock), fixed headless:
co-occurrence thresholds that stop inside a 100 µm image, a type absent from the compared region
said in its panel, one n/a line where both regions lack the cells, touching cells' colour bar in %
like its numbers, a 0.0036 mm² area not printed as "0.00"."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from napari_carspatial.analysis import plotting  # noqa: E402
from napari_carspatial.analysis.results import compute, default_cooccurrence_interval  # noqa: E402

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
CYTO = REAL / "cytomapper_pancreas_imc"


@pytest.fixture(scope="module")
def g01():
    from napari_carspatial.io import read_sample

    s = read_sample(CYTO / "images" / "G01_imc.tiff", mask=CYTO / "masks" / "G01_mask.tiff",
                    table=CYTO / "cells.csv")
    xy = np.asarray(s.table.obsm["spatial"], float)
    upper = xy[:, 0] + xy[:, 1] < 85   # the triangle drawn in the screenshot (level-0 px, 1 µm)
    return s, {"upper left": upper, "lower right": ~upper}


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_cooccurrence_thresholds_stop_inside_a_small_image(g01):
    s, regions = g01
    iv = default_cooccurrence_interval(s.table, regions, pixel_size_um=1.0)
    xy = np.asarray(s.table.obsm["spatial"], float)
    half_diag = max(np.hypot(*(xy[m].max(0) - xy[m].min(0))) for m in regions.values()) / 2
    assert iv[0] == 0 and len(iv) == 21
    assert half_diag <= iv[-1] < half_diag + 10          # 100 µm IMC: ~70 µm, not the 200 µm default
    r = compute(s.table, "cooccurrence", regions=regions, cluster_key="CellType", pixel_size_um=1.0)
    d = r.tables["cooccurrence"]
    assert d["distance_um"].max() == pytest.approx(iv[-1])
    assert r.params["interval_um"] == pytest.approx(list(iv))
    # a large region keeps the 200 µm default; the same thresholds for every region (they compare)
    big = pd.DataFrame(np.random.default_rng(0).uniform(0, 2000, (50, 2)))
    import anndata as ad

    a = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(50)]), obsm={"spatial": big.to_numpy()})
    assert default_cooccurrence_interval(a, {"x": np.ones(50, bool)}, pixel_size_um=0.5)[-1] == 200.0


def test_cooccurrence_panel_says_a_type_is_absent_from_the_compared_region():
    rows = []
    for rg, types in (("a", ("T", "B")), ("b", ("T",))):
        for nt in types:
            for d in (10.0, 20.0):
                rows.append({"region": rg, "cell_type": "T", "neighbour_type": nt, "distance_um": d, "ratio": 1.2})
    from napari_carspatial.analysis.results import AnalysisResult

    r = AnalysisResult("cooccurrence", {"cooccurrence": pd.DataFrame(rows)}, {"pixel_size_um": 1.0}, ["a", "b"])
    fig = Figure(figsize=(5, 4), layout="constrained")
    plotting.plot_cooccurrence(fig, r, "a", compare="b", focus="T")
    assert "none in b" in _texts(fig)                     # the B panel: no dashed line, and why
    assert _texts(fig).count("none in b") == 1            # the T panel has both lines


def test_one_na_line_when_both_regions_lack_car_t_cells(g01):
    from napari_carspatial.analysis.results import edit_role
    from napari_carspatial.analysis.roles import resolve_roles

    s, regions = g01
    m = resolve_roles(s.table, cell_type_key="CellType")
    m = edit_role(m, "tumor", types=["celltype_A"])
    m = edit_role(m, "myeloid", types=["celltype_C"])
    r = compute(s.table, "cart", regions=regions, cluster_key="CellType", roles=m, pixel_size_um=1.0, seed=0)
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    plotting.plot_result(fig, r, "upper left", compare="lower right")
    na = [t for t in _texts(fig) if t.startswith("n/a:")]   # the forest panels (the difference panel says "n/a")
    assert na and all(t.endswith("(both)") for t in na)   # one line per measure, not two on top of each other
    fr = plotting.display_table(r, "upper left", compare="lower right")
    area = fr[fr.iloc[:, 0].astype(str).str.startswith("Area")]
    vals = [str(v) for v in area.iloc[0, 1:3]]
    assert len(area) == 1 and all(float(v) > 0 for v in vals), vals   # not "0.00"


def test_small_area_has_significant_digits():
    assert plotting.fmt_value("area_mm2", 0.0036, unit="mm²") == "0.0036"
    assert plotting.fmt_value("area_mm2", 0.31, unit="mm²") == "0.31"


def test_touching_colour_bar_is_in_percent(g01):
    s, regions = g01
    r = compute(s.table, "touching", regions=regions, cluster_key="CellType", labels=s.labels[0])
    fig = Figure(figsize=(5, 4), layout="constrained")
    plotting.plot_result(fig, r, "upper left")
    fig.canvas.draw()
    cbar = fig.axes[-1]
    ticks = [t.get_text() for t in cbar.get_yticklabels() if t.get_text()]
    assert ticks and all(t.endswith("%") for t in ticks)


def test_cart_figure_lays_out_on_every_draw_when_a_region_has_no_car_t(g01):
    """A forest row with no finite value drew an empty errorbar (clip_on=False, extent at 0, 0):
    the second draw of the same figure collapsed every panel to a line (seen in the dock)."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from napari_carspatial.analysis.results import edit_role
    from napari_carspatial.analysis.roles import resolve_roles

    s, regions = g01
    m = resolve_roles(s.table, cell_type_key="CellType")
    m = edit_role(m, "tumor", types=["celltype_A"])
    m = edit_role(m, "car_t", rule="CD8a+", adata=s.table)
    r = compute(s.table, "cart", regions=regions, cluster_key="CellType", roles=m, pixel_size_um=1.0, seed=0)
    fig = Figure(figsize=(5.31, 3.73), layout="constrained")
    FigureCanvasAgg(fig)
    plotting.plot_result(fig, r, "upper left", compare="lower right", view="measures")
    for _ in range(3):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig.canvas.draw()
        assert not [w for w in caught if "constrained_layout" in str(w.message)]
    assert all(ax.bbox.height > 20 for ax in fig.axes if ax.get_title(loc="left"))
