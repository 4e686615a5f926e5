"""The headless gating model (editing/gating.py): what the Gating dock does, without Qt.

Threshold -> positive cells equal to a hand comparison, gates keep their settings, rules as
typed (a bad row is named), apply writes the phenotype column, the same gating on a second
sample, export / import, and values re-measured in place are not stale after invalidate().
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.analysis.gating import (
    Gate,
    GatingScheme,
    PhenotypeRule,
    store_gating,
    suggest_threshold,
)
from napari_carspatial.editing.gating import GatingSession
from napari_carspatial.model import Sample

MARKERS = ["DAPI", "CD3", "CAR", "PanCK"]


def _sample(name="s", seed=0, n=300):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.normal(500, 50, n), rng.choice([20, 600], n), rng.choice([10, 400], n), rng.choice([40, 600], n)]
    t = ad.AnnData(X=X.astype(np.float32), obs=pd.DataFrame({"cell_id": np.arange(1, n + 1)},
                                                            index=[f"c{i}" for i in range(n)]))
    t.var_names = MARKERS
    return Sample(name, table=t)


def test_threshold_positive_cells_equal_hand():
    s = _sample()
    g = GatingSession(s, reviewer="jdoe")
    changes = []
    g.on_change.append(changes.append)
    g.set_marker("CD3")
    assert changes[-1] == "marker"
    g.set_threshold(200.0)
    hand = s.table.X[:, 1] > 200.0
    np.testing.assert_array_equal(g.positive(), hand)
    assert g.count_text() == f"{hand.sum():,} positive / {s.n_cells:,} cells ({100 * hand.mean():.1f}%)"
    g.set_direction("below")
    np.testing.assert_array_equal(g.positive(), s.table.X[:, 1] < 200.0)
    with pytest.raises(KeyError, match="no marker"):
        g.set_marker("CD8")


def test_default_threshold_is_otsu_and_suggest_uses_the_scale():
    s = _sample()
    g = GatingSession(s)
    g.set_scale("asinh", 5.0)
    g.set_marker("PanCK")
    v = s.table.X[:, 3].astype(float)
    assert g.threshold == pytest.approx(suggest_threshold(v, method="otsu", transform="asinh", cofactor=5.0))
    thr = g.suggest("gmm")
    assert thr == pytest.approx(suggest_threshold(v, method="gmm", transform="asinh", cofactor=5.0), rel=1e-6)
    assert 40 < thr < 600
    h, thr_x, beyond = g.histogram()
    assert h.counts.sum() + beyond == s.n_cells
    assert h.edges[0] <= thr_x <= h.edges[-1]


def test_gates_keep_their_settings_and_rules_are_checked_by_row():
    s = _sample()
    g = GatingSession(s)
    g.set_marker("CD3")
    g.set_scale("linear")
    g.set_threshold(300.0)
    g.add_gate()
    g.set_marker("CAR")
    g.set_threshold(200.0)
    g.add_gate()
    g.set_marker("CD3")                       # back to a gated marker: its settings again
    assert g.threshold == 300.0
    assert g.transform == "linear"
    assert g.add_rule() == 0                  # default: every gated marker positive
    assert g.rows[0] == ("phenotype 1", "CD3+ CAR+")
    g.set_rule(0, "CAR T", "CD3+ CAR+")
    g.add_rule("T", "CD3+ CAR-")
    g.add_rule("bad", "CD3")                  # no sign
    with pytest.raises(ValueError, match="rule 3 \\(bad\\)"):
        g.rules()
    g.remove_rule(2)
    assert g.move_rule(1, -1) == 0
    assert [r.name for r in g.rules()] == ["T", "CAR T"]
    assert g.move_rule(0, -1) == 0            # already first
    g.remove_gate("CAR")
    assert list(g.gates) == ["CD3"]


def test_apply_writes_the_column_and_the_same_gating_goes_to_another_sample(tmp_path):
    a, b = _sample("a", seed=1), _sample("b", seed=2)
    g = GatingSession(a, reviewer="jdoe")
    for m, thr in (("CD3", 300.0), ("CAR", 200.0)):
        g.set_marker(m)
        g.set_threshold(thr)
        g.add_gate()
    g.add_rule("CAR T", "CD3+ CAR+")
    res = g.apply()
    car = (a.table.X[:, 1] > 300) & (a.table.X[:, 2] > 200)
    assert res.counts == {"CAR T": int(car.sum()), "Other": int((~car).sum())}
    assert (a.table.obs["phenotype_gated"].astype(str).to_numpy() == np.where(car, "CAR T", "Other")).all()
    assert a.table.uns["carspatial"]["gating"]["applied_by"] == "jdoe"
    res_b = g.apply(b)
    car_b = (b.table.X[:, 1] > 300) & (b.table.X[:, 2] > 200)
    assert res_b.counts["CAR T"] == int(car_b.sum())
    assert res_b.lines()[0].startswith("CAR T: ")
    # export, then a fresh session on a sample without them imports the same scheme
    path = g.export(tmp_path / "gating.yaml")
    other = GatingSession(_sample("c", seed=3))
    scheme, missing = other.import_(path)
    assert missing == []
    assert other.rows == [("CAR T", "CD3+ CAR+")]
    assert other.gates["CAR"].threshold == 200.0
    assert isinstance(scheme, GatingScheme)
    with pytest.raises(ValueError, match="at least one phenotype rule"):
        GatingSession(_sample("d", seed=4)).apply()   # nothing stored, nothing typed


def test_stored_gating_is_loaded_with_the_sample():
    s = _sample()
    store_gating(s.table, GatingScheme(gates={"CD3": Gate("CD3", 123.0)}, rules=[PhenotypeRule("T", "CD3+")]))
    g = GatingSession(s)
    assert g.gates["CD3"].threshold == 123.0
    assert g.rows == [("T", "CD3+")]


def test_values_measured_again_in_place_are_not_stale():
    s = _sample()
    g = GatingSession(s)
    g.set_marker("CD3")
    g.set_threshold(300.0)
    before = int(g.positive().sum())
    s.table.X[:, 1] = 1000.0                  # re-measured in place: same number of cells
    assert int(g.positive().sum()) == before  # cached ...
    assert not g.invalidate(["CAR"])          # another column: kept
    assert g.invalidate(["CD3"])              # ... until the table says CD3 changed
    assert int(g.positive().sum()) == s.n_cells
