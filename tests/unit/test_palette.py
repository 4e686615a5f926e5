"""The one default colour policy (model/palette.py), and that curation, gating and segmentation use it."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from napari_carspatial.model.palette import (
    DEFAULT_PALETTE,
    REST_COLOR,
    color_for,
    default_colors,
    semantic_color,
)


def test_color_for_semantic_then_palette_then_hues():
    car = semantic_color("car-t")
    assert color_for("CAR T") == car
    assert color_for("CAR T", used=[car.upper()]) == next(c for c in DEFAULT_PALETTE if c != car)     # taken: the next free one
    assert color_for("cluster 7", used=DEFAULT_PALETTE[:3]) == DEFAULT_PALETTE[3]
    many = list(DEFAULT_PALETTE)
    c = color_for("cluster 99", used=many)
    assert c not in many
    assert c.startswith("#")
    assert len(c) == 7


def test_default_colors_distinct_for_many_categories():
    cols = default_colors([f"cluster {i}" for i in range(60)])
    assert len(set(cols)) == 60


def test_curation_new_type_gets_the_policy_color():
    from napari_carspatial.model.curation import Curation

    t = ad.AnnData(X=np.zeros((3, 1), np.float32),
                   obs=pd.DataFrame({"cell_id": [1, 2, 3], "cell_type": pd.Categorical(["Tumor", "Tumor", "Stroma"])},
                                    index=["a", "b", "c"]))
    t.obsm["spatial"] = np.zeros((3, 2))
    t.uns["cell_type_colors"] = np.array(["#d9c7a3", "#8c8c8c"], dtype=object)
    cur = Curation(t, reviewer="r")
    cur.assign([0], "CAR T")
    assert list(t.uns["cell_type_curated_colors"]) == ["#d9c7a3", "#8c8c8c", semantic_color("CAR T")]


def test_gating_phenotypes_use_the_policy():
    from napari_carspatial.analysis.gating import Gate, GatingScheme, PhenotypeRule, store_gating

    t = ad.AnnData(X=np.array([[10.0], [0.0], [5.0]], np.float32),
                   obs=pd.DataFrame({"cell_id": [1, 2, 3]}, index=["a", "b", "c"]))
    t.var_names = ["CD3"]
    scheme = GatingScheme(gates={"CD3": Gate("CD3", 1.0)}, rules=[PhenotypeRule("CAR T", "CD3+")], default="Other")
    pheno = store_gating(t, scheme, key="pheno")
    cols = dict(zip(pheno.categories, t.uns["pheno_colors"], strict=True))
    assert cols == {"CAR T": semantic_color("CAR T"), "Other": REST_COLOR}


def test_hex_fast_path_equals_matplotlib():
    from matplotlib.colors import to_hex

    from napari_carspatial.model.palette import _hex

    for c in ["#1F77B4", "#ff7f0e", "#abcdef", "#ABCDEF80", "red", "C3", (0.1, 0.2, 0.3), (1, 0, 0, 0.5), "#abc"]:
        assert _hex(c) == to_hex(c, keep_alpha=False), c
