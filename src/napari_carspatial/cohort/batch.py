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

Headless: no napari, no Qt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..model import SampleError
from ..model.atomic import atomic_write, atomic_write_text
from .manifest import Manifest, read_manifest
from .regions import (
    AUTO_DEFAULTS,
    auto_empty_reasons,
    auto_regions,
    empty_region_notes,
    geojson_regions,
)

log = logging.getLogger(__name__)

#: where the region metrics live (first importable wins)
DEFAULT_METRICS = ("napari_carspatial.analysis.cart:region_metrics",)
#: the project's own metric functions, by name (a config's ``metrics:`` names one of these or an entry point)
BUILTIN_METRICS = {"region_metrics": "napari_carspatial.analysis.cart:region_metrics",
                   "cart": "napari_carspatial.analysis.cart:region_metrics"}
#: entry-point group other packages register metric functions in (``name = "module:function"``)
METRICS_ENTRY_POINTS = "napari_carspatial.metrics"
REGION_MODES = ("auto", "whole", "geojson")
#: options of :func:`napari_carspatial.analysis.quantify.quantify` a config's ``quantify:`` may set
QUANTIFY_OPTIONS = ("statistics", "solidity", "chunks")
_CONFIG_KEYS = {"cell_type_key", "gating", "from_sample", "gating_key", "regions", "metrics", "metric_options",
                "quantify", "thumbnail", "seed", "pixel_size_um"}


