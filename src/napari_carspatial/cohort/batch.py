"""Run the same curated analysis over every sample of a cohort, on Dask.

``run_batch(manifest, config, out)`` reads each sample of the manifest, quantifies it when there
is no cell table, applies saved gating rules, takes the regions (whole tissue, a GeoJSON per
sample, or tumour core / margin derived from the tumour cells), computes the region metrics and
writes::

    RESULTS/
      samples/<sample>/metrics.csv      tidy: sample, region, metric, value, unit
      samples/<sample>/summary.json     cells per type and per region, timings
      samples/<sample>/thumbnail.png    composite of 3 channels (when there is an image; one display
                                        range per marker across the cohort) + cell types
      samples/<sample>/overview.npz     the 3 channels at the smallest level, for that range
      samples/<sample>/done.json        marker written last: the sample is finished
      metrics.csv                       every finished sample, clinical columns joined
      failures.csv                      samples that failed (sample, error, stage)
      batch.log                         log of the runs
      run.json                          manifest, config, counts, scheduler of the last run
      thumbnail_contrast.json           the display range of each marker (cohort/thumbnails.py)

Finished samples are skipped on the next run (``force=True`` recomputes them); a sample whose
inputs or configuration changed since it finished is recomputed. A failing sample is recorded
and the others go on. Work runs on a local Dask cluster (processes) by default, on an existing
scheduler with ``scheduler="tcp://..."``, or in this process with ``scheduler="sequential"``.

The config lives in :mod:`.config`, one manifest row's helpers (results folder, reading,
measuring) in :mod:`.samples`; their names are re-exported here.

Headless: no napari, no Qt.

One module (627 lines) because one sample's processing and the cohort run (skipping finished
samples, recording failures, collecting metrics, the Dask client) share the results layout above and
the done-marker protocol; the config and the per-sample reading helpers are already in
:mod:`.config` and :mod:`.samples`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..model import SampleError
from ..model.atomic import atomic_write, atomic_write_text
from .config import (  # noqa: F401 - the config's names, re-exported (callers import them from here)
    BUILTIN_METRICS,
    DEFAULT_METRICS,
    METRICS_ENTRY_POINTS,
    QUANTIFY_OPTIONS,
    REGION_MODES,
    BatchConfig,
    load_config,
    metric_registry,
    resolve_metrics,
)
from .manifest import Manifest, read_manifest
from .regions import (
    AUTO_DEFAULTS,
    auto_empty_reasons,
    auto_regions,
    empty_region_notes,
    geojson_regions,
)
from .samples import (  # noqa: F401 - re-exported: the per-sample helpers lived here
    check_folder_names,
    input_fingerprint,
    is_done,
    quantify_sample,
    read_cohort_sample,
    row_pixel_size,
    safe_name,
    sample_dir,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anndata import AnnData

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- one sample
def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def _accepted(fn) -> set[str]:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return set(params) | {"distance", "region_areas_mm2"}
    return set(params)


def process_sample(row: dict, cfg: BatchConfig | dict, out: str, scheme: dict | None = None) -> dict:
    """Analyse one sample and write its results (runs on a Dask worker or in-process).

    Dask arrays of the sample are computed in this task's thread (synchronous scheduler): a
    sample is the unit of parallelism.

    Parameters
    ----------
    row
        The sample's manifest row (:meth:`~napari_carspatial.cohort.manifest.Manifest.row_dict`).
    cfg
        The batch config (or its mapping).
    out
        The batch results folder.
    scheme
        The gating scheme as a dict (:func:`resolve_gating`), or ``None``.

    Returns
    -------
    dict
        ``{"sample", "status": "done" | "failed", "seconds", "n_cells", "error", "stage",
        "traceback"}``. Never raises: a failure is returned with the stage it happened in.
    """
    import dask

    with dask.config.set(scheduler="synchronous"):
        return _process_sample(row, cfg, out, scheme)


def _process_sample(row: dict, cfg, out: str, scheme: dict | None) -> dict:
    cfg = load_config(cfg) if not isinstance(cfg, BatchConfig) else cfg
    sid = row["sample"]
    sdir = sample_dir(out, sid)
    sdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stage = "read"
    timings = {}
    warnings_: list[str] = []
    try:
        for old in ("done.json", "error.txt"):
            (sdir / old).unlink(missing_ok=True)
        sample = read_cohort_sample(row, pixel_size_um=cfg.pixel_size_um, measure=False)
        timings["read_s"] = time.perf_counter() - t0
        if sample.table is None:
            stage = "quantify"
            t1 = time.perf_counter()
            quantify_sample(sample, cfg.quantify)
            timings["quantify_s"] = time.perf_counter() - t1
        adata = sample.table

        stage = "pixel size"
        from ..model.conventions import set_pixel_size_um
        from ..model.pixel_size import pixel_size_info, set_pixel_size_source

        ps, ps_source = row_pixel_size(row, cfg.pixel_size_um)
        if ps is None:
            info = pixel_size_info(sample)
            ps, ps_source = info.value, info.source
        if ps:  # the sample and its table say the same pixel size and where it came from
            sample.pixel_size_um = float(ps)
            set_pixel_size_um(adata, float(ps))
            set_pixel_size_source(sample, ps_source)
        if not ps:
            raise SampleError("unknown pixel size: densities per mm² and distances in µm need it.",
                              path=row.get("image") or row.get("table"),
                              hint="Give it in a pixel_size_um column of the manifest or as pixel_size_um: in the "
                                   "analysis config, or store it in the table (uns) or the image metadata.")
        log.info("%s: pixel size %g µm (%s)", sid, ps, ps_source)
        if scheme is not None:
            stage = "gating"
            from ..analysis.gating import GatingScheme, store_gating

            store_gating(adata, GatingScheme.from_dict(scheme), key=cfg.gating_key, reviewer="carspatial batch")
        stage = "cell types"
        # vocab: the cell-type column found by one rule for the CLI, the docks and the batch
        from ..model.cell_types import excluded_cells, resolve_cell_type_key

        ct = resolve_cell_type_key(adata, cfg.type_key(), path=row.get("table") or row.get("image"))
        key = ct.key
        log.info("%s: %s", sid, ct.describe())
        excluded = excluded_cells(adata, key)
        if excluded is not None:  # the reviewers' exclusions (artefacts, folds) are not tissue to analyse
            adata = adata[~excluded].copy()
            warnings_.append(f"{int(excluded.sum())} cell(s) excluded by the reviewers in {key!r} are left out")
            log.info("%s: %d cell(s) excluded by the reviewers are left out", sid, int(excluded.sum()))
        stage = "regions"
        fn = resolve_metrics(cfg.metrics, source=cfg.source)
        opts = dict(cfg.metric_options)
        opts.setdefault("seed", cfg.seed)
        accepts = _accepted(fn)
        mode = cfg.regions.get("mode", "auto")
        areas: dict = {}
        if mode == "whole":
            regions = {"whole": np.ones(adata.n_obs, bool)}
        elif mode == "geojson":
            if not row.get("regions"):
                raise SampleError("regions.mode is geojson but the manifest gives no regions file for this sample.")
            problems: list = []
            regions, areas = geojson_regions(row["regions"], adata, pixel_size_um=ps, problems=problems)
            warnings_ += [f"{row['regions']}: feature {f['feature']} ({f['name']!r}) {f['problem']}" for f in problems]
            if "region_areas_mm2" in accepts:
                opts.setdefault("region_areas_mm2", areas)
        else:
            ropts = {k: float(v) for k, v in cfg.regions.items() if k in AUTO_DEFAULTS}
            regions, dist = auto_regions(adata, cell_type_key=key, roles=opts.get("roles"),
                                         tumor_types=cfg.regions.get("tumor_types"), pixel_size_um=ps, **ropts)
            if "distance" in accepts:
                opts.setdefault("distance", dist)
        notes = empty_region_notes(regions, areas, auto_empty_reasons(**{**AUTO_DEFAULTS, **cfg.regions})
                                   if mode == "auto" else None)
        for r, why in notes.items():
            warnings_.append(f"region {r!r}: {why}; its densities and fractions are NaN")
            log.warning("%s: region %r: %s; its densities and fractions are NaN", sid, r, why)
        stage = "metrics"
        t1 = time.perf_counter()
        df = fn(adata, cell_type_key=key, regions=regions, pixel_size_um=ps, **opts)
        timings["metrics_s"] = time.perf_counter() - t1
        if not isinstance(df, pd.DataFrame) or not {"region", "metric", "value"} <= set(df.columns):
            raise SampleError("the metric function must return a DataFrame with columns region, metric, value.")
        df = df.copy()
        if "unit" not in df.columns:
            df["unit"] = ""
        if cfg.ligrec is not None:
            stage = "ligrec"
            t1 = time.perf_counter()
            lr, why = ligrec_rows(adata, key, regions, cfg, pixel_size_um=ps, labels=sample.labels)
            timings["ligrec_s"] = time.perf_counter() - t1
            if why:
                warnings_.append(why)
                log.warning("%s: %s", sid, why)
            df = pd.concat([df, lr], ignore_index=True)
        df = _apply_notes(df, notes)
        df.insert(0, "sample", sid)
        df = df[["sample", "region", "metric", "value", "unit", "note"]
                + [c for c in df.columns if c not in ("sample", "region", "metric", "value", "unit", "note")]]
        stage = "write"
        _atomic_csv(df, sdir / "metrics.csv")
        stage = "thumbnail"
        try:
            from .thumbnails import save_overview

            save_overview(sample, adata, key, regions, sdir, channels=cfg.thumbnail.get("channels"))
        except Exception:  # noqa: BLE001 - a thumbnail never fails a sample
            log.warning("%s: thumbnail failed", sid, exc_info=True)
        types = adata.obs[key].astype(str)
        summary = {
            "sample": sid, "n_cells": int(adata.n_obs), "pixel_size_um": float(ps), "pixel_size_source": ps_source,
            "cell_type_key": key,
            "cell_types": {str(k): int(v) for k, v in types.value_counts().items()},
            "regions": {r: int(np.asarray(m).sum()) for r, m in regions.items()},
            "table_source": sample.metadata.get("table_source") or "the manifest's table",
            "region_notes": notes, "warnings": warnings_,
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        stage = "write"
        atomic_write_text(sdir / "summary.json", json.dumps(summary, indent=1))
        secs = time.perf_counter() - t0
        atomic_write_text(sdir / "done.json", json.dumps({
            "sample": sid, "config": cfg.fingerprint(), "inputs": input_fingerprint(row),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(secs, 3)}))
        return {"sample": sid, "status": "done", "seconds": secs, "n_cells": int(adata.n_obs), "error": "",
                "stage": "", "traceback": ""}
    except Exception as err:  # noqa: BLE001 - one sample never stops the batch
        tb = traceback.format_exc()
        msg = str(err) if isinstance(err, SampleError) else f"{type(err).__name__}: {err}"
        with contextlib.suppress(OSError):
            atomic_write_text(sdir / "error.txt", f"stage: {stage}\n{msg}\n\n{tb}")
        return {"sample": sid, "status": "failed", "seconds": time.perf_counter() - t0, "n_cells": None,
                "error": msg, "stage": stage, "traceback": tb}


def ligrec_rows(adata: AnnData, cell_type_key: str, regions: dict, cfg: BatchConfig, *, pixel_size_um: float,
                labels: list | None = None) -> tuple[pd.DataFrame, str]:
    """The config's ``ligrec:`` metrics of one sample, as rows of its ``metrics.csv``.

    Parameters
    ----------
    adata
        The sample's cell table (after gating and exclusions).
    cell_type_key
        Its cell-type column.
    regions
        Region name -> cell mask, as for the region metrics.
    cfg
        The batch config (its ``ligrec`` section and ``seed``).
    pixel_size_um
        The sample's pixel size (graph distances in µm).
    labels
        The sample's label pyramid (``method: contact`` needs it).

    Returns
    -------
    rows : pandas.DataFrame
        ``region, metric, value, unit, note`` (:func:`~napari_carspatial.analysis.ligrec.ligrec_sample_metrics`).
    warning : str
        Empty, or why no pair could be tested in this sample (its panel lacks the genes): then
        one ``lr_n_tested`` NaN row per region says so, and the sample still finishes.
    """
    from ..analysis.ligrec import ligrec_sample_metrics

    opts = dict(cfg.ligrec or {})
    pairs = opts.pop("pairs", None) or "cart"
    if isinstance(pairs, list):
        pairs = [tuple(p) for p in pairs]
    if opts.get("method") == "contact":
        if not labels:
            raise SampleError("ligrec.method is contact but the sample has no mask.")
        opts["labels"] = labels[0]
    try:
        df = ligrec_sample_metrics(adata, cell_type_key, pairs=pairs, regions=regions, pixel_size_um=pixel_size_um,
                                   seed=cfg.seed, **opts)
        why = ""
    except ValueError as err:  # none of the pairs in this panel
        why = f"ligand-receptor: {err}"
        df = pd.DataFrame([{"region": r, "metric": "lr_n_tested", "value": np.nan, "note": str(err)} for r in regions])
    df["unit"] = ""
    return df[["region", "metric", "value", "unit", "note"]], why


def check_ligrec(cfg: BatchConfig) -> None:
    """Fail before any sample runs when the ``ligrec:`` pairs cannot be loaded.

    Parameters
    ----------
    cfg
        The batch config.

    Raises
    ------
    SampleError
        liana is missing, the resource name is unknown or the CSV unreadable (names the config).
    """
    if cfg.ligrec is None:
        return
    from ..analysis.ligrec import resolve_pairs

    pairs = cfg.ligrec.get("pairs") or "cart"
    try:
        resolve_pairs([], [tuple(p) for p in pairs] if isinstance(pairs, list) else pairs)
    except (ImportError, KeyError, OSError, ValueError) as err:
        raise SampleError(f"ligrec.pairs {pairs!r} cannot be loaded: {str(err).strip(chr(39))}.",
                          path=cfg.source) from None


#: metrics that stay defined in an empty region (counts and the area itself)
_COUNT_METRICS = ("area_mm2",)


def _apply_notes(df: pd.DataFrame, notes: dict[str, str]) -> pd.DataFrame:
    """NaN (never a silent 0) for every density, fraction and ratio of an empty region, with the reason
    in the ``note`` column; counts (``n_*``) and the area stay."""
    df = df.copy()
    if "note" not in df.columns:
        df["note"] = ""
    df["note"] = df["note"].fillna("").astype(str)
    for region, why in notes.items():
        sel = (df["region"] == region) & ~df["metric"].astype(str).str.startswith("n_") \
            & ~df["metric"].isin(_COUNT_METRICS)
        df.loc[sel, "value"] = np.nan
        df.loc[df["region"] == region, "note"] = why
    return df


# --------------------------------------------------------------------------- the batch
@dataclass
class BatchResult:
    """What a batch run did. ``metrics`` is the tidy cohort table written to ``metrics.csv``."""

    out: Path
    done: list[str]
    skipped: list[str]
    failed: pd.DataFrame
    metrics: pd.DataFrame
    seconds: float
    scheduler: str


class _Progress:
    """The batch's progress bar: :mod:`tqdm` on stderr, as ``carspatial quantify`` draws its own."""

    def __init__(self, total: int, *, stream=None, enabled: bool = True):
        from tqdm import tqdm

        self.failed = 0
        self.bar = tqdm(total=total, desc="batch", unit="sample", file=stream or sys.stderr,
                        disable=not (enabled and total > 0), dynamic_ncols=True)

    def update(self, status: str, name: str) -> None:
        self.failed += status != "done"
        self.bar.set_postfix_str(f"{self.failed} failed, last {name}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def resolve_gating(manifest: Manifest, cfg: BatchConfig) -> dict | None:
    """The gating scheme the batch applies: the config's file, or the one stored in the curated sample.

    Parameters
    ----------
    manifest
        The cohort manifest (``from_sample`` is one of its samples).
    cfg
        The batch config (``gating`` or ``from_sample``).

    Returns
    -------
    dict or None
        The scheme as a dict (picklable, for workers), or ``None`` without gating.

    Raises
    ------
    SampleError
        ``from_sample`` is not in the manifest, has no table, or its table holds no gating.
    """
    from ..analysis.gating import import_gating, load_gating

    if cfg.gating:
        return import_gating(cfg.gating).to_dict()
    if cfg.from_sample:
        sid = str(cfg.from_sample)
        if sid not in manifest.table.index:
            raise SampleError(f"from_sample {sid!r} is not a sample of the manifest {manifest.path}.",
                              path=cfg.source)
        row = manifest.row_dict(sid)
        if not row.get("table"):
            raise SampleError(f"from_sample {sid!r} has no table in the manifest, so no stored gating.",
                              path=cfg.source)
        from ..io import read_table

        scheme = load_gating(read_table(row["table"]))
        if scheme is None:
            raise SampleError(f"the table of sample {sid!r} has no stored gating (uns['carspatial']['gating']).",
                              path=row["table"], hint="Apply and save the gating in the Gating widget first.")
        return scheme.to_dict()
    return None


def collect_metrics(out: str | os.PathLike, manifest: Manifest) -> pd.DataFrame:
    """Concatenate the finished samples' ``metrics.csv`` and join the clinical columns.

    Parameters
    ----------
    out
        The batch results folder.
    manifest
        The cohort manifest.

    Returns
    -------
    pandas.DataFrame
        ``sample, region, metric, value, unit, note`` + the clinical columns.
    """
    frames = []
    for sid in manifest.samples:
        d = sample_dir(out, sid)
        if (d / "done.json").is_file() and (d / "metrics.csv").is_file():
            df = pd.read_csv(d / "metrics.csv", dtype={"sample": str, "note": str}, keep_default_na=True)
            df = df[df["sample"] == sid]  # a folder holds one sample's results, never another's
            if len(df):
                frames.append(df)
    cols = ["sample", "region", "metric", "value", "unit", "note"]
    if not frames:
        return pd.DataFrame(columns=cols + list(manifest.clinical().columns))
    df = pd.concat(frames, ignore_index=True)
    if "note" not in df.columns:
        df["note"] = ""
    df["note"] = df["note"].fillna("")
    clin = manifest.clinical().reset_index()
    df = df.merge(clin, on="sample", how="left")
    front = cols + [c for c in clin.columns if c != "sample"]
    return df[front + [c for c in df.columns if c not in front]]


def _client(scheduler: str | None, workers: int | None):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="20s"), None, scheduler
    n = workers or max(1, min(2, os.cpu_count() or 1))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.WARNING)
    return Client(cluster), cluster, f"LocalCluster({n} workers x 1 thread, processes)"


