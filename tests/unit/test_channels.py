"""Channel policy (model.channels): marker roles, first view, colours that start at black, sparse contrast."""

from __future__ import annotations

import numpy as np
import pytest

from napari_carspatial.model import Sample
from napari_carspatial.model import channels as ch

#: real panels (names as the files give them)
PANELS = {
    "steinbock": ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"],
    "cytomapper": ["H3", "CD99", "PIN", "CD8a", "CDH"],
    "demo": ["DAPI", "PanCK", "MSLN", "CD3", "CAR", "CD8", "CD4", "CD68", "CD163", "PD-L1", "PD-1", "Ki-67"],
    "mibi": ["Background", "Au", "dsDNA", "CD3", "CD4", "CD8", "CD20", "CD45", "CD68", "CD11c", "HLA-DR",
             "Keratin", "Pan-Keratin", "SMA", "Vimentin", "Ta", "Na", "Si", "C", "Fe"],
    "cycif": ["DNA_1", "A488", "A555", "A647", "DNA_2", "CD3", "CD8a", "Ecadherin", "CD68", "SMA", "CD31"],
    "codex": ["DAPI-01", "Blank", "Empty", "CD45", "CD20", "PanCK", "CD4", "CD8", "CD163", "Vimentin"],
    "imc_raw": ["80ArAr", "Ir191", "Ir193", "CD3(Er170Di)", "CD68(Tb159Di)", "E-Cadherin(Pr141Di)",
                "Histone H3(Yb176Di)"],
}


def _colormap(name):
    from napari.utils.colormaps import ensure_colormap

    return ensure_colormap(name)


def test_every_default_colormap_maps_zero_to_black():
    """No napari 'I ...' (inverted) colormap or any colormap whose 0 is not black can come out."""
    for name in ch.ALL_COLORMAPS:
        cmap = _colormap(name)
        assert not name.startswith("I ")
        rgba = cmap.map(np.array([0.0]))[0]
        assert np.allclose(rgba[:3], 0.0), (name, rgba)
        assert np.max(cmap.map(np.array([1.0]))[0][:3]) > 0.4, name   # and it shows something at 1


def test_colormaps_of_real_panels_and_many_channels_are_all_safe():
    lists = list(PANELS.values()) + [[f"M{i}" for i in range(60)], [f"CD{i}" for i in range(1, 80)]]
    for names in lists:
        cmaps = ch.channel_colormaps(names)
        assert len(cmaps) == len(names)
        assert set(cmaps) <= set(ch.ALL_COLORMAPS)
        vis = ch.default_visible(names)
        shown = [c for c, v in zip(cmaps, vis, strict=True) if v]
        assert len(shown) == len(set(shown)), (names, shown)   # distinct colours in the first view


def test_layers_functions_use_the_policy():
    from napari_carspatial._napari import layers

    names = PANELS["demo"]
    assert layers.channel_colormaps(names) == ch.channel_colormaps(names)
    assert layers.default_visible(names) == ch.default_visible(names)


@pytest.mark.parametrize(("name", "role"), [
    ("DAPI", "nuclear"), ("Hoechst", "nuclear"), ("DNA1", "nuclear"), ("DNA2", "nuclear"), ("Ir191", "nuclear"),
    ("Ir193", "nuclear"), ("191Ir_DNA1", "nuclear"), ("HH3", "nuclear"), ("H3", "nuclear"), ("dsDNA", "nuclear"),
    ("DNA1 (Ir191)", "nuclear"), ("DAPI-01", "nuclear"), ("Histone H3(Yb176Di)", "nuclear"),
    ("H3K27Ac", "histone"), ("PanCK", "tumor"), ("Pan-Keratin", "tumor"), ("Cytokeratin 5", "tumor"),
    ("E-Cadherin", "tumor"), ("MSLN", "tumor"), ("CD3", "t_cell"), ("CD3e", "t_cell"), ("CAR", "t_cell"),
    ("CD8a", "t_cell"), ("CD3(Er170Di)", "t_cell"), ("CD68", "myeloid"), ("CD163", "myeloid"), ("CD20", "b_cell"),
    ("SMA", "stroma"), ("Laminin", "stroma"), ("CD31", "endothelium"), ("CD45", "immune"),
    ("Background", "background"), ("Blank", "background"), ("blank3", "background"), ("Empty", "background"),
    ("A488", "background"), ("TRITC background", "background"), ("Cy5_Empty", "background"), ("YBX1", None), ("Ag107", None), ("Ki-67", None), ("PD-1", None),
])
def test_classify(name, role):
    assert ch.classify(name) == role


