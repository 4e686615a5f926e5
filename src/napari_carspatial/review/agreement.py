"""Inter-reviewer agreement: cell calls (Cohen's kappa) and regions (Dice, IoU), per sample and trial.

Cells
    :func:`agreement` compares two call columns of one table: percent agreement, Cohen's kappa
    overall and per class (that class vs the rest, a 2 x 2 kappa), the confusion matrix (rows:
    ``column_a``, columns: ``column_b``) and the disagreeing cells. Cohen's kappa is
    ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and ``p_e`` the agreement
    expected from the two readers' class frequencies (as ``sklearn.metrics.cohen_kappa_score``).
    Intervals: percentile bootstrap **over cells within the sample** (resampling cells with
    replacement is drawing the confusion matrix from a multinomial with the observed cell
    proportions, which is how it is computed).
Regions
    :func:`region_agreement`: per ROI class, the union of one reader's polygons of that class
    against the other's (shapely): Dice ``2|A∩B| / (|A| + |B|)`` and IoU ``|A∩B| / |A∪B|``.
Trial
    :func:`combine_agreements`: per sample rows, and across the trial the **pooled** kappa (the
    summed confusion matrices; every cell weighs the same) and the **mean of the per-sample
    kappas** (every sample weighs the same), per class too, and pooled Dice / IoU per ROI class
    (summed areas). Trial intervals: percentile bootstrap **over samples** (cells of one sample are
    not independent of each other; resampling samples keeps them together). With few samples such
    intervals are coarse: read them as a range.

Undefined values are NaN with a reason in ``notes``: kappa when both readers put every cell in
one class (``p_e = 1``), Dice / IoU of a class neither reader drew.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .region_agreement import (  # regions: review/region_agreement.py
    RegionAgreement,
    region_agreement,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

log = logging.getLogger(__name__)

#: bootstrap resamples of every agreement interval (status, export, reports): one number, so one
#: sample shows one interval wherever it is reported
N_BOOT = 1000

CELL_CI_METHOD = "percentile bootstrap over cells within the sample"
TRIAL_CI_METHOD = "percentile bootstrap over samples"


# =========================================================================== kappa arithmetic
def _kappa_parts(C: np.ndarray):
    """Observed agreement, expected agreement and kappa of confusion matrices ``(..., K, K)``."""
    C = np.asarray(C, float)
    n = C.sum(axis=(-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        po = np.trace(C, axis1=-2, axis2=-1) / n
        pe = (C.sum(axis=-1) * C.sum(axis=-2)).sum(axis=-1) / n**2
        kappa = np.where(np.isclose(pe, 1.0), np.nan, (po - pe) / (1.0 - pe))
    return po, pe, kappa


def _class_kappas(C: np.ndarray):
    """One-vs-rest kappa and agreement of each class from confusion matrices ``(..., K, K)`` -> ``(..., K)``."""
    C = np.asarray(C, float)
    n = C.sum(axis=(-1, -2))[..., None]
    a = np.diagonal(C, axis1=-2, axis2=-1)          # both say k
    ra = C.sum(axis=-1)                             # A says k
    cb = C.sum(axis=-2)                             # B says k
    d = n - ra - cb + a                             # neither says k
    with np.errstate(invalid="ignore", divide="ignore"):
        po = (a + d) / n
        pa, pb = ra / n, cb / n
        pe = pa * pb + (1 - pa) * (1 - pb)
        kappa = np.where(np.isclose(pe, 1.0), np.nan, (po - pe) / (1.0 - pe))
    return po, kappa


def kappa_from_confusion(confusion: np.ndarray | pd.DataFrame) -> float:
    """Cohen's kappa of a confusion matrix (NaN when the expected agreement is 1).

    Parameters
    ----------
    confusion
        Square matrix of counts (rows: reader A's classes, columns: reader B's).

    Returns
    -------
    float
        Cohen's kappa, or NaN.
    """
    return float(_kappa_parts(np.asarray(confusion))[2])


def _interval(reps: np.ndarray, ci: float):
    """Percentile interval over the first axis, ignoring non-finite replicates (NaN when none)."""
    lo, hi = (1 - ci) / 2 * 100, (1 + ci) / 2 * 100
    reps = np.asarray(reps, float)
    reps = np.where(np.isfinite(reps), reps, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        q = np.nanpercentile(reps, [lo, hi], axis=0)
    return q[0], q[1]


# =========================================================================== cells
@dataclass
class Agreement:
    """Agreement of two call columns (see :func:`agreement`).

    Attributes
    ----------
    column_a
        The first compared column (confusion rows).
    column_b
        The second compared column (confusion columns).
    classes
        Class order of the confusion matrix.
    n_cells
        Cells compared (a call in both columns, within ``classes``).
    n_left_out
        Cells left out (missing call in either column, or a call outside ``classes``).
    percent_agreement
        Percent of compared cells with the same call (0-100).
    kappa
        Cohen's kappa.
    expected_agreement
        The chance agreement ``p_e``.
    kappa_ci
        Interval of ``kappa`` (``ci_method``; NaN without a bootstrap).
    percent_ci
        Interval of ``percent_agreement`` (``ci_method``; NaN without a bootstrap).
    per_class
        Index class: ``n_a``, ``n_b`` (cells each column puts there), ``n_both``,
        ``percent_agreement`` (that class vs the rest), ``kappa`` (one vs rest), ``kappa_ci_low``,
        ``kappa_ci_high``.
    confusion
        DataFrame: rows ``column_a``'s classes, columns ``column_b``'s, counts.
    disagreeing_ids
        Instance ids (mask labels) of the cells the two columns call differently.
    disagreements
        DataFrame ``cell_id``, ``column_a``, ``column_b`` (the two calls) of those cells.
    ci
        Interval coverage.
    ci_method
        How the intervals were computed.
    n_boot
        Bootstrap replicates (0: no intervals).
    notes
        Why a value is NaN.
    """

    column_a: str
    column_b: str
    classes: list[str]
    n_cells: int
    n_left_out: int
    percent_agreement: float
    kappa: float
    expected_agreement: float
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    disagreeing_ids: np.ndarray
    disagreements: pd.DataFrame
    kappa_ci: tuple[float, float] = (np.nan, np.nan)
    percent_ci: tuple[float, float] = (np.nan, np.nan)
    ci: float = 0.95
    ci_method: str = CELL_CI_METHOD
    n_boot: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """Plain numbers: ``n_cells, percent_agreement, kappa, kappa_ci_low/high, n_disagreements``."""
        return {"n_cells": self.n_cells, "n_left_out": self.n_left_out, "n_disagreements": int(len(self.disagreeing_ids)),
                "percent_agreement": self.percent_agreement, "kappa": self.kappa,
                "kappa_ci_low": self.kappa_ci[0], "kappa_ci_high": self.kappa_ci[1],
                "percent_ci_low": self.percent_ci[0], "percent_ci_high": self.percent_ci[1]}

    def __repr__(self) -> str:
        return (f"Agreement({self.column_a} vs {self.column_b}: {self.n_cells} cells, "
                f"{self.percent_agreement:.1f}% agree, kappa {self.kappa:.3f}, {len(self.disagreeing_ids)} disagreements)")


def _ids_of(table, n: int) -> np.ndarray:
    from ..model.conventions import get_table_link

    obs = getattr(table, "obs", None)
    if obs is not None:
        key = get_table_link(table)["instance_key"]
        if key in obs:
            return np.asarray(obs[key], dtype=np.int64)
        return np.asarray(obs.index)
    df = table
    for key in ("cell_id", "instance_id", "label"):
        if key in df.columns and pd.api.types.is_integer_dtype(df[key]):
            return np.asarray(df[key], dtype=np.int64)
    return np.asarray(df.index)


def agreement(table: AnnData | pd.DataFrame, column_a: str, column_b: str, *, classes: Sequence[str] | None = None, mask: np.ndarray | None = None, n_boot: int = N_BOOT,
              ci: float = 0.95, seed: int = 0) -> Agreement:
    """Agreement of two cell-call columns of one table.

    Parameters
    ----------
    table
        AnnData (columns in ``obs``; cell ids from its instance-id column) or a DataFrame.
    column_a
        The first reader's call column.
    column_b
        The second reader's call column.
    classes
        Class order (and subset) of the confusion matrix; cells with a call outside it in either
        column are left out (as ``sklearn.metrics.cohen_kappa_score(labels=...)``). Default: every
        call seen, sorted.
    mask
        Boolean per row: compare only these cells (e.g. cells both readers reviewed).
    n_boot
        Bootstrap replicates of the intervals (over cells); 0: no intervals.
    ci
        Interval coverage.
    seed
        Seed of the bootstrap.

    Returns
    -------
    Agreement
        Percent agreement, kappa, per-class values, confusion matrix and disagreeing cells.

    Raises
    ------
    KeyError
        A column is not in the table.
    """
    obs = getattr(table, "obs", table)
    for c in (column_a, column_b):
        if c not in obs.columns:
            raise KeyError(f"no column {c!r} in the table (columns: {', '.join(map(str, obs.columns))})")
    ids = _ids_of(table, len(obs))
    a = obs[column_a].astype(object).where(obs[column_a].notna(), None).to_numpy()
    b = obs[column_b].astype(object).where(obs[column_b].notna(), None).to_numpy()
    a = np.array([None if v is None else str(v) for v in a], dtype=object)
    b = np.array([None if v is None else str(v) for v in b], dtype=object)
    keep = np.array([x is not None for x in a]) & np.array([x is not None for x in b])
    if mask is not None:
        keep &= np.asarray(mask, bool)
    notes = []
    if classes is None:
        cls = sorted(set(a[keep].tolist()) | set(b[keep].tolist()))
    else:
        cls = [str(c) for c in classes]
        if len(set(cls)) != len(cls):
            raise ValueError(f"classes has duplicates: {cls}")
        inside = np.isin(a, cls) & np.isin(b, cls)
        if (keep & ~inside).any():
            notes.append(f"{int((keep & ~inside).sum())} cells with a call outside classes left out")
        keep &= inside
    n_left = int(len(a) - keep.sum())
    K = len(cls)
    index = {c: i for i, c in enumerate(cls)}
    ia = np.array([index[x] for x in a[keep]], dtype=np.int64)
    ib = np.array([index[x] for x in b[keep]], dtype=np.int64)
    C = np.bincount(ia * K + ib, minlength=K * K).reshape(K, K) if K else np.zeros((0, 0), np.int64)
    n = int(C.sum())
    if n == 0:
        notes.append("no cell has a call in both columns")
    po, pe, kappa = (_kappa_parts(C) if n else (np.nan, np.nan, np.nan))
    if n and np.isclose(pe, 1.0):
        notes.append("both columns put every cell in one class (expected agreement 1): kappa undefined")
    cpo, ck = _class_kappas(C) if n else (np.full(K, np.nan), np.full(K, np.nan))
    disagree = keep.copy()
    disagree[keep] = ia != ib
    per = pd.DataFrame({"n_a": C.sum(axis=1), "n_b": C.sum(axis=0), "n_both": np.diagonal(C),
                        "percent_agreement": 100 * np.asarray(cpo, float), "kappa": np.asarray(ck, float),
                        "kappa_ci_low": np.nan, "kappa_ci_high": np.nan}, index=pd.Index(cls, name="class"))
    res = Agreement(column_a=column_a, column_b=column_b, classes=cls, n_cells=n, n_left_out=n_left,
                    percent_agreement=float(100 * po) if n else np.nan, kappa=float(kappa),
                    expected_agreement=float(pe), per_class=per,
                    confusion=pd.DataFrame(C, index=pd.Index(cls, name=column_a), columns=pd.Index(cls, name=column_b)),
                    disagreeing_ids=np.asarray(ids)[disagree],
                    disagreements=pd.DataFrame({"cell_id": np.asarray(ids)[disagree], column_a: a[disagree],
                                                column_b: b[disagree]}),
                    ci=float(ci), n_boot=int(n_boot), notes=notes)
    if n_boot and n:
        rng = np.random.default_rng(seed)
        reps = rng.multinomial(n, C.ravel() / n, size=int(n_boot)).reshape(int(n_boot), K, K)
        rpo, _rpe, rk = _kappa_parts(reps)
        _, rck = _class_kappas(reps)
        res.kappa_ci = tuple(float(v) for v in _interval(rk, ci))
        res.percent_ci = tuple(float(100 * v) for v in _interval(rpo, ci))
        lo, hi = _interval(rck, ci)
        per["kappa_ci_low"], per["kappa_ci_high"] = lo, hi
    return res


# =========================================================================== one sample, the trial
@dataclass
class SampleAgreement:
    """Cell and region agreement of one sample's two reads.

    Attributes
    ----------
    sample
        The sample id.
    readers
        (read 1, read 2) reviewer ids.
    cells
        Agreement of the two reads' cell calls.
    regions
        Agreement of the two reads' regions.
    """

    sample: str
    readers: tuple[str, str]
    cells: Agreement
    regions: RegionAgreement

    @classmethod
    def of(cls, pair, *, n_boot: int = N_BOOT, seed: int = 0, mask=None) -> SampleAgreement:
        """From a :class:`~napari_carspatial.review.reads.ReadPair`."""
        r1, r2 = pair.readers
        cells = agreement(pair.table, pair.call_keys[r1], pair.call_keys[r2], n_boot=n_boot, seed=seed, mask=mask)
        regions = region_agreement(pair.rois.get(r1, []), pair.rois.get(r2, []), pixel_size_um=pair.pixel_size_um,
                                   reader_a=r1, reader_b=r2)
        return cls(sample=pair.label, readers=(r1, r2), cells=cells, regions=regions)


@dataclass
class TrialAgreement:
    """Agreement across the samples of a trial (see :func:`combine_agreements`).

    Attributes
    ----------
    per_sample
        One row per sample: ``sample, reader_a, reader_b, n_cells, n_disagreements,
        percent_agreement, kappa, kappa_ci_low, kappa_ci_high`` (intervals over cells).
    per_class
        One row per sample and class: ``sample, class, n_a, n_b, kappa, kappa_ci_low, kappa_ci_high``.
    pooled
        ``n_samples, n_cells, percent_agreement, kappa, kappa_ci_low, kappa_ci_high`` of the summed
        confusion matrices, and ``mean_kappa, mean_kappa_ci_low, mean_kappa_ci_high`` of the
        per-sample kappas (intervals over samples).
    pooled_per_class
        Index class: pooled one-vs-rest ``kappa`` with its interval, ``mean_kappa``.
    regions
        One row per sample and ROI class: ``sample, class, dice, iou, area_a, area_b``.
    regions_pooled
        Index class: ``dice, dice_ci_low, dice_ci_high, iou, n_samples`` (summed areas).
    confusion
        The pooled confusion matrix.

    ci
        Interval coverage.
    n_boot
        Bootstrap replicates (0: no intervals).
    cell_ci_method
        How the per-sample intervals (over cells) were computed.
    trial_ci_method
        How the trial intervals (over samples) were computed.
    notes
        Why a value is NaN.
    """

    per_sample: pd.DataFrame
    per_class: pd.DataFrame
    pooled: dict
    pooled_per_class: pd.DataFrame
    regions: pd.DataFrame
    regions_pooled: pd.DataFrame
    confusion: pd.DataFrame
    ci: float = 0.95
    n_boot: int = 0
    cell_ci_method: str = CELL_CI_METHOD
    trial_ci_method: str = TRIAL_CI_METHOD
    notes: list[str] = field(default_factory=list)


def combine_agreements(results: Mapping, *, n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> TrialAgreement:
    """Per sample and trial agreement from per-sample results.

    Parameters
    ----------
    results
        ``{sample: SampleAgreement or Agreement}``.
    n_boot
        Bootstrap replicates (over samples) of the trial intervals.
    ci
        Interval coverage.
    seed
        Seed of the bootstrap.

    Returns
    -------
    TrialAgreement
    """
    names = list(results)
    cells = {s: (r.cells if isinstance(r, SampleAgreement) else r) for s, r in results.items()}
    regs = {s: r.regions for s, r in results.items() if isinstance(r, SampleAgreement)}
    readers = {s: (r.readers if isinstance(r, SampleAgreement) else (r.column_a, r.column_b)) for s, r in results.items()}
    classes = sorted({c for a in cells.values() for c in a.classes})
    K = len(classes)
    Cs = np.zeros((len(names), K, K))
    for i, s in enumerate(names):
        C = cells[s].confusion.reindex(index=classes, columns=classes, fill_value=0).to_numpy(float)
        Cs[i] = C
    per_sample = pd.DataFrame([{"sample": s, "reader_a": readers[s][0], "reader_b": readers[s][1],
                                **{k: v for k, v in cells[s].summary().items()
                                   if k in ("n_cells", "n_disagreements", "percent_agreement", "kappa",
                                            "kappa_ci_low", "kappa_ci_high")}} for s in names],
                              columns=["sample", "reader_a", "reader_b", "n_cells", "n_disagreements",
                                       "percent_agreement", "kappa", "kappa_ci_low", "kappa_ci_high"])
    per_class = pd.DataFrame([{"sample": s, "class": c, "n_a": int(r["n_a"]), "n_b": int(r["n_b"]),
                               "kappa": r["kappa"], "kappa_ci_low": r["kappa_ci_low"], "kappa_ci_high": r["kappa_ci_high"]}
                              for s in names for c, r in cells[s].per_class.iterrows()],
                             columns=["sample", "class", "n_a", "n_b", "kappa", "kappa_ci_low", "kappa_ci_high"])
    notes = []
    Cp = Cs.sum(axis=0)
    po, _pe, kp = _kappa_parts(Cp) if Cp.sum() else (np.nan, np.nan, np.nan)
    _, ckp = _class_kappas(Cp) if Cp.sum() else (None, np.full(K, np.nan))
    ks = per_sample["kappa"].to_numpy(float)
    pooled = {"n_samples": len(names), "n_cells": int(Cp.sum()), "percent_agreement": float(100 * po),
              "kappa": float(kp), "kappa_ci_low": np.nan, "kappa_ci_high": np.nan,
              "mean_kappa": float(np.nanmean(ks)) if np.isfinite(ks).any() else np.nan,
              "mean_kappa_ci_low": np.nan, "mean_kappa_ci_high": np.nan}
    # per class: kappa per sample (NaN where a class does not occur) -> mean
    ck_s = np.full((len(names), K), np.nan)
    for i in range(len(names)):
        if Cs[i].sum():
            _, ck_s[i] = _class_kappas(Cs[i])
    present = Cs.sum(axis=2) + Cs.sum(axis=1) > 0
    ck_s = np.where(present, ck_s, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from every sample: NaN
        mean_ck = np.nanmean(ck_s, axis=0) if len(names) else np.full(K, np.nan)
    ppc = pd.DataFrame({"kappa": ckp, "kappa_ci_low": np.nan, "kappa_ci_high": np.nan, "mean_kappa": mean_ck},
                       index=pd.Index(classes, name="class"))
    # regions
    rrows = []
    for s, ra in regs.items():
        for c, r in ra.per_class.iterrows():
            rrows.append({"sample": s, "class": c, "dice": r["dice"], "iou": r["iou"], "area_a": r["area_a"],
                          "area_b": r["area_b"], "intersection": r["intersection"], "union": r["union"]})
    regions = pd.DataFrame(rrows, columns=["sample", "class", "dice", "iou", "area_a", "area_b", "intersection", "union"])
    rcls = sorted(set(regions["class"])) if len(regions) else []
    S = len(names)
    # per sample x class arrays of areas for the bootstrap
    A = np.zeros((S, len(rcls), 4))
    sidx = {s: i for i, s in enumerate(names)}
    for s_, c_, *areas in zip(regions["sample"], regions["class"], regions["area_a"], regions["area_b"],
                              regions["intersection"], regions["union"], strict=True):
        A[sidx[s_], rcls.index(c_), :] = areas

    def _dice(t):
        with np.errstate(all="ignore"):
            den = t[..., 0] + t[..., 1]
            return np.where(den > 0, 2 * t[..., 2] / den, np.nan), np.where(t[..., 3] > 0, t[..., 2] / t[..., 3], np.nan)

    tot = A.sum(axis=0)
    dice_p, iou_p = _dice(tot) if len(rcls) else (np.array([]), np.array([]))
    rpool = pd.DataFrame({"dice": dice_p, "dice_ci_low": np.nan, "dice_ci_high": np.nan, "iou": iou_p,
                          "n_samples": (A[..., 0] + A[..., 1] > 0).sum(axis=0) if len(rcls) else []},
                         index=pd.Index(rcls, name="class"))
    if n_boot and S:
        rng = np.random.default_rng(seed)
        W = rng.multinomial(S, np.full(S, 1.0 / S), size=int(n_boot)).astype(float)   # (B, S) sample weights
        Cb = np.einsum("bs,sij->bij", W, Cs)
        _, _, kb = _kappa_parts(Cb)
        pooled["kappa_ci_low"], pooled["kappa_ci_high"] = (float(v) for v in _interval(kb, ci))
        fin = np.isfinite(ks)
        if fin.any():
            with np.errstate(all="ignore"):
                mk = (W[:, fin] @ ks[fin]) / W[:, fin].sum(axis=1)
            pooled["mean_kappa_ci_low"], pooled["mean_kappa_ci_high"] = (float(v) for v in _interval(mk, ci))
        if K:
            _, ckb = _class_kappas(Cb)
            lo, hi = _interval(ckb, ci)
            ppc["kappa_ci_low"], ppc["kappa_ci_high"] = lo, hi
        if len(rcls):
            Ab = np.einsum("bs,sck->bck", W, A)
            db, _ = _dice(Ab)
            lo, hi = _interval(db, ci)
            rpool["dice_ci_low"], rpool["dice_ci_high"] = lo, hi
        if S < 10:
            notes.append(f"{S} samples: bootstrap intervals over samples are coarse (few distinct resamples)")
    return TrialAgreement(per_sample=per_sample, per_class=per_class, pooled=pooled, pooled_per_class=ppc,
                          regions=regions, regions_pooled=rpool,
                          confusion=pd.DataFrame(Cp.astype(np.int64), index=pd.Index(classes, name="read 1"),
                                                 columns=pd.Index(classes, name="read 2")),
                          ci=ci, n_boot=int(n_boot), notes=notes)
