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