def run_batch(manifest: str | os.PathLike | Manifest, config: str | os.PathLike | dict | BatchConfig | None = None,
              out: str | os.PathLike = "results", *, scheduler: str | None = None, workers: int | None = None,
              force: bool = False, progress: bool = True, samples: Iterable[str] | None = None,
              client: Any = None) -> BatchResult:
    """Analyse every sample of a cohort manifest; see the module docstring for the outputs.

    Parameters
    ----------
    manifest
        Manifest path or :class:`~napari_carspatial.cohort.manifest.Manifest`.
    config
        Analysis config: YAML path, mapping, :class:`BatchConfig` or ``None`` (defaults).
    out
        Results folder (created).
    scheduler
        ``None``: a local Dask cluster (``workers`` processes, 1 thread each); ``"tcp://host:8786"``:
        an existing Dask scheduler (its workers need napari-carspatial installed and must see the
        data paths); ``"sequential"``: in this process, one sample after the other.
    workers
        Workers of the local cluster (default: min(2, CPUs)).
    force
        Recompute finished samples.
    progress
        Draw a progress line on stderr.
    samples
        Only these sample ids (default: all).
    client
        An existing ``distributed.Client`` to use (overrides ``scheduler``).

    Returns
    -------
    BatchResult
    """
    t0 = time.perf_counter()
    man = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    cfg = load_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    handler = logging.FileHandler(out / "batch.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("napari_carspatial")
    root.addHandler(handler)
    old_level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    own_client = cluster = None
    try:
        resolve_metrics(cfg.metrics, source=cfg.source)  # fail early, before any worker starts
        check_ligrec(cfg)
        check_folder_names(man.samples, path=man.path)
        scheme = resolve_gating(man, cfg)
        ids = list(man.samples) if samples is None else [s for s in man.samples if s in set(samples)]
        rows = [man.row_dict(s) for s in ids]
        todo = [r for r in rows if force or not is_done(out, r, cfg)]
        skipped = [r["sample"] for r in rows if r not in todo]
        if skipped:
            log.info("batch: %d finished sample(s) skipped (use --force to recompute): %s", len(skipped),
                     ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
        log.info("batch: %d sample(s) to analyse, config %s, results in %s", len(todo), cfg.source or "(defaults)",
                 out)
        bar = _Progress(len(todo), enabled=progress)
        results = []
        if not todo:
            where = "nothing to do"
        elif client is None and scheduler == "sequential":
            where = "sequential (this process)"
            for r in todo:
                res = process_sample(r, cfg, os.fspath(out), scheme)
                _report(res)
                bar.update(res["status"], res["sample"])
                results.append(res)
        else:
            if client is None:
                own_client, cluster, where = _client(scheduler, workers)
                client = own_client
            else:
                where = f"client {client.scheduler.address}"
            from distributed import as_completed

            futs = {client.submit(process_sample, r, cfg, os.fspath(out.resolve()), scheme, pure=False,
                                  key=f"carspatial-{safe_name(r['sample'])}-{os.urandom(4).hex()}"): r["sample"]
                    for r in todo}
            for fut in as_completed(futs):
                sid = futs[fut]
                try:
                    res = fut.result()
                except Exception as err:  # noqa: BLE001 - worker died, unpicklable result, ...
                    res = {"sample": sid, "status": "failed", "seconds": None, "n_cells": None,
                           "error": f"{type(err).__name__}: {err}", "stage": "worker",
                           "traceback": traceback.format_exc()}
                _report(res)
                bar.update(res["status"], sid)
                results.append(res)
        bar.close()
        failed = pd.DataFrame([{k: r[k] for k in ("sample", "stage", "error")} for r in results
                               if r["status"] != "done"], columns=["sample", "stage", "error"])
        _atomic_csv(failed, out / "failures.csv")
        metrics = collect_metrics(out, man)
        _atomic_csv(metrics, out / "metrics.csv")
        from .thumbnails import refresh_cohort_thumbnails

        try:  # one display range per marker across the cohort, so pre and post thumbnails compare
            refresh_cohort_thumbnails(out, man.samples, sample_dir=sample_dir)
        except Exception:  # noqa: BLE001 - thumbnails never fail a batch
            log.warning("batch: cohort thumbnails failed", exc_info=True)
        secs = time.perf_counter() - t0
        done = [r["sample"] for r in results if r["status"] == "done"]
        info = {"manifest": os.fspath(man.path), "config": cfg.to_dict(), "config_file": cfg.source,
                "scheduler": where, "done": done, "skipped": skipped, "failed": failed["sample"].tolist(),
                "seconds": round(secs, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_text(out / "run.json", json.dumps(info, indent=1, default=str))
        log.info("batch: %d done, %d skipped, %d failed in %.1f s (%s)", len(done), len(skipped), len(failed), secs,
                 where)
        return BatchResult(out=out, done=done, skipped=skipped, failed=failed, metrics=metrics, seconds=secs,
                           scheduler=where)
    finally:
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def _report(res: dict) -> None:
    if res["status"] == "done":
        log.info("%s: done in %.2f s (%s cells)", res["sample"], res["seconds"] or 0, res["n_cells"])
    else:
        log.error("%s: FAILED at %s: %s", res["sample"], res["stage"], res["error"])
        log.debug("%s traceback:\n%s", res["sample"], res["traceback"])
