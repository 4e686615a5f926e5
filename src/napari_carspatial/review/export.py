"""``carspatial project export``: the final table of every finished sample, with provenance.

A sample is exported when both reads are done and it is adjudicated, or when its reads agree on
every cell and region (nothing to adjudicate). The final table is a copy of the **source** table
(all its columns) with, added::

    obs[<type>_read_<reviewer>]        each reader's call ("(excluded)" for an excluded cell)
    obs[exclude_reason_read_<r>]       each reader's exclusion reason
    obs[reviewed_read_<r>]             the cells each reader reviewed
    obs[<type>_adjudicated]            the final call (agreed, or the adjudicator's decision)
    obs[excluded_adjudicated]          final exclusion flag (final call is "(excluded)"),
    obs[exclude_reason_adjudicated]    and its reason
    obs[review_disagreement]           the two reads differed on the cell
    uns["carspatial_rois"]             the final regions; uns["carspatial_review"] both reads' regions
    uns["carspatial_edit_log"]         the source's audit rows, then both reads', then the decisions
    uns["carspatial"]["review"]        {"final_key": <type>_adjudicated, "provenance": JSON}

Written atomically (:func:`napari_carspatial.model.atomic.atomic_write`) to
``PROJECT/export/<sample>.h5ad`` (or ``--out``; ``<sample>`` is the sample id made file-safe
injectively by :func:`napari_carspatial.cohort.batch.safe_name`, as the batch names its results
folders: ``P02/post`` -> ``P02_post~<hash>``), never over a file of the manifest. Next to the
tables: ``<sample>.provenance.json``, ``<sample>.geojson`` (final regions, QuPath flavour),
``manifest.csv`` (the cohort manifest pointing at the final tables and regions, ready for
``carspatial batch``; a sample whose readers drew no regions keeps the cohort's regions file), ``agreement_samples.csv``, ``agreement_classes.csv``,
``agreement_regions.csv``, ``agreement_trial.json``, ``decisions.csv`` (every adjudication audit
row) and ``agreement.html`` (the agreement section as a page). Exports are not blinded.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..cohort.batch import check_folder_names, safe_name
from ..model import SampleError, edit_log
from ..model.atomic import atomic_write, atomic_write_text
from ..model.conventions import UNS_KEY, instance_ids
from ..model.curation import EXCLUDE_REASON_KEY, REVIEWED_KEY, ROI_UNS_KEY, rois_to_frame
from .adjudication import _REVIEW_UNS, _rois_json, adjudicated_key_of, final_rois_of_table
from .agreement import N_BOOT, SampleAgreement, combine_agreements
from .project import ADJUDICATED, FORMAT_VERSION, ReviewProject, _now
from .reads import (
    EXCLUDED_CALL,
    _read_h5ad,
    _statuses,
    read_pair,
    read_source,
    writable_obs_index,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """What :func:`export_project` wrote.

    Attributes
    ----------
    folder
        The export folder.
    written
        ``{sample: final table path}``.
    skipped
        ``{sample: why}`` (reads not done, disagreements not adjudicated).
    files
        Every file written.
    agreement
        :class:`~napari_carspatial.review.agreement.TrialAgreement` of the exported samples.
    """

    folder: Path
    written: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    agreement: object = None


def versions() -> dict:
    """Versions recorded in the provenance."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "project_format_version": FORMAT_VERSION}
    for pkg in ("napari-carspatial", "anndata", "numpy", "pandas", "scipy", "shapely", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _clean(obj):
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _source_paths(project: ReviewProject) -> set[str]:
    out = set()
    for s in project.manifest.samples:
        for p in project.manifest.paths(s).values():
            if p:
                out.add(os.path.normcase(os.path.realpath(p)))
    out.add(os.path.normcase(os.path.realpath(project.manifest_path)))
    return out


def _guard(target: Path, sources: set[str]) -> None:
    if os.path.normcase(os.path.realpath(target)) in sources:
        raise SampleError("is a source file of the cohort; an export never writes over a source.", path=target,
                          hint="Choose another export folder (--out).")


def _final_reason(t, readers, akey) -> np.ndarray:
    final = t.obs[akey].astype(object).to_numpy()
    out = np.full(t.n_obs, None, dtype=object)
    exc = final == EXCLUDED_CALL
    for r in reversed(readers):  # read 1's reason wins where both excluded
        rs = t.obs[f"{EXCLUDE_REASON_KEY}_read_{r}"].astype(object).to_numpy()
        has = exc & pd.notna(rs)
        out[has] = rs[has]
    out[exc & pd.isna(out)] = "adjudicated"
    return out


def export_sample(project: ReviewProject, sample: str, folder: Path, *, n_boot: int = N_BOOT, seed: int = 0,
                  sources: set[str] | None = None) -> tuple[Path, SampleAgreement, list[Path], pd.DataFrame]:
    """Export one sample (see the module docstring); returns (table path, agreement, files, decisions).

    Raises
    ------
    SampleError
        Reads not done, or disagreements not adjudicated (the message says which).
    """
    from ..io.write import provenance
    from ..model import pixel_size_um

    entry = project.entry(sample)
    if not entry.reads_done:
        raise SampleError(f"reads not done ({_statuses(entry) or 'no readers assigned'})")
    pair = read_pair(project, sample)
    sa = SampleAgreement.of(pair, n_boot=n_boot, seed=seed)
    r1, r2 = pair.readers
    akey = adjudicated_key_of(pair.start_key)
    n_dis = len(sa.cells.disagreeing_ids)
    reg_dis = sa.regions.disagreeing_classes
    if entry.adjudication.status == ADJUDICATED:
        t = _read_h5ad(project.adjudication_path(sample))
        final_rois = final_rois_of_table(t)
        log_rows = edit_log.get_log(t)
    elif n_dis == 0 and not reg_dis:
        t = pair.table
        t.obs[akey] = t.obs[pair.call_keys[r1]].copy()
        t.obs["review_disagreement"] = np.zeros(t.n_obs, bool)
        final_rois = list(pair.rois.get(r1, []))
        log_rows = pd.concat([pair.logs[r1], pair.logs[r2]], ignore_index=True)
    else:
        left_cells, left_regions = n_dis, list(reg_dis)
        path = project.adjudication_path(sample)
        if path.exists():  # an adjudication in progress: count what is still undecided
            t_adj = _read_h5ad(path)
            left_cells = int((t_adj.obs["review_disagreement"].to_numpy(bool)
                              & t_adj.obs[akey].isna().to_numpy()).sum())
            decided = json.loads(t_adj.uns[_REVIEW_UNS]["adjudication"]).get("region_decisions") or {}
            left_regions = [c for c in reg_dis if c not in decided]
        raise SampleError(f"not adjudicated: {left_cells} of {n_dis} disagreeing cell(s) and {len(left_regions)} of "
                          f"{len(reg_dis)} region class(es) undecided (adjudication: "
                          f"{entry.adjudication.status.replace('_', ' ')}, "
                          f"adjudicator: {entry.adjudication.reviewer or 'none assigned'})")
    src = read_source(project, entry)
    final = src.table.copy()
    sid = instance_ids(final)
    tid = instance_ids(t)
    pos = pd.Index(tid).get_indexer(sid)
    if (pos < 0).any() or len(np.unique(pos)) != len(pos) or len(tid) != len(sid):
        raise SampleError(f"the source table of {sample!r} no longer matches its reads "
                          f"({len(sid)} cells in the source, {len(tid)} read).", path=src.paths.get("table"))
    cols = [*(pair.call_keys[r] for r in (r1, r2)), *(f"{EXCLUDE_REASON_KEY}_read_{r}" for r in (r1, r2)),
            *(f"{REVIEWED_KEY}_read_{r}" for r in (r1, r2)), akey, "review_disagreement"]
    for c in cols:
        if c in final.obs:
            log.warning("%s: the source already has a column %r; the export replaces it in its copy", sample, c)
        v = t.obs[c]
        final.obs[c] = (pd.Categorical(np.asarray(v.astype(object))[pos], categories=v.cat.categories)
                        if isinstance(v.dtype, pd.CategoricalDtype) else np.asarray(v)[pos])
    fa = final.obs[akey].astype(object).to_numpy()
    final.obs["excluded_adjudicated"] = fa == EXCLUDED_CALL
    final.obs["exclude_reason_adjudicated"] = pd.Categorical(_final_reason(t, (r1, r2), akey)[pos])
    final.uns[ROI_UNS_KEY] = rois_to_frame(final_rois)
    final.uns[_REVIEW_UNS] = {f"rois_{r}": _rois_json(pair.rois.get(r, [])) for r in (r1, r2)}
    prior = edit_log.get_log(final)
    final.uns[edit_log.EDIT_LOG_KEY] = pd.concat([prior, log_rows], ignore_index=True).astype(str)
    final.uns[edit_log.EDIT_LOG_KEY].index = final.uns[edit_log.EDIT_LOG_KEY].index.astype(str)
    decisions = log_rows[log_rows["action"].isin(["adjudicate", "adjudicate_region"])].copy()
    decisions.insert(0, "sample", sample)
    reads = []
    for rd in sorted(entry.reads, key=lambda r: r.read):
        lg = pair.logs.get(rd.reviewer)
        reads.append({"read": rd.read, "reviewer": rd.reviewer,
                      "name": project.reviewers.get(rd.reviewer).name if rd.reviewer in project.reviewers else "",
                      "started": rd.started, "finished": rd.finished, "n_actions": int(len(lg)) if lg is not None else 0})
    row = project.manifest_row(sample)
    prov = {
        "sample": sample, "code": entry.code, "project": project.name, "project_file": os.fspath(project.file.resolve()),
        "manifest": os.fspath(project.manifest_path), "blinding": project.blinding,
        "type_key": pair.start_key, "final_key": akey, "read_keys": {r: pair.call_keys[r] for r in (r1, r2)},
        "reads": reads,
        "adjudication": {"reviewer": entry.adjudication.reviewer, "status": entry.adjudication.status,
                         "started": entry.adjudication.started, "finished": entry.adjudication.finished,
                         "n_decisions": int((decisions["action"] == "adjudicate").sum()),
                         "n_region_decisions": int((decisions["action"] == "adjudicate_region").sum()),
                         "needed": bool(n_dis or reg_dis)},
        "agreement": {**sa.cells.summary(), "ci_method": sa.cells.ci_method, "n_boot": n_boot, "seed": seed,
                      "regions": {c: {"dice": r["dice"], "iou": r["iou"]} for c, r in sa.regions.per_class.iterrows()}},
        "source": provenance({k: row.get(k) for k in ("image", "mask", "table", "regions")}),
        "source_at_first_read": entry.source,
        "exported": _now(), "versions": versions(),
    }
    prov = _clean(prov)
    meta = dict(final.uns.get(UNS_KEY) or {})
    meta["review"] = {"final_key": akey, "provenance": json.dumps(prov, allow_nan=False)}
    if pixel_size_um(final) is None and src.pixel_size_um:
        meta["pixel_size_um"] = float(src.pixel_size_um)
    final.uns[UNS_KEY] = meta
    name = safe_name(sample)
    target = folder / f"{name}.h5ad"
    sources = sources if sources is not None else _source_paths(project)
    files = []
    for p in (target, folder / f"{name}.provenance.json", folder / f"{name}.geojson"):
        _guard(p, sources)
    writable_obs_index(final)
    try:
        atomic_write(target, lambda tmp: final.write_h5ad(tmp))
        files.append(target)
        atomic_write_text(folder / f"{name}.provenance.json", json.dumps(prov, indent=1, allow_nan=False))
        files.append(folder / f"{name}.provenance.json")
        if final_rois:
            from ..io import write_geojson

            files.append(write_geojson(final_rois, folder / f"{name}.geojson", overwrite=True))
    except OSError as err:
        raise SampleError(f"cannot write the export ({err}).", path=target, hint="Is the folder writable?") from err
    except (ValueError, TypeError) as err:  # anndata refuses a column type of the source table
        raise SampleError(f"the final table cannot be written as h5ad ({type(err).__name__}: "
                          f"{str(err).splitlines()[0]}).", path=target) from err
    log.info("exported %s: %d cells, %d disagreements, kappa %.3f -> %s", sample, final.n_obs, n_dis,
             sa.cells.kappa, target)
    return target, sa, files, decisions


def export_project(project: ReviewProject, out: str | os.PathLike | None = None, *, samples: str | Iterable[str] | None = None, n_boot: int | None = N_BOOT,
                   seed: int = 0) -> ExportResult:
    """Export every finished sample (or ``samples``) of a project (see the module docstring).

    Samples that are not finished are skipped and listed in :attr:`ExportResult.skipped` with the
    reason; nothing about them is written.

    Parameters
    ----------
    project
        The review project.
    out
        The export folder (default ``<project>/export``).
    samples
        Only these sample ids (default: all).
    n_boot
        Bootstrap replicates of the agreement intervals (``None``: the default).
    seed
        Seed of the bootstrap.

    Returns
    -------
    ExportResult
        What was written and what was skipped, with the reason.

    Raises
    ------
    SampleError
        The export folder cannot be created or written.
    """
    from ..cohort.manifest import write_manifest
    from .report import agreement_page

    project.reload()
    n_boot = N_BOOT if n_boot is None else n_boot
    folder = Path(out) if out is not None else project.folder / "export"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SampleError(f"cannot create the export folder ({err}).", path=folder) from err
    res = ExportResult(folder=folder)
    sources = _source_paths(project)
    samples = [samples] if isinstance(samples, str) else samples
    entries = [project.entry(s) for s in samples] if samples is not None else list(project.samples.values())
    check_folder_names([e.sample for e in entries], path=project.manifest_path)  # file names never collide
    results, decisions, man_rows = {}, [], []
    for e in entries:
        try:
            path, sa, files, dec = export_sample(project, e.sample, folder, n_boot=n_boot, seed=seed, sources=sources)
        except SampleError as err:
            if err.path and Path(err.path).parent == folder:
                raise  # writing the export itself failed: that is not a "not ready" skip
            res.skipped[e.sample] = str(err)
            log.warning("%s not exported: %s", e.sample, err)
            continue
        res.written[e.sample] = path
        res.files.extend(files)
        results[e.sample] = sa
        decisions.append(dec)
        row = {k: v for k, v in project.manifest.row_dict(e.sample).items() if k not in ("day", "responder")}
        row["table"] = path.name
        gj = folder / f"{safe_name(e.sample)}.geojson"
        # the readers' final regions; where they drew none, the cohort's own regions file (the
        # working copies do not carry it, and the batch on this manifest needs it)
        row["regions"] = gj.name if gj in files else (row.get("regions") or "")
        man_rows.append(row)
    if results:
        trial = combine_agreements(results, n_boot=n_boot, seed=seed)
        res.agreement = trial
        out_files = {
            "agreement_samples.csv": trial.per_sample, "agreement_classes.csv": trial.per_class,
            "agreement_regions.csv": trial.regions,
            "decisions.csv": pd.concat(decisions, ignore_index=True) if decisions else pd.DataFrame(),
        }
        for fname, df in out_files.items():
            p = folder / fname
            _guard(p, sources)
            atomic_write(p, lambda tmp, df=df: df.to_csv(tmp, index=False))
            res.files.append(p)
        tj = {"pooled": trial.pooled, "pooled_per_class": trial.pooled_per_class.reset_index().to_dict("records"),
              "regions_pooled": trial.regions_pooled.reset_index().to_dict("records"),
              "confusion": {"classes": list(trial.confusion.index), "counts": trial.confusion.to_numpy().tolist()},
              "cell_ci_method": trial.cell_ci_method, "trial_ci_method": trial.trial_ci_method, "ci": trial.ci,
              "n_boot": trial.n_boot, "seed": seed, "notes": trial.notes, "exported": _now(), "versions": versions()}
        p = folder / "agreement_trial.json"
        _guard(p, sources)
        atomic_write_text(p, json.dumps(_clean(tj), indent=1, allow_nan=False))
        res.files.append(p)
        mp = folder / "manifest.csv"
        _guard(mp, sources)
        write_manifest(man_rows, mp)
        res.files.append(mp)
        hp = folder / "agreement.html"
        _guard(hp, sources)
        atomic_write_text(hp, agreement_page(trial, title=f"Reader agreement: {project.name}"))
        res.files.append(hp)
    log.info("export: %d sample(s) written to %s, %d skipped", len(res.written), folder, len(res.skipped))
    return res
