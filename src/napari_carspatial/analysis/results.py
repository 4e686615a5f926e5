"""Run region statistics, cache graphs per region, and keep results in the table's ``uns``.

* :func:`iter_compute` / :func:`compute`: one statistic over one or more regions; the generator
  yields progress (so a napari thread worker can show it and cancel between steps) and returns
  an :class:`AnalysisResult` of tidy tables.
* :class:`GraphCache`: graphs keyed by (table fingerprint, region, parameters). The fingerprint
  hashes the instance ids and centroids and includes ``uns["carspatial"]["stale"]``, so any edit
  to the cells (or another engineer's stale flag) invalidates the cached graphs.
* :func:`store_result` / :func:`load_results`: ``uns["carspatial"]["analysis"][statistic]`` =
  ``{"params" (JSON), "regions", "time", "tables": {name: DataFrame}}``, h5ad-writable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from napari_carspatial.model.conventions import SPATIAL_KEY, UNS_KEY

if TYPE_CHECKING:
    import dask.array as da
    from anndata import AnnData

logger = logging.getLogger(__name__)

__all__ = [
    "PUBLISHED",
    "STATISTICS",
    "AnalysisResult",
    "GraphCache",
    "GRAPH_CACHE",
    "compute",
    "iter_compute",
    "load_results",
    "store_result",
    "table_fingerprint",
]

#: statistic id -> human title
STATISTICS: dict[str, str] = {
    "cart": "CAR T measures",
    "nhood": "Neighbourhood enrichment",
    "interactions": "Interaction matrix",
    "cooccurrence": "Co-occurrence",
    "ripley": "Ripley's L / G / F",
    "centrality": "Centrality scores",
    "nn_distances": "Nearest-neighbour distances",
    "niches": "Cellular neighbourhoods",
}

#: published definitions run by name (``carspatial analyze``; the Analysis dock lists them once
#: it has figures for them): phenoptr's touching cells, nearest distances and count within
PUBLISHED: dict[str, str] = {
    "touching": "Touching cells (phenoptr count_touching_cells)",
    "nearest": "Nearest distance per cell (phenoptr find_nearest_distance)",
    "count_within": "Cells within a radius (phenoptr count_within)",
}


@dataclass
class AnalysisResult:
    """Tidy tables of one statistic over one or more regions.

    Attributes
    ----------
    statistic
        Key of :data:`STATISTICS`.
    tables
        ``{name: DataFrame}``, each with a ``region`` column (matrices in long form
        ``region, row, col, value``).
    params
        Parameters (JSON-able).
    regions
        Region names, in order.
    time
        ISO 8601 UTC time of the computation.
    extras
        Non-tabular outputs not stored in ``uns`` (e.g. per-cell niche labels).
    """

    statistic: str
    tables: dict[str, pd.DataFrame]
    params: dict[str, Any]
    regions: list[str]
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    extras: dict[str, Any] = field(default_factory=dict)

    def matrix(self, table: str, region: str) -> pd.DataFrame:
        """A long ``row, col, value`` table of one region as a wide matrix (row/col order kept)."""
        df = self.tables[table]
        d = df[df["region"] == region]
        rows = list(dict.fromkeys(d["row"]))
        cols = list(dict.fromkeys(d["col"]))
        return d.pivot(index="row", columns="col", values="value").reindex(index=rows, columns=cols)


def _long(mat: pd.DataFrame, region: str) -> pd.DataFrame:
    m = mat.copy()
    m.index = m.index.astype(str)
    m.columns = m.columns.astype(str)
    try:
        out = m.stack(future_stack=True)
    except TypeError:  # pandas < 2.1
        out = m.stack(dropna=False)
    out = out.reset_index()
    out.columns = ["row", "col", "value"]
    out.insert(0, "region", region)
    return out


# --------------------------------------------------------------------------- graph cache
def table_fingerprint(adata, *, spatial_key: str = SPATIAL_KEY) -> str:
    """Hash of the cells (instance ids, centroids, n_obs) and the ``stale`` flag."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(adata.n_obs).encode())
    try:
        from napari_carspatial.model.conventions import instance_ids

        h.update(np.ascontiguousarray(instance_ids(adata)).tobytes())
    except (KeyError, ValueError, TypeError):
        h.update("|".join(map(str, adata.obs_names)).encode())
    if spatial_key in adata.obsm:
        h.update(np.ascontiguousarray(np.asarray(adata.obsm[spatial_key], dtype=np.float64)).tobytes())
    stale = (adata.uns.get(UNS_KEY, {}) or {}).get("stale", None)
    h.update(repr(stale).encode())
    return h.hexdigest()


