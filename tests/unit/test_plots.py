"""Every statistic's figure draws, in a narrow dock and in a wide export, alone and compared."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from napari_carspatial.analysis.plotting import plot_result  # noqa: E402
from napari_carspatial.analysis.results import STATISTICS, compute  # noqa: E402
from napari_carspatial.datasets import demo_sample  # noqa: E402


@pytest.fixture(scope="module")
def demo_regions():
    s = demo_sample(size=600, seed=2)
    comp = s.table.obs["compartment"].astype(str).to_numpy()
    regions = {"core": comp == "Tumor core", "margin": comp == "Invasive margin"}
    return s.table, regions


@pytest.mark.parametrize("statistic", sorted(STATISTICS))
def test_plot_every_statistic_narrow_and_wide(statistic, demo_regions):
    adata, regions = demo_regions
    res = compute(adata, statistic, regions=regions, seed=0)
    for size in ((4.0, 5.0), (12.0, 4.0)):        # a narrow dock, a wide export
        for compare in (None, "core"):
            fig = Figure(figsize=size)
            plot_result(fig, res, "margin", compare=compare)
            fig.canvas.draw()                     # really renders (catches errors in drawing)
            assert fig.axes, f"{statistic}: nothing drawn at {size} compare={compare}"
            assert any(ax.has_data() or ax.images for ax in fig.axes)


def test_long_type_names_never_run_into_the_next_panel(demo_regions):
    """Co-occurrence and Ripley panels: a type name wider than its panel is shortened with "…"
    (never overlapping its neighbour's title), a short one is left whole."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    adata, regions = demo_regions
    adata = adata.copy()
    long = {"Tumor (antigen-neg)": "Tumor cells that lost the target antigen (antigen-negative)"}
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).replace(long).astype("category")
    for statistic in ("cooccurrence", "ripley"):
        res = compute(adata, statistic, regions=regions, seed=0)
        fig = Figure(figsize=(4.2, 3.2), dpi=100, layout="constrained")
        canvas = FigureCanvasAgg(fig)
        plot_result(fig, res, "margin")
        canvas.draw()
        r = canvas.get_renderer()
        titles = [t for ax in fig.axes if ax.get_visible() for t in ax.texts if hasattr(t, "full_text")]
        assert len(titles) >= 4, statistic
        names = {t.full_text.strip(): t for t in titles}
        assert any(n.startswith("Tumor cells that lost") for n in names), statistic
        for t in titles:
            ext, ax_ext = t.get_window_extent(r), t._ax.get_window_extent(r)
            assert ext.x1 <= ax_ext.x1 + 1, (statistic, t.get_text())
            assert t.get_text() == t.full_text or t.get_text().endswith("…")
        shortened = [t for t in titles if t.get_text() != t.full_text]
        assert shortened and all(len(t.full_text.strip()) > 12 for t in shortened), statistic
        # no two titles of the same row overlap
        boxes = sorted((t.get_window_extent(r) for t in titles), key=lambda b: (round(b.y0), b.x0))
        for a, b in zip(boxes, boxes[1:], strict=False):
            if np.isclose(a.y0, b.y0, atol=1):
                assert a.x1 <= b.x0 + 0.5