# --------------------------------------------------------------------------- configuration
@dataclass
class BatchConfig:
    """What the batch computes (read from ``ANALYSIS.yaml`` by :func:`load_config`).

    Attributes
    ----------
    cell_type_key
        ``obs`` column used as the cell type. With gating and no explicit key: the gating key;
        else found by :func:`~napari_carspatial.model.cell_types.resolve_cell_type_key` (a
        review's adjudicated column first, then a curated one, then the original).
    gating
        Gating file (JSON/YAML from :func:`~napari_carspatial.analysis.gating.export_gating`).
    from_sample
        Or: the manifest sample whose table holds the curated gating (``uns``).
    gating_key
        ``obs`` column the gated phenotype is written to.
    regions
        ``{"mode": "auto" | "whole" | "geojson", ...}``; ``auto`` options: ``core_depth_um``,
        ``margin_um``, ``grid_um``, ``smooth_um``, ``min_area_um2``, ``tumor_types``.
    metrics
        A registered metric function (:func:`metric_registry`: the project's ``region_metrics``
        or an entry point of group ``napari_carspatial.metrics``), by name or by its
        ``"module:function"``; any other name is refused (a config file never imports an
        arbitrary module). From Python, a callable with the ``region_metrics`` signature.
    metric_options
        Keyword arguments for the metric function (``roles``, ``contact_radius_um``,
        ``near_radius_um``, ``markers``, ...).
    quantify
        Keyword arguments for quantification of samples without a table (:data:`QUANTIFY_OPTIONS`:
        ``statistics``, ``solidity``, ``chunks``); the batch measures them itself, in the sample's
        task (one thread), never on open.
    thumbnail
        ``{"channels": [three channel names]}`` for the composite.
    seed
        Passed to the metric function.
    pixel_size_um
        µm per level-0 pixel for every sample (overrides the files'); a manifest row's
        ``pixel_size_um`` overrides this.
    source
        The config file (for messages).
    """

    cell_type_key: str | None = None
    gating: str | None = None
    from_sample: str | None = None
    gating_key: str = "phenotype_gated"
    regions: dict = field(default_factory=lambda: {"mode": "auto"})
    metrics: Any = None
    metric_options: dict = field(default_factory=dict)
    quantify: dict = field(default_factory=dict)
    thumbnail: dict = field(default_factory=dict)
    seed: int = 0
    pixel_size_um: float | None = None
    source: str | None = None

    @property
    def uses_gating(self) -> bool:
        return bool(self.gating or self.from_sample)

    def type_key(self) -> str | None:
        """The cell-type column the config names (the gating key with gating); ``None``: found by name."""
        if self.cell_type_key:
            return self.cell_type_key
        return self.gating_key if self.uses_gating else None

    def to_dict(self) -> dict:
        d = asdict(self)
        if callable(self.metrics):
            d["metrics"] = f"{self.metrics.__module__}:{self.metrics.__qualname__}"
        return d

    def fingerprint(self) -> str:
        d = self.to_dict()
        d.pop("source", None)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_config(config=None) -> BatchConfig:
    """A :class:`BatchConfig` from a YAML/JSON file, a mapping, a config or ``None`` (defaults).

    Relative ``gating`` paths are resolved against the config file's folder.

    Raises
    ------
    SampleError
        Naming the file and the problem (unknown key, bad region mode, ...).
    """
    if isinstance(config, BatchConfig):
        return config
    src = None
    if config is None:
        data: dict = {}
    elif isinstance(config, dict):
        data = dict(config)
    else:
        src = Path(config)
        if not src.is_file():
            raise SampleError("analysis config not found.", path=src)
        import yaml

        try:
            data = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        except Exception as err:  # noqa: BLE001 - yaml errors
            raise SampleError(f"not valid YAML ({' '.join(str(err).splitlines()[:2])}).", path=src) from None
        if not isinstance(data, dict):
            raise SampleError("the analysis config must be a mapping (key: value).", path=src)
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise SampleError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(_CONFIG_KEYS))}).", path=src)
    gating = data.get("gating")
    from_sample = data.get("from_sample")
    gating_key = data.get("gating_key", "phenotype_gated")
    if isinstance(gating, dict):
        from_sample = gating.get("from_sample", from_sample)
        gating_key = gating.get("key", gating_key)
        gating = gating.get("file") or gating.get("path")
    if gating and from_sample:
        raise SampleError("give either gating (a file) or from_sample, not both.", path=src)
    if gating and src is not None and not Path(gating).is_absolute():
        gating = os.fspath(src.parent / gating)
    regions = data.get("regions") or {"mode": "auto"}
    if isinstance(regions, str):
        regions = {"mode": regions}
    regions = dict(regions)
    regions.setdefault("mode", "auto")
    if regions["mode"] not in REGION_MODES:
        raise SampleError(f"regions.mode must be one of {', '.join(REGION_MODES)}, got {regions['mode']!r}.",
                          path=src)
    bad = sorted(set(regions) - {"mode", "tumor_types", *AUTO_DEFAULTS})
    if bad:
        raise SampleError(f"unknown regions option(s) {', '.join(bad)}.", path=src)
    mo = data.get("metric_options") or {}
    if not isinstance(mo, dict):
        raise SampleError("metric_options must be a mapping.", path=src)
    q = data.get("quantify") or {}
    if not isinstance(q, dict):
        raise SampleError("quantify must be a mapping of options.", path=src)
    bad = sorted(set(q) - set(QUANTIFY_OPTIONS))
    if bad:
        raise SampleError(f"unknown quantify option {bad[0]!r} (known: {', '.join(QUANTIFY_OPTIONS)}).", path=src)
    px = data.get("pixel_size_um")
    if px is not None:
        try:
            px = float(px)
        except (TypeError, ValueError):
            px = float("nan")
        if not (np.isfinite(px) and px > 0):
            raise SampleError(f"pixel_size_um must be a positive number of µm per pixel, got "
                              f"{data.get('pixel_size_um')!r}.", path=src)
    return BatchConfig(cell_type_key=data.get("cell_type_key"), gating=gating, from_sample=from_sample,
                       gating_key=gating_key, regions=regions, metrics=data.get("metrics"), metric_options=dict(mo),
                       quantify=dict(q), thumbnail=dict(data.get("thumbnail") or {}),
                       seed=int(data.get("seed", 0)), pixel_size_um=px, source=None if src is None else os.fspath(src))


def metric_registry() -> dict[str, str]:
    """Metric functions a config may name: ``{name: "module:function"}``.

    The project's own (:data:`BUILTIN_METRICS`) plus every entry point of the group
    ``napari_carspatial.metrics`` (in a package's ``pyproject.toml``:
    ``[project.entry-points."napari_carspatial.metrics"] my_metrics = "mypkg.metrics:region_metrics"``).
    """
    from importlib.metadata import entry_points

    reg = dict(BUILTIN_METRICS)
    for ep in entry_points(group=METRICS_ENTRY_POINTS):
        reg.setdefault(ep.name, ep.value)
    return reg