def _shown(names, **kw):
    return [n for n, v in zip(names, ch.default_visible(names, **kw), strict=True) if v]


def test_first_view_of_real_panels():
    assert _shown(PANELS["steinbock"]) == ["Cytokeratin 5", "Laminin", "H3K27Ac"]
    assert _shown(PANELS["cytomapper"]) == ["H3", "CD8a", "CDH"]
    assert _shown(PANELS["demo"]) == ["DAPI", "PanCK", "CAR", "CD68"]
    assert _shown(PANELS["mibi"]) == ["dsDNA", "CD3", "CD68", "Pan-Keratin"]   # pan-keratin preferred
    assert _shown(PANELS["cycif"]) == ["DNA_1", "CD3", "Ecadherin", "CD68"]
    assert _shown(PANELS["codex"]) == ["DAPI-01", "PanCK", "CD8", "CD163"]
    # at most one nuclear plus three lineage markers
    for names in PANELS.values():
        assert 1 <= len(_shown(names)) <= 4


def test_background_and_all_zero_channels_never_shown_first():
    names = ["Background", "DAPI", "CD3", "PanCK", "Blank"]
    assert _shown(names) == ["DAPI", "CD3", "PanCK"]
    assert _shown(names, empty=[False, True, False, False, False]) == ["CD3", "PanCK"]
    assert ch.hidden_channels(names, empty=[False, True, False, False, False]) == [True, True, False, False, True]
    # names that match nothing: the first three usable channels
    assert _shown(["Empty", "x1", "x2", "x3", "x4"]) == ["x1", "x2", "x3"]


def test_nuclear_gets_blue_tumor_green():
    cm = dict(zip(PANELS["demo"], ch.channel_colormaps(PANELS["demo"]), strict=True))
    assert cm["DAPI"] == "blue" and cm["PanCK"] == "green" and cm["CAR"] == "magenta" and cm["CD68"] == "cyan"


def test_sparse_contrast_uses_nonzero_pixels():
    rng = np.random.default_rng(0)
    counts = np.zeros((1, 200, 200), np.float32)
    on = rng.random((200, 200)) < 0.1                     # 10 % of pixels have counts
    counts[0][on] = rng.poisson(3, on.sum()) + 1
    lo, hi = ch.contrast_limits(counts)[0]
    nz = counts[0][counts[0] != 0]
    assert lo == 0.0
    assert hi == pytest.approx(float(np.percentile(nz, ch.SPARSE_HIGH)))
    # the whole-image 99.8th percentile would saturate most counted pixels; the non-zero one does not
    assert (nz > hi).mean() <= 0.01 + 1e-9
    assert np.percentile(counts, 99.8) <= hi
    # uint16 counts: same rule, exact percentile of the non-zero values
    u = counts.astype(np.uint16)
    assert ch.contrast_limits(u)[0] == (0.0, float(np.percentile(u[0][u[0] != 0], ch.SPARSE_HIGH, method="lower")))
    assert ch.contrast_limits(np.zeros((1, 8, 8), np.uint16)) == [(0.0, 1.0)]


def test_dense_contrast_unchanged():
    rng = np.random.default_rng(1)
    a = rng.integers(1, 4000, (1, 100, 100)).astype(np.uint16)
    assert ch.contrast_limits(a) == [tuple(float(v) for v in np.percentile(a[0], [1, 99.8], method="lower"))]


def test_channel_plan_hides_all_zero_channel():
    from napari_carspatial._napari.layers import channel_plan

    img = np.ones((3, 32, 32), np.float32)
    img[0] = 0
    s = Sample("z", image=[img], channel_names=["DAPI", "CD3", "PanCK"]).validate()
    plan = channel_plan(s)
    assert plan["empty"] == [True, False, False]
    assert plan["visible"] == [False, True, True]
