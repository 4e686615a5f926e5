"""The Legend follows the table (issue 14): a categorical column made after the sample was opened
(a gating result under the user's own name, an RNA typing) is offered and coloured as soon as the
session says the table changed; an identifier-like column (CosMx ``fov``) is never coloured as
cell types."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ux_samples import _private_user_dirs, grid_sample  # noqa: F401 - the autouse fixture

from napari_carspatial._napari import add_sample_layers, session_for

REAL = Path(os.environ.get("CARSPATIAL_REAL_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"
                           / "real"))


def _items(legend):
    return [legend.column_box.itemData(i) for i in range(legend.column_box.count())]


def test_steinbock_gated_column_under_its_own_name_is_offered_and_coloured(make_napari_viewer_proxy, qtbot):
    """The real steinbock folder has no cell-type column; a gate written as ``YBX1 gate`` (not a
    name the rule knows) appears in "colour by" and is coloured when the gating says so."""
    from napari_carspatial.editing import GatingSession
    from napari_carspatial.widgets.legend import LegendWidget

    folder = REAL / "steinbock_imc_testdata"
    if not folder.exists():
        pytest.skip(f"real data not here: {folder}")
    viewer = make_napari_viewer_proxy()
    legend = LegendWidget(viewer)
    qtbot.addWidget(legend)
    viewer.open(str(folder), plugin="napari-carspatial")
    session = session_for(viewer)
    (sid,) = session.samples()
    sample = session.sample(sid)
    assert legend.coloring is not None and legend.coloring.key is None
    assert legend.no_types.isVisibleTo(legend)                      # says why nothing is coloured
    assert "YBX1 gate" not in _items(legend)
    gating = GatingSession(sample)
    gating.set_marker("YBX1")
    gating.set_threshold(float(np.median(gating.values("YBX1"))))
    gating.add_gate()
    gating.add_rule("YBX1 high", "YBX1+")
    gating.key = "YBX1 gate"
    res = gating.apply(sample)
    assert res.key == "YBX1 gate"
    session.table_changed(sid, columns=[res.key], reason="gating")
    assert "YBX1 gate" in _items(legend)
    assert legend.column_box.currentData() == "YBX1 gate"
    assert legend.coloring.key == "YBX1 gate"
    names = [legend.categories.tree.topLevelItem(i).text(1)
             for i in range(legend.categories.tree.topLevelItemCount())]
    assert sorted(names) == sorted(res.counts)                         # the class list of the gate
    assert not legend.no_types.isVisibleTo(legend)
    # a later change to another column does not take the colouring away
    session.table_changed(sid, columns=["area"], reason="test")
    assert legend.coloring.key == "YBX1 gate"


def _cosmx_like(with_types: bool):
    """A small sample whose table has the real CosMx reader's columns (``fov`` categorical with one
    value, ``fov_labels``, ``cells_region``, ``cell_ID``) and, optionally, ``cell_type_rna``."""
    s = grid_sample(types=("0: Rims2/Tenm2", "1: Stxbp1/Nrgn", "2: Atp1a2/Glul"))
    t = s.table
    types = t.obs["cell_type"].copy()
    obs = pd.DataFrame({"fov": pd.Categorical(["1"] * t.n_obs), "Area": t.obs["area"].to_numpy().astype(int),
                        "fov_labels": pd.Categorical(["1_labels"] * t.n_obs),
                        "cell_ID": t.obs["cell_id"].to_numpy(), "area": t.obs["area"].to_numpy()},
                       index=t.obs_names)
    if with_types:
        obs["cell_type_rna"] = types.to_numpy()
    t.obs = obs
    from napari_carspatial.model.conventions import set_table_link

    set_table_link(t, region="1_cells", instance_key="cell_ID", region_key="cells_region")
    return s, types


def test_cosmx_columns_legend_colours_rna_types_not_fov(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.legend import LegendWidget

    viewer = make_napari_viewer_proxy()
    legend = LegendWidget(viewer)
    qtbot.addWidget(legend)
    s, types = _cosmx_like(with_types=True)
    add_sample_layers(viewer, s)
    assert legend.coloring.key == "cell_type_rna"
    assert legend.column_box.currentData() == "cell_type_rna"
    assert legend.categories.tree.topLevelItemCount() == 3


def test_cosmx_columns_rna_typing_made_later_is_coloured(make_napari_viewer_proxy, qtbot):
    from napari_carspatial.widgets.legend import LegendWidget

    viewer = make_napari_viewer_proxy()
    legend = LegendWidget(viewer)
    qtbot.addWidget(legend)
    s, types = _cosmx_like(with_types=False)
    add_sample_layers(viewer, s)
    assert legend.coloring.key is None                       # not fov: nothing is a cell type yet
    assert legend.no_types.isVisibleTo(legend)
    session = session_for(viewer)
    sid = session.sid_of(s)
    s.table.obs["cell_type_rna"] = types.to_numpy()            # the Transcripts dock's typing
    session.table_changed(sid, columns=["cell_type_rna"], reason="cell typing (leiden)")
    assert legend.coloring.key == "cell_type_rna"
    assert legend.column_box.currentData() == "cell_type_rna"