def resolve_metrics(spec=None, *, source=None) -> Callable:
    """The metric function: a callable, a registered name or ``"module:function"``, or the default.

    Raises
    ------
    SampleError
        ``spec`` names nothing in :func:`metric_registry` (the config names the file), or the
        registered function cannot be imported.
    """
    if callable(spec):
        return spec
    if spec:
        reg = metric_registry()
        target = reg.get(str(spec)) or (str(spec) if str(spec) in reg.values() else None)
        if target is None:
            raise SampleError(f"metrics {str(spec)!r} is not a registered metric function (known: "
                              f"{', '.join(sorted(reg))}); a config never imports other modules.", path=source,
                              hint=f"Register it as an entry point of group {METRICS_ENTRY_POINTS!r} in its "
                                   "package, or pass the function itself from Python.")
        specs = [target]
    else:
        specs = list(DEFAULT_METRICS)
    errors = []
    for s in specs:
        mod_name, _, fn_name = str(s).partition(":")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as err:
            errors.append(f"{s}: {err}")
            continue
        fn = getattr(mod, fn_name or "region_metrics", None)
        if callable(fn):
            return fn
        errors.append(f"{s}: no function {fn_name!r}")
    raise SampleError("cannot load the region metric function (" + "; ".join(errors) + ").", path=source)


# --------------------------------------------------------------------------- one sample
def safe_name(sample: str) -> str:
    """Folder name of a sample id: injective, so two samples never share a results folder.

    Characters a file system may not take (path separators, spaces, ...) become ``_``; when
    anything was replaced, a short hash of the exact id is appended (``P02/post`` ->
    ``P02_post~1b0e7d3a``, while ``P02_post`` stays ``P02_post``).
    """
    sid = str(sample)
    s = re.sub(r"[^\w.\-+@=]+", "_", sid, flags=re.UNICODE).strip("._")
    if s != sid or not s:
        s = f"{s or 'sample'}~{hashlib.sha1(sid.encode('utf-8')).hexdigest()[:8]}"
    return s


def sample_dir(out, sample: str) -> Path:
    return Path(out) / "samples" / safe_name(sample)


def check_folder_names(samples, *, path=None) -> None:
    """Refuse sample ids whose results folders would collide on a case-insensitive file system
    (macOS, Windows, many shares): ``P01-pre`` and ``p01-pre``. Names both."""
    seen: dict[str, str] = {}
    clashes = []
    for sid in samples:
        key = safe_name(sid).casefold()
        if key in seen:
            clashes.append(f"{seen[key]!r} and {sid!r}")
        else:
            seen[key] = sid
    if clashes:
        raise SampleError(f"sample ids {'; '.join(clashes)} differ only in upper/lower case, so their results "
                          "folders would be the same folder on macOS / Windows.", path=path,
                          hint="Give them ids that differ in more than case.")