class GraphCache:
    """LRU cache of graphs per (table fingerprint, region mask, parameters).

    Parameters
    ----------
    max_items
        Graphs kept; the least recently used is dropped first.
    """

    def __init__(self, max_items: int = 32):
        self.max_items = int(max_items)
        self._d: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._d.clear()

    def __len__(self) -> int:
        return len(self._d)

    @staticmethod
    def key(adata, mask: np.ndarray | None, params: Mapping[str, Any]) -> tuple:
        mh = "all" if mask is None else hashlib.blake2b(np.packbits(np.asarray(mask, bool)).tobytes(), digest_size=12).hexdigest()
        return (table_fingerprint(adata), mh, json.dumps(dict(params), sort_keys=True, default=str))

    def get(self, adata, mask: np.ndarray | None, params: Mapping[str, Any], build):
        k = self.key(adata, mask, params)
        if k in self._d:
            self._d.move_to_end(k)
            self.hits += 1
            return self._d[k]
        self.misses += 1
        g = build()
        self._d[k] = g
        while len(self._d) > self.max_items:
            self._d.popitem(last=False)
        return g


#: the process-wide cache used by :func:`compute` unless another is given
GRAPH_CACHE = GraphCache()


def _graph_params(graph: Mapping[str, Any] | None) -> dict[str, Any]:
    g = dict(graph or {})
    p = {"method": "delaunay", "max_distance_um": 30.0, "radius_um": 20.0, "n_neighs": 6}
    p.update(g)
    if p["method"] == "contact" or "contact" in g or "expand_px" in g:
        from napari_carspatial.analysis.contact import resolve_contact

        # a named definition (default phenoptr's); an expand_px alone keeps its earlier meaning
        c = resolve_contact(g.get("contact"), expand_px=g.get("expand_px"), connectivity=g.get("connectivity"),
                            membrane_width_px=g.get("membrane_width_px"))
        p["contact"] = c.pop("preset")
        p.update(c)
    return p


