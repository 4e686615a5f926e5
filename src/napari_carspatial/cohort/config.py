"""The batch's analysis config (``ANALYSIS.yaml``): :class:`BatchConfig`, :func:`load_config`, and
the registry of metric functions a config may name (:func:`metric_registry`, :func:`resolve_metrics`).

Headless: no napari, no Qt.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..model import SampleError
from .regions import AUTO_DEFAULTS

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
                "quantify", "thumbnail", "seed", "pixel_size_um", "ligrec"}
#: options of the opt-in ``ligrec:`` section (:func:`~napari_carspatial.analysis.ligrec.ligrec_sample_metrics`)
LIGREC_OPTIONS = ("pairs", "method", "max_distance_um", "radius_um", "n_neighs", "expand_px", "min_edges",
                  "threshold", "alpha", "layer", "complex_policy")



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
        Passed to the metric function (and to the ligand-receptor test).
    ligrec
        ``None`` (default): no ligand-receptor metrics. A mapping (``ligrec: {}`` or
        ``ligrec: true`` for the defaults) adds, per sample and region, the neighbour test's
        metrics (:func:`~napari_carspatial.analysis.ligrec.ligrec_sample_metrics`) to
        ``metrics.csv``; options :data:`LIGREC_OPTIONS` (``pairs``: ``cart`` (default), a liana
        resource name, a CSV file relative to the config, or a list of ``[ligand, receptor]``).
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
    ligrec: dict | None = None
    source: str | None = None

    @property
    def uses_gating(self) -> bool:
        """Whether the config applies a gating scheme (a file or ``from_sample``)."""
        return bool(self.gating or self.from_sample)

    def type_key(self) -> str | None:
        """The cell-type column the config names (the gating key with gating).

        Returns
        -------
        str or None
            ``None``: the column is found by name (:func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`).
        """
        if self.cell_type_key:
            return self.cell_type_key
        return self.gating_key if self.uses_gating else None

    def to_dict(self) -> dict:
        """The config as a JSON-able dict (a metrics callable as ``"module:function"``).

        Returns
        -------
        dict
        """
        d = asdict(self)
        if callable(self.metrics):
            d["metrics"] = f"{self.metrics.__module__}:{self.metrics.__qualname__}"
        return d

    def fingerprint(self) -> str:
        """Hash of what the config computes (not where it was read from): a finished sample whose
        ``done.json`` holds another fingerprint is recomputed.

        Returns
        -------
        str
            16 hex digits.
        """
        d = self.to_dict()
        d.pop("source", None)
        if d.get("ligrec") is None:  # configs from before the ligrec section keep their fingerprint
            d.pop("ligrec", None)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_config(config: str | os.PathLike | dict | BatchConfig | None = None) -> BatchConfig:
    """A :class:`BatchConfig` from a YAML/JSON file, a mapping, a config or ``None`` (defaults).

    Relative ``gating`` paths (and a ``ligrec.pairs`` CSV) are resolved against the config file's folder.

    Parameters
    ----------
    config
        The config file, a mapping of its keys, a :class:`BatchConfig` (returned as is) or ``None``.

    Returns
    -------
    BatchConfig

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
                       seed=int(data.get("seed", 0)), pixel_size_um=px, ligrec=_ligrec_section(data.get("ligrec"), src),
                       source=None if src is None else os.fspath(src))


def _ligrec_section(value, src: Path | None) -> dict | None:
    """The ``ligrec:`` section checked: ``None`` / ``false`` (off), ``true`` / a mapping (on)."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise SampleError("ligrec must be a mapping of options (or true for the defaults).", path=src)
    bad = sorted(set(value) - set(LIGREC_OPTIONS))
    if bad:
        raise SampleError(f"unknown ligrec option {bad[0]!r} (known: {', '.join(LIGREC_OPTIONS)}).", path=src)
    out = dict(value)
    pairs = out.get("pairs")
    if isinstance(pairs, list):
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            raise SampleError("ligrec.pairs must be a preset name, a CSV file or a list of [ligand, receptor].",
                              path=src)
        out["pairs"] = [[str(a), str(b)] for a, b in pairs]
    elif pairs is not None and not isinstance(pairs, str):
        raise SampleError("ligrec.pairs must be a preset name, a CSV file or a list of [ligand, receptor].", path=src)
    elif isinstance(pairs, str) and pairs.lower().endswith(".csv") and src is not None and not Path(pairs).is_absolute():
        out["pairs"] = os.fspath(src.parent / pairs)
    if out.get("method", "delaunay") not in ("delaunay", "radius", "knn", "contact"):
        raise SampleError(f"ligrec.method must be delaunay, radius, knn or contact, got {out['method']!r}.", path=src)
    return out


def metric_registry() -> dict[str, str]:
    """Metric functions a config may name.

    The project's own (:data:`BUILTIN_METRICS`) plus every entry point of the group
    ``napari_carspatial.metrics`` (in a package's ``pyproject.toml``:
    ``[project.entry-points."napari_carspatial.metrics"] my_metrics = "mypkg.metrics:region_metrics"``).

    Returns
    -------
    dict
        ``{name: "module:function"}``.
    """
    from importlib.metadata import entry_points

    reg = dict(BUILTIN_METRICS)
    for ep in entry_points(group=METRICS_ENTRY_POINTS):
        reg.setdefault(ep.name, ep.value)
    return reg


def resolve_metrics(spec: str | Callable | None = None, *, source: str | os.PathLike | None = None) -> Callable:
    """The metric function: a callable, a registered name or ``"module:function"``, or the default.

    Parameters
    ----------
    spec
        The config's ``metrics:`` (``None``: :data:`DEFAULT_METRICS`).
    source
        The config file (for messages).

    Returns
    -------
    callable
        With the ``region_metrics`` signature.

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
