"""Agreement of two reads: kappa against scikit-learn and hand-computed numbers, regions, trial pooling."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from napari_carspatial.model import ROI
from napari_carspatial.review import (
    agreement,
    combine_agreements,
    kappa_from_confusion,
    region_agreement,
)

# ten cells, hand-computed: rows read A, columns read B, classes in sorted order M, S, T
A10 = ["T", "T", "T", "S", "S", "M", "M", "M", "T", "S"]
B10 = ["T", "T", "S", "S", "S", "M", "T", "M", "T", "M"]
HAND_CONFUSION = [[2, 0, 1],   # A = M: B says M, M, T
                  [1, 2, 0],   # A = S: B says S, S, M
                  [0, 1, 3]]   # A = T: B says T, T, S, T
# p_o = 7/10; marginals A (3, 3, 4), B (3, 3, 4): p_e = (9 + 9 + 16) / 100 = 0.34
HAND_KAPPA = (0.7 - 0.34) / (1 - 0.34)          # = 6/11
# class M vs rest: both M 2, only A 1, only B 1, neither 6: p_o 0.8, p_e 0.3*0.3 + 0.7*0.7 = 0.58
HAND_KAPPA_M = (0.8 - 0.58) / (1 - 0.58)        # = 11/21


def _table(a, b, ids=None):
    return pd.DataFrame({"cell_id": np.arange(1, len(a) + 1) * 7 if ids is None else ids, "read_a": a, "read_b": b})


def test_hand_computed_ten_cells():
    res = agreement(_table(A10, B10), "read_a", "read_b", n_boot=0)
    assert res.classes == ["M", "S", "T"]
    assert res.confusion.to_numpy().tolist() == HAND_CONFUSION
    assert res.confusion.index.name == "read_a" and res.confusion.columns.name == "read_b"
    assert res.n_cells == 10 and res.n_left_out == 0
    assert res.percent_agreement == pytest.approx(70.0)
    assert res.expected_agreement == pytest.approx(0.34)
    assert res.kappa == pytest.approx(HAND_KAPPA) and res.kappa == pytest.approx(6 / 11)
    assert res.per_class.loc["M", "kappa"] == pytest.approx(HAND_KAPPA_M)
    assert res.per_class.loc["M", ["n_a", "n_b", "n_both"]].tolist() == [3, 3, 2]
    # disagreeing cells are reported by id with both calls
    assert res.disagreeing_ids.tolist() == [21, 49, 70]  # cells 3, 7 and 10
    assert res.disagreements[["read_a", "read_b"]].to_numpy().tolist() == [["T", "S"], ["M", "T"], ["S", "M"]]
    assert kappa_from_confusion(HAND_CONFUSION) == pytest.approx(6 / 11)


def test_matches_sklearn_on_random_reads():
    rng = np.random.default_rng(3)
    types = np.array(["Tumor", "CAR T", "Macrophage", "Stroma", "CD8 T"])
    a = rng.choice(types, 800, p=[0.4, 0.1, 0.2, 0.2, 0.1])
    b = np.where(rng.random(800) < 0.75, a, rng.choice(types, 800))
    res = agreement(_table(a, b), "read_a", "read_b", n_boot=0)
    assert res.kappa == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    np.testing.assert_array_equal(res.confusion.to_numpy(), confusion_matrix(a, b, labels=res.classes))
    for c in res.classes:  # one class vs the rest
        assert res.per_class.loc[c, "kappa"] == pytest.approx(cohen_kappa_score(a == c, b == c), abs=1e-12)
    assert res.percent_agreement == pytest.approx(100 * np.mean(a == b))
    assert len(res.disagreeing_ids) == int((a != b).sum())
    # a subset of classes as sklearn's labels=: cells outside are left out, and said so
    sub = ["Tumor", "Macrophage", "Stroma"]
    rs = agreement(_table(a, b), "read_a", "read_b", classes=sub, n_boot=0)
    assert rs.kappa == pytest.approx(cohen_kappa_score(a, b, labels=sub), abs=1e-12)
    np.testing.assert_array_equal(rs.confusion.to_numpy(), confusion_matrix(a, b, labels=sub))
    assert rs.n_left_out == int((~(np.isin(a, sub) & np.isin(b, sub))).sum()) and rs.notes


def test_missing_calls_left_out_and_single_class_is_nan():
    a = ["T", None, "S", "T"]
    b = ["T", "T", np.nan, "S"]
    res = agreement(_table(a, b), "read_a", "read_b", n_boot=0)
    assert res.n_cells == 2 and res.n_left_out == 2
    one = agreement(_table(["T"] * 5, ["T"] * 5), "read_a", "read_b", n_boot=50)
    assert np.isnan(one.kappa) and one.percent_agreement == 100.0
    assert any("kappa undefined" in n for n in one.notes)
    with warnings.catch_warnings():  # sklearn agrees: undefined, NaN (and warns)
        warnings.simplefilter("ignore")
        assert np.isnan(cohen_kappa_score(["T"] * 5, ["T"] * 5))
    with pytest.raises(KeyError, match="no column 'nope'"):
        agreement(_table(a, b), "read_a", "nope")


def test_anndata_ids_and_mask():
    import anndata as ad

    obs = _table(A10, B10, ids=np.arange(100, 110))
    adata = ad.AnnData(obs=obs.set_index(obs["cell_id"].astype(str)))
    adata.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region": "x", "region_key": "region"}
    res = agreement(adata, "read_a", "read_b", n_boot=0)
    assert res.disagreeing_ids.tolist() == [102, 106, 109]
    m = np.zeros(10, bool)
    m[:5] = True
    rm = agreement(adata, "read_a", "read_b", mask=m, n_boot=0)
    assert rm.n_cells == 5 and rm.kappa == pytest.approx(cohen_kappa_score(A10[:5], B10[:5]))


def test_cell_bootstrap_equals_resampling_cells():
    """The multinomial bootstrap of the confusion matrix is resampling cells: same interval."""
    rng = np.random.default_rng(0)
    a = rng.choice(list("abc"), 300)
    b = np.where(rng.random(300) < 0.7, a, rng.choice(list("abc"), 300))
    res = agreement(_table(a, b), "read_a", "read_b", n_boot=4000, seed=1)
    idx = np.random.default_rng(2).integers(0, 300, size=(4000, 300))  # resample cells explicitly
    ar, br = a[idx], b[idx]
    po = (ar == br).mean(axis=1)
    pe = sum((ar == c).mean(axis=1) * (br == c).mean(axis=1) for c in "abc")
    ref = (po - pe) / (1 - pe)
    for k in range(3):  # the vectorised reference is sklearn's kappa
        assert ref[k] == pytest.approx(cohen_kappa_score(ar[k], br[k]))
    lo, hi = np.percentile(ref, [2.5, 97.5])
    assert res.kappa_ci[0] == pytest.approx(lo, abs=0.015) and res.kappa_ci[1] == pytest.approx(hi, abs=0.015)
    assert res.kappa_ci[0] < res.kappa < res.kappa_ci[1]
    assert "over cells" in res.ci_method


def _square(y0, x0, y1, x1, cls, name="r", holes=()):
    return ROI(name, np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float), cls=cls, holes_yx=list(holes))


def test_region_dice_iou_hand_computed():
    a = [_square(0, 0, 10, 10, "Tumor core"), _square(50, 50, 60, 60, "Stroma")]
    b = [_square(0, 5, 10, 15, "Tumor core"), _square(0, 100, 4, 104, "TLS")]
    ra = region_agreement(a, b, pixel_size_um=0.5, reader_a="alice", reader_b="bob")
    pc = ra.per_class
    # core: 100 px² each, overlap 50, union 150
    assert pc.loc["Tumor core", ["area_a", "area_b", "intersection", "union"]].tolist() == [100, 100, 50, 150]
    assert pc.loc["Tumor core", "dice"] == pytest.approx(0.5) and pc.loc["Tumor core", "iou"] == pytest.approx(1 / 3)
    assert pc.loc["Tumor core", "area_a_um2"] == pytest.approx(25.0)
    assert pc.loc["Stroma", "dice"] == 0 and "only alice" in pc.loc["Stroma", "note"]
    assert pc.loc["TLS", "dice"] == 0 and "only bob" in pc.loc["TLS", "note"]
    assert sorted(ra.disagreeing_classes) == ["Stroma", "TLS", "Tumor core"]
    # a class nobody drew (asked for): NaN with the reason
    rn = region_agreement(a, b, classes=["Exclude"])
    assert np.isnan(rn.per_class.loc["Exclude", "dice"]) and "neither" in rn.per_class.loc["Exclude", "note"]
    # two overlapping polygons of one class count once; a hole is outside; identical -> 1
    a2 = [_square(0, 0, 10, 10, "Stroma"), _square(0, 5, 10, 15, "Stroma")]
    b2 = [_square(0, 0, 10, 15, "Stroma", holes=[np.array([[2, 2], [2, 4], [4, 4], [4, 2]], float)])]
    r2 = region_agreement(a2, b2).per_class.loc["Stroma"]
    assert r2["area_a"] == 150 and r2["area_b"] == 146 and r2["intersection"] == 146
    assert r2["dice"] == pytest.approx(2 * 146 / 296)
    assert region_agreement(a2, a2).disagreeing_classes == []


def test_trial_pooled_equals_concatenated_cells():
    rng = np.random.default_rng(5)
    per, ab = {}, []
    for i, n in enumerate((120, 300, 80, 200)):
        a = rng.choice(list("TSMC"), n)
        b = np.where(rng.random(n) < 0.6 + 0.08 * i, a, rng.choice(list("TSMC"), n))
        ab.append((a, b))
        per[f"S{i}"] = agreement(_table(a, b), "read_a", "read_b", n_boot=200, seed=i)
    trial = combine_agreements(per, n_boot=2000, seed=0)
    A = np.concatenate([x for x, _ in ab])
    B = np.concatenate([y for _, y in ab])
    assert trial.pooled["kappa"] == pytest.approx(cohen_kappa_score(A, B), abs=1e-12)
    assert trial.pooled["n_cells"] == len(A) and trial.pooled["n_samples"] == 4
    np.testing.assert_array_equal(trial.confusion.to_numpy(), confusion_matrix(A, B, labels=list("CMST")))
    ks = [cohen_kappa_score(x, y) for x, y in ab]
    assert trial.pooled["mean_kappa"] == pytest.approx(np.mean(ks))
    assert trial.per_sample["kappa"].tolist() == pytest.approx(ks)
    for c in "CMST":
        assert trial.pooled_per_class.loc[c, "kappa"] == pytest.approx(cohen_kappa_score(c == A, c == B))
    lo, hi = trial.pooled["kappa_ci_low"], trial.pooled["kappa_ci_high"]
    assert lo <= trial.pooled["kappa"] <= hi and min(ks) - 1e-9 <= lo and hi <= max(ks) + 1e-9
    assert "over samples" in trial.trial_ci_method and any("coarse" in n for n in trial.notes)
    per_class = trial.per_class[trial.per_class["sample"] == "S1"].set_index("class")
    a1, b1 = ab[1]
    assert per_class.loc["M", "kappa"] == pytest.approx(cohen_kappa_score(a1 == "M", b1 == "M"))


def test_report_fragment_is_escaped_and_self_contained():
    from napari_carspatial.review import SampleAgreement, agreement_section

    rng = np.random.default_rng(0)
    res = {}
    for i, name in enumerate(["P<1>&'pre'", "P2 <script>alert(1)</script>"]):
        a = rng.choice(["Tumor", "<b>CAR T</b>", "Macrophage"], 200)
        b = np.where(rng.random(200) < 0.8, a, rng.choice(["Tumor", "<b>CAR T</b>"], 200))
        cells = agreement(_table(a, b), "read_a", "read_b", n_boot=100, seed=i)
        regs = region_agreement([_square(0, 0, 10, 10, "Tumor core")], [_square(0, 5, 10, 15, "Tumor core")])
        res[name] = SampleAgreement(sample=name, readers=("alice", "bob"), cells=cells, regions=regs)
    trial = combine_agreements(res, n_boot=200)
    html = agreement_section(trial, title="Agreement & <co>")
    assert html.startswith('<section class="agreement"') and html.endswith("</section>")
    assert "<script" not in html and "<b>CAR T" not in html and "<co>" not in html
    assert "P&lt;1&gt;&amp;&#x27;pre&#x27;" in html and "&lt;b&gt;CAR T&lt;/b&gt;" in html
    assert html.count("data:image/png;base64,") == 1 and "http" not in html and "src=\"data:" in html
    assert f"{trial.pooled['kappa']:.3f}" in html and "0.500" in html  # pooled kappa; Dice of the squares
    for k in trial.per_sample["kappa"]:
        assert f"{k:.3f}" in html
    empty = agreement_section(combine_agreements({}, n_boot=0))
    assert "No sample has two finished reads" in empty