def _contact_kwargs(p: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("expand_px", "connectivity", "membrane_width_px")
    return {"preset": p.get("contact"), **{k: int(p[k]) for k in keys if k in p}}


def region_graph(adata, mask: np.ndarray | None, graph: Mapping[str, Any] | None = None, *, labels=None,
                 cache: GraphCache | None = None, pixel_size_um: float | None = None):
    """The graph of the region's cells (CSR over ``adata[mask]`` rows), cached.

    ``graph``: ``method`` (``delaunay`` | ``radius`` | ``knn`` | ``contact``), ``max_distance_um``
    (delaunay), ``radius_um`` (radius), ``n_neighs`` (knn); for ``contact`` (needs the level-0
    ``labels``) ``contact`` names the definition (:data:`~napari_carspatial.analysis.contact.CONTACT_PRESETS`,
    default ``"phenoptr"``) with its ``membrane_width_px`` or ``expand_px`` / ``connectivity``
    (an ``expand_px`` without ``contact`` means ``"expand"``, the earlier default).
    """
    from napari_carspatial.analysis.graph import spatial_graph

    p = _graph_params(graph)
    cache = GRAPH_CACHE if cache is None else cache
    method = p["method"]
    sub = adata if mask is None else adata[np.asarray(mask, bool)]
    if method == "contact":
        if labels is None:
            raise ValueError("the contact graph needs the segmentation mask (labels)")
        from napari_carspatial.analysis.contact import contact_graph

        ck = _contact_kwargs(p)
        full = cache.get(adata, None, {"method": "contact", **ck}, lambda: contact_graph(adata, labels, **ck))
        if mask is None:
            return full.connectivities
        idx = np.flatnonzero(mask)
        return full.connectivities[idx][:, idx].tocsr()
    kw: dict[str, Any] = {"method": method, "pixel_size_um": pixel_size_um}
    if method == "delaunay":
        kw["max_distance"] = p["max_distance_um"]
    elif method == "radius":
        kw["radius"] = p["radius_um"]
    elif method == "knn":
        kw["n_neighs"] = int(p["n_neighs"])
    else:
        raise ValueError(f"unknown graph method {method!r}")
    key = dict(kw.items())
    return cache.get(adata, mask, key, lambda: spatial_graph(sub, **kw)).connectivities


# --------------------------------------------------------------------------- compute
def _as_masks(adata, regions) -> dict[str, np.ndarray]:
    if regions is None:
        return {"whole": np.ones(adata.n_obs, bool)}
    out = {}
    for name, r in regions.items():
        m = getattr(r, "mask", r)
        out[str(name)] = np.asarray(m, bool)
    return out


def iter_compute(
    adata: AnnData,
    statistic: str,
    *,
    regions: Mapping[str, Any] | None = None,
    cluster_key: str | None = None,
    graph: Mapping[str, Any] | None = None,
    roles: Mapping[str, Any] | None = None,
    seed: int = 0,
    labels: np.ndarray | da.Array | None = None,
    region_areas_mm2: Mapping[str, float] | None = None,
    options: Mapping[str, Any] | None = None,
    cache: GraphCache | None = None,
    pixel_size_um: float | None = None,
) -> Generator[dict, None, AnalysisResult]:
    """Compute ``statistic`` on each region; yields ``{"step", "total", "message"}``.

    Parameters
    ----------
    adata
        The table (not modified).
    statistic
        A key of :data:`STATISTICS`.
    regions
        ``{name: bool mask or Region}``; ``None``: the whole sample.
    cluster_key
        Cell-type column; ``None``: found by name
        (:func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`).
    graph
        Graph parameters (see :func:`region_graph`) for ``nhood``, ``interactions``,
        ``centrality``.
    roles
        Role mapping for ``cart``.
    seed
        Seed (permutations, Ripley simulations, k-means).
    labels
        Level-0 label image (contact graph).
    region_areas_mm2
        Polygon areas for ``cart`` densities.
    options
        Statistic options: ``nhood_method`` (exact/permutation), ``n_perms``;
        ``interval_um`` (co-occurrence thresholds); ``ripley_mode``, ``max_dist_um``,
        ``n_simulations``; ``k``, ``n_niches``; ``contact_radius_um``, ``near_radius_um``,
        ``bin_um``; ``touching``: ``pairs``, ``membrane_width_px``; ``count_within``:
        ``radius_um`` (default 10, 25), ``pairs``.
    cache
        Graphs per region kept between runs (the Analysis dock keeps one per sample).
    pixel_size_um
        µm per level-0 pixel, overriding the table's (every distance and area).

    Returns
    -------
    AnalysisResult
        The generator's return value (``StopIteration.value``): per-region tables and figures' data.
    """
    if statistic not in STATISTICS and statistic not in PUBLISHED:
        raise ValueError(f"statistic must be one of {', '.join([*STATISTICS, *PUBLISHED])}, got {statistic!r}")
    from napari_carspatial.model.cell_types import resolve_cell_type_key

    cluster_key = resolve_cell_type_key(adata, cluster_key).key
    px = pixel_size_um
    opts = dict(options or {})
    masks = _as_masks(adata, regions)
    names = list(masks)
    total = len(names) + 1
    gp = _graph_params(graph)
    params: dict[str, Any] = {"statistic": statistic, "cluster_key": cluster_key, "seed": int(seed),
                              "options": opts}
    tables: dict[str, list[pd.DataFrame]] = {}
    extras: dict[str, Any] = {}

    def add(name, df):
        tables.setdefault(name, []).append(df)

    t0 = time.perf_counter()
    if statistic == "cart":
        from napari_carspatial.analysis.cart import (
            infiltration_profile,
            region_metrics,
            tumor_distance,
        )
        from napari_carspatial.analysis.regions import role_masks
        from napari_carspatial.analysis.roles import resolve_roles

        yield {"step": 0, "total": total, "message": "tumour boundary"}
        mapping = resolve_roles(adata, cell_type_key=cluster_key, roles=roles)
        rm, _ = role_masks(adata, cell_type_key=cluster_key, roles=mapping)
        dist = tumor_distance(adata, tumor_mask=rm["tumor"], pixel_size_um=px)
        contact = None
        if gp["method"] == "contact" and labels is not None:
            from napari_carspatial.analysis.contact import contact_graph

            c = GRAPH_CACHE if cache is None else cache
            ck = _contact_kwargs(gp)
            contact = c.get(adata, None, {"method": "contact", **ck},
                            lambda: contact_graph(adata, labels, **ck)).connectivities
        df = region_metrics(adata, cell_type_key=cluster_key, roles=mapping, regions=masks, pixel_size_um=px,
                            contact_radius_um=float(opts.get("contact_radius_um", 12.0)),
                            near_radius_um=float(opts.get("near_radius_um", 30.0)), seed=seed,
                            region_areas_mm2=region_areas_mm2, contact_graph=contact, distance=dist)
        params["metrics"] = df.attrs.get("params", {})
        params["graph"] = gp
        add("metrics", df)
        for i, name in enumerate(names):
            yield {"step": i + 1, "total": total, "message": f"infiltration profile: {name}"}
            prof = infiltration_profile(adata, cell_type_key=cluster_key, roles=mapping, region=masks[name],
                                        bin_um=float(opts.get("bin_um", 25.0)), distance=dist, pixel_size_um=px)
            prof.insert(0, "region", name)
            add("infiltration", prof)
    elif statistic == "niches":
        from napari_carspatial.analysis.niches import cellular_neighborhoods

        union = np.zeros(adata.n_obs, bool)
        for m in masks.values():
            union |= m
        yield {"step": 0, "total": 2, "message": "cellular neighbourhoods"}
        res = cellular_neighborhoods(adata[union], cluster_key=cluster_key, k=int(opts.get("k", 10)),
                                      n_niches=int(opts.get("n_niches", 8)), seed=seed)
        comp = res.composition.copy()
        add("composition", _long(comp, "+".join(names)))
        add("enrichment", _long(res.enrichment, "+".join(names)))
        sizes = res.sizes.rename("n_cells").reset_index().rename(columns={"index": "niche"})
        sizes.insert(0, "region", "+".join(names))
        add("sizes", sizes)
        for name in names:
            lab = pd.Series(np.asarray(res.labels, dtype=object), index=np.flatnonzero(union))
            sub = lab.reindex(np.flatnonzero(masks[name])).value_counts().reindex(res.labels.categories, fill_value=0)
            add("niche_counts", pd.DataFrame({"region": name, "niche": sub.index.astype(str), "n_cells": sub.to_numpy()}))
        extras["niche"] = res
        extras["niche_mask"] = union
        params.update(res.params)
        names = ["+".join(names)] if len(names) > 1 else names
    elif statistic in PUBLISHED:
        for i, name in enumerate(names):
            yield {"step": i, "total": total, "message": f"{PUBLISHED[statistic]}: {name}"}
            m = masks[name]
            if statistic == "touching":
                from napari_carspatial.analysis.contact import count_touching

                if labels is None:
                    raise ValueError("touching cells need the segmentation mask (labels)")
                df = count_touching(adata, labels, cluster_key=cluster_key, pairs=opts.get("pairs"),
                                    membrane_width_px=int(opts.get("membrane_width_px", 1)), region=m)
                params["touching"] = df.attrs.get("params", {})
                df.insert(0, "region", name)
                add("touching", df)
            elif statistic == "count_within":
                from napari_carspatial.analysis.distances import count_within

                df = count_within(adata, cluster_key=cluster_key, pairs=opts.get("pairs"),
                                  radius=opts.get("radius_um", (10.0, 25.0)), pixel_size_um=px, region=m)
                df.insert(0, "region", name)
                add("count_within", df)
            elif statistic == "nearest":
                from napari_carspatial.analysis.distances import nearest_distances

                sub = adata[m]
                df = nearest_distances(sub, cluster_key=cluster_key, pixel_size_um=px)
                from napari_carspatial.model.conventions import instance_ids

                try:
                    df.insert(0, "cell_id", instance_ids(sub))
                except KeyError:
                    df.insert(0, "cell_id", np.asarray(sub.obs_names))
                df.insert(1, "cell_type", sub.obs[cluster_key].astype(str).to_numpy())
                df.insert(0, "region", name)
                add("nearest", df.reset_index(drop=True))
    else:
        from napari_carspatial.analysis.nhood import nhood_enrichment

        for i, name in enumerate(names):
            yield {"step": i, "total": total, "message": f"{STATISTICS[statistic]}: {name}"}
            m = masks[name]
            if m.sum() < 3:
                logger.warning("region %s has %d cells; skipped", name, int(m.sum()))
                continue
            sub = adata[m]
            if statistic in ("nhood", "interactions", "centrality"):
                adj = region_graph(adata, m, gp, labels=labels, cache=cache, pixel_size_um=px)
            if statistic == "nhood":
                r = nhood_enrichment(sub, cluster_key=cluster_key, connectivities=adj,
                                     method=opts.get("nhood_method", "exact"), n_perms=int(opts.get("n_perms", 1000)),
                                     seed=seed)
                add("zscore", _long(r.to_frame("zscore"), name))
                add("count", _long(r.to_frame("count"), name))
            elif statistic == "interactions":
                from napari_carspatial.analysis.interactions import interaction_matrix

                r = interaction_matrix(sub, cluster_key=cluster_key, graph=adj)
                add("count", _long(r.to_frame("count"), name))
                add("normalized", _long(r.to_frame("normalized"), name))
            elif statistic == "centrality":
                from napari_carspatial.analysis.ppatterns import centrality_scores

                c = centrality_scores(sub, cluster_key=cluster_key, graph=adj)
                c = c.reset_index().rename(columns={"index": "cell_type"})
                c.insert(0, "region", name)
                add("centrality", c)
            elif statistic == "cooccurrence":
                from napari_carspatial.analysis.cooccurrence import co_occurrence

                interval = np.asarray(opts.get("interval_um", np.linspace(0, 200, 21)), float)
                r = co_occurrence(sub, cluster_key=cluster_key, interval=interval, pixel_size_um=px)
                K, _, L = r.occ.shape
                cats = [str(c) for c in r.categories]
                # occ[A, B, r] = p(A | B within t) / p(A): condition on B (column) = "from"
                ii, jj, kk = np.meshgrid(np.arange(K), np.arange(K), np.arange(L), indexing="ij")
                add("cooccurrence", pd.DataFrame({
                    "region": name, "cell_type": np.array(cats)[jj.ravel()], "neighbour_type": np.array(cats)[ii.ravel()],
                    "distance_um": np.asarray(r.interval[1:], float)[kk.ravel()], "ratio": r.occ.ravel()}))
            elif statistic == "ripley":
                from napari_carspatial.analysis.ppatterns import ripley

                r = ripley(sub, cluster_key=cluster_key, mode=opts.get("ripley_mode", "L"),
                           max_dist=opts.get("max_dist_um", 150.0), n_simulations=int(opts.get("n_simulations", 10)),
                           seed=seed, pixel_size_um=px)
                s = r.stat.rename(columns={"cluster": "cell_type", "bins": "distance_um"})
                s.insert(0, "region", name)
                s.insert(1, "mode", r.mode)
                add("ripley", s)
            elif statistic == "nn_distances":
                from napari_carspatial.analysis.ppatterns import nn_distances

                add("nn_distance_um", _long(nn_distances(sub, cluster_key=cluster_key, pixel_size_um=px), name))
    if statistic in ("nhood", "interactions", "centrality"):
        params["graph"] = gp
    if px is not None:
        params["pixel_size_um"] = float(px)
    out = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
    yield {"step": total, "total": total, "message": "done"}
    logger.info("%s on %d region(s) in %.2f s", statistic, len(names), time.perf_counter() - t0)
    return AnalysisResult(statistic, out, _jsonable(params), names, extras=extras)


def compute(adata: AnnData, statistic: str, **kwargs) -> AnalysisResult:
    """Run :func:`iter_compute` to the end (headless).

    Parameters
    ----------
    adata
        The table (not modified).
    statistic
        A key of :data:`STATISTICS`.
    **kwargs
        The options of :func:`iter_compute`.

    Returns
    -------
    AnalysisResult
        The result of every region.
    """
    gen = iter_compute(adata, statistic, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


# --------------------------------------------------------------------------- uns storage
def _clean(df: pd.DataFrame) -> pd.DataFrame:
    d = df.copy()
    d.columns = [str(c) for c in d.columns]
    d.index = [str(i) for i in range(len(d))]
    for c in d.columns:
        if d[c].dtype == object or isinstance(d[c].dtype, pd.CategoricalDtype):
            d[c] = d[c].astype(str)
    return d


def store_result(adata: AnnData, result: AnalysisResult, *, key: str | None = None) -> str:
    """Store ``result`` in ``uns["carspatial"]["analysis"][key]`` (mutates ``adata``); returns the key.

    Parameters
    ----------
    adata
        The table (modified in place).
    result
        From :func:`compute`.
    key
        Where to store it; default the statistic, so a new run replaces the previous one of
        the same kind.

    Returns
    -------
    str
        The key used.
    """
    key = key or result.statistic
    meta = dict(adata.uns.get(UNS_KEY, {}) or {})
    analysis = dict(meta.get("analysis", {}) or {})
    analysis[key] = {
        "statistic": result.statistic,
        "params": json.dumps(result.params, sort_keys=True),
        "regions": [str(r) for r in result.regions],
        "time": result.time,
        "tables": {k: _clean(v) for k, v in result.tables.items()},
    }
    meta["analysis"] = analysis
    adata.uns[UNS_KEY] = meta
    return key


def load_results(adata: AnnData) -> dict[str, AnalysisResult]:
    """Results stored by :func:`store_result` (after an h5ad round trip too).

    Parameters
    ----------
    adata
        The table.

    Returns
    -------
    dict
        ``{key: AnalysisResult}``; empty when nothing is stored.
    """
    meta = adata.uns.get(UNS_KEY, {}) or {}
    out = {}
    for key, rec in (meta.get("analysis", {}) or {}).items():
        try:
            tables = {k: pd.DataFrame(v).reset_index(drop=True) for k, v in dict(rec["tables"]).items()}
            out[key] = AnalysisResult(str(rec["statistic"]), tables, json.loads(str(rec["params"])),
                                      [str(r) for r in np.atleast_1d(rec["regions"])], str(rec["time"]))
        except (KeyError, TypeError, ValueError):
            logger.warning("stored analysis %r is unreadable; ignored", key, exc_info=True)
    return out
