"""The palette policy keeps class colours apart from channel colours, from each other, and under
colour-vision deficiency (model/palette.py), and the plots' helper returns the legend's colours."""

from __future__ import annotations

import itertools

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.model import palette as pal
from napari_carspatial.model.channels import ALL_COLORMAPS, channel_colormaps, default_visible

SEMANTIC_COLORS = [c for _, c in pal.SEMANTIC]


def test_channel_distance_sees_the_old_clashes():
    # the colours the issue saw: CAR T magenta like the CAR channel, B cell yellow like MSLN
    assert pal.channel_distance("#ff00ff", "magenta") < 1.0
    assert pal.channel_distance("#f0e442", "yellow") < pal.MIN_CHANNEL_DISTANCE
    # a dim version of a channel colour is on its ramp too (the CAR signal at half intensity)
    assert pal.channel_distance("#800080", "magenta") < 1.0
    assert pal.color_distance("#ff00ff", "#ff00ff") == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("channel", pal.AVOIDED_CHANNELS)
def test_no_class_or_region_colour_looks_like_a_channel(channel):
    colors = [*SEMANTIC_COLORS, *pal.DEFAULT_PALETTE, *pal.ROI_CLASS_COLORS.values()]
    worst = min(colors, key=lambda c: pal.channel_distance(c, channel))
    assert pal.channel_distance(worst, channel) >= pal.MIN_CHANNEL_DISTANCE, worst


def test_every_colormap_the_channel_policy_hands_out_is_known():
    # the avoided set covers the channel policy (gray is for background channels and CD31 only)
    assert set(ALL_COLORMAPS) <= set(pal.CHANNEL_RGB)


def test_semantic_colours_distinct_and_colour_blind_safe():
    assert len(set(SEMANTIC_COLORS)) == len(SEMANTIC_COLORS)
    pairs = list(itertools.combinations(SEMANTIC_COLORS, 2))
    normal = min(pal.color_distance(a, b) for a, b in pairs)
    cvd = min(pal.cvd_distance(a, b) for a, b in pairs)
    assert normal >= pal.MIN_CLASS_DISTANCE
    assert cvd >= pal.MIN_CVD_DISTANCE
    assert sorted(pal.DEFAULT_PALETTE[: pal.N_DISTINCT]) == sorted(SEMANTIC_COLORS)


def test_cvd_simulation_collapses_red_green():
    # the Machado matrices: pure red and green are far apart normally, close for a deuteranope
    assert pal.color_distance("#ff0000", "#00ff00") > 80
    assert pal.color_distance(pal.simulate_cvd("#ff0000", "deuteranopia"),
                              pal.simulate_cvd("#00ff00", "deuteranopia")) < 25
    np.testing.assert_allclose(pal.simulate_cvd("#808080", "protanopia"), pal.simulate_cvd("#808080", "tritanopia"),
                               atol=0.02)   # greys stay grey


def test_demo_type_colours_are_the_policy():
    from napari_carspatial.datasets import CELL_TYPE_COLORS, CELL_TYPES

    got = dict(zip(CELL_TYPES, CELL_TYPE_COLORS, strict=True))
    assert got["CAR T"] == pal.semantic_color("CAR T")
    assert pal.channel_distance(got["CAR T"], "magenta") >= pal.MIN_CHANNEL_DISTANCE
    assert pal.channel_distance(got["B cell"], "yellow") >= pal.MIN_CHANNEL_DISTANCE


@pytest.mark.parametrize("names", [
    ["DAPI", "PanCK", "MSLN", "CD3", "CD4", "CD8", "CAR", "CD68", "CD163", "PD-L1", "PD-1", "Ki-67", "CD20", "SMA"],
    ["DNA1", "DNA2", "CD45", "CD3", "CD20", "CD68", "E-Cadherin", "Vimentin", "Ki67", "SMA"],   # an IMC-like panel
])
def test_types_avoid_the_channels_a_panel_shows(names):
    shown = channel_colormaps(names, default_visible(names))
    types = ["Tumor", "Tumor (antigen-neg)", "CAR T", "CD8 T", "CD4 T", "Macrophage", "B cell", "Stroma",
             "Endothelial", "MDSC", "T cell", "Other"]
    for c in pal.default_colors(types):
        for ch in set(shown) - {"gray"}:
            assert pal.channel_distance(c, ch) >= pal.MIN_CHANNEL_DISTANCE, (c, ch)


def test_category_color_map_is_what_the_legend_shows():
    t = ad.AnnData(X=np.zeros((4, 1), np.float32),
                   obs=pd.DataFrame({"ct": pd.Categorical(["CAR T", "Tumor", "CAR T", "B cell"])},
                                    index=list("abcd")))
    m = pal.category_color_map(t, "ct")
    assert m == dict(zip(["B cell", "CAR T", "Tumor"], pal.category_colors(t, "ct"), strict=True))
    assert m["CAR T"] == pal.semantic_color("CAR T")
    t.uns["ct_colors"] = ["#111111", "#222222", "#333333"]     # stored colours win
    assert pal.category_color_map(t, "ct") == {"B cell": "#111111", "CAR T": "#222222", "Tumor": "#333333"}