def input_fingerprint(row: dict) -> str:
    """Hash of the sample's input paths, sizes and modification times."""
    parts = []
    for k in ("image", "mask", "table", "regions"):
        p = row.get(k)
        if p and os.path.exists(p):
            st = os.stat(p)
            parts.append(f"{k}={p}:{st.st_size}:{int(st.st_mtime_ns)}")
        else:
            parts.append(f"{k}={p}")
    for k in ("pixel_size_um", "image_name"):  # row values that change what is analysed
        if row.get(k) is not None:
            parts.append(f"{k}={row[k]}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def is_done(out, row: dict, cfg: BatchConfig) -> bool:
    """Whether the sample finished with the same inputs and configuration."""
    marker = sample_dir(out, row["sample"]) / "done.json"
    if not marker.is_file():
        return False
    try:
        d = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if d.get("sample") != row["sample"]:
        return False
    same = d.get("config") == cfg.fingerprint() and d.get("inputs") == input_fingerprint(row)
    if not same:
        log.info("%s: inputs or configuration changed since it finished; recomputing", row["sample"])
    return same


def row_pixel_size(row: dict, default: float | None = None) -> tuple[float | None, str | None]:
    """The pixel size a manifest row gives (its ``pixel_size_um`` column), else ``default`` (the
    config's), with where it came from; ``(None, None)`` when neither gives one (the files' is used)."""
    v = row.get("pixel_size_um")
    if v is not None and not (isinstance(v, float) and np.isnan(v)):
        return float(v), "manifest pixel_size_um"
    if default is not None:
        return float(default), "config pixel_size_um"
    return None, None


def read_cohort_sample(row: dict, *, pixel_size_um: float | None = None, measure: bool = True):
    """Read one manifest row (``image`` + ``mask`` + ``table``, or ``table`` [+ ``mask``]) as a Sample
    named by its sample id.

    Table and mask ids are checked as :func:`~napari_carspatial.io.read_sample` checks them: a
    table of another image is refused, never analysed. The pixel size is the row's
    ``pixel_size_um``, else ``pixel_size_um`` (the config's), else the files'. ``measure=False``:
    a row with image + mask and no table is read without measuring its cells (the batch measures
    them with the config's options).
    """
    from ..io import read_sample, read_table
    from ..model import Sample
    from ..model import pixel_size_um as table_pixel_size

    px, _ = row_pixel_size(row, pixel_size_um)
    if row.get("image"):
        s = read_sample(row["image"], mask=row.get("mask"), table=row.get("table"), name=row["sample"],
                        pixel_size_um=px, measure=measure)
        if isinstance(s, list):
            if len(s) != 1:
                raise SampleError(f"{len(s)} samples in this folder; give one image per manifest row.",
                                  path=row["image"])
            s = s[0]
    else:
        # a multi-image table (cytomapper / steinbock cells.csv) keeps only this sample's rows: those
        # of its mask, else of the image its ``image_name`` column or its sample id names
        keys = {"mask": row["mask"]} if row.get("mask") else {"image": row.get("image_name") or row["sample"]}
        adata = read_table(row["table"], pixel_size_um=px, **keys)
        s = Sample(name=row["sample"], table=adata, pixel_size_um=px or table_pixel_size(adata))
        if row.get("mask"):
            from ..io import read_mask

            s.labels = read_mask(row["mask"])
    return s


def _accepted(fn) -> set[str]:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return set(params) | {"distance", "region_areas_mm2"}
    return set(params)


def _quantify(sample, options: dict):
    """Measure a sample without a table with the config's ``quantify:`` options (in this task's
    thread), validated as :func:`read_sample` validates a measured table."""
    from ..analysis.quantify import quantify

    if sample.labels is None or not sample.image:
        raise SampleError("the sample has no cell table, and quantifying needs both an image and a mask.",
                          path=sample.paths.get("image") or sample.paths.get("mask"))
    opts = {"channel_names": list(sample.channel_names), "pixel_size_um": sample.pixel_size_um,
            "scheduler": "synchronous", "solidity": False, "region": f"{sample.name}_labels"}
    opts.update(options)
    log.info("%s: no cell table, quantifying %d channels (%s)", sample.name, len(sample.channel_names),
             _options_text(options) or "defaults")
    try:
        sample.table = quantify(sample.image, sample.labels, **opts)
    except ValueError as err:
        raise SampleError(f"cannot measure the cells ({err}).", path=sample.paths.get("mask"),
                          hint=f"Check the config's quantify: options ({', '.join(QUANTIFY_OPTIONS)}).") from None
    sample.metadata["table_source"] = f"measured in the batch (quantify: {_options_text(options) or 'defaults'})"
    sample.validate(check_ids=False)   # ids come from this very mask
    return sample.table


def _options_text(options: dict) -> str:
    return ", ".join(f"{k}={options[k]!r}" for k in sorted(options))


def process_sample(row: dict, cfg: dict, out: str, scheme: dict | None = None) -> dict:
    """Analyse one sample and write its results (runs on a Dask worker or in-process).

    Never raises: returns ``{"sample", "status": "done" | "failed", "seconds", "n_cells", "error",
    "stage", "traceback"}``. Dask arrays of the sample are computed in this task's thread
    (synchronous scheduler): a sample is the unit of parallelism.
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
            _quantify(sample, cfg.quantify)
            timings["quantify_s"] = time.perf_counter() - t1
        adata = sample.table

        stage = "pixel size"
        from ..model.pixel_size import pixel_size_info

        ps, ps_source = row_pixel_size(row, cfg.pixel_size_um)
        if ps is None:
            info = pixel_size_info(sample)
            ps, ps_source = info.value, info.source
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
    """The gating scheme as a dict (from the config's file or the curated sample), or ``None``."""
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


def collect_metrics(out, manifest: Manifest) -> pd.DataFrame:
    """Concatenate the finished samples' ``metrics.csv`` and join the clinical columns."""
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


def run_batch(manifest, config=None, out="results", *, scheduler: str | None = None, workers: int | None = None,
              force: bool = False, progress: bool = True, samples=None, client=None) -> BatchResult:
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
