"""``carspatial ligrec SAMPLE -o OUT/``: ligand-receptor signalling headless.

Writes ``ligrec_spatial.csv`` (neighbouring cells, per region: score, exact null mean/sd, z,
p, FDR), ``ligrec_cluster.csv`` (the squidpy-equivalent cluster test, ``--test cluster|both``),
``ligrec_metrics.csv`` (the per-sample numbers a cohort collects), one dot plot per test and
region (``ligrec_<test>_<region>.png``), ``params.json``, and with ``--save-table`` the table
with the results in ``uns`` (``.h5ad``).

Cell types come from ``--cell-type-key``; RNA tables without one can be typed first with
``--cell-types leiden`` (scanpy Leiden + marker ranking) into the column ``cell_type_rna``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

NAME = "ligrec"
HELP = "ligand-receptor signalling between neighbouring cells and between cell types (CSV tables, dot plots)"


def add_arguments(parser) -> None:
    parser.add_argument("sample", help="sample path (image / folder / .h5ad / instrument folder), or 'demo'")
    parser.add_argument("--mask", help="label image (contact graph)")
    parser.add_argument("--table", help="cell table")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--cell-type-key", default=None,
                        help="cell-type column (default: found by name, the adjudicated / curated copy first)")
    parser.add_argument("--cell-types", choices=["leiden"], help="type the cells first (RNA tables without cell types)")
    parser.add_argument("--resolution", type=float, default=1.0, help="Leiden resolution (--cell-types leiden)")
    parser.add_argument("--pairs", default="cart",
                        help="'cart' (the CAR T preset), a liana resource ('consensus', 'cellphonedb', ...) or a CSV "
                             "with ligand,receptor columns")
    parser.add_argument("--test", choices=["spatial", "cluster", "both"], default="both")
    parser.add_argument("--graph", default="delaunay", choices=["delaunay", "radius", "knn", "contact"])
    parser.add_argument("--max-distance-um", type=float, default=30.0, help="Delaunay maximum edge length (µm)")
    parser.add_argument("--radius-um", type=float, default=20.0)
    parser.add_argument("--k", type=int, default=6, help="kNN neighbours")
    parser.add_argument("--expand-px", type=int, default=2, help="contact graph: mask expansion (px)")
    parser.add_argument("--n-perms", type=int, default=1000, help="permutations of the cluster test")
    parser.add_argument("--threshold", type=float, default=0.01, help="minimum fraction of cells expressing a gene")
    parser.add_argument("--min-edges", type=int, default=5, help="spatial test: minimum sender -> receiver contacts")
    parser.add_argument("--layer", help="table layer to use instead of X")
    parser.add_argument("--regions", help="QuPath GeoJSON with the regions (level-0 pixel coordinates)")
    parser.add_argument("--whole", action="store_true", help="also analyse the whole sample as region 'whole'")
    parser.add_argument("--pixel-size-um", type=float, help="µm per pixel (instrument folders that lack it, e.g. CosMx)")
    parser.add_argument("--save-table", help="also write the table with the results in uns to this .h5ad")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1600, help="demo size in pixels (demo only)")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "region"


def load_sample(args):
    """The sample of a command line (shared by ``ligrec`` and ``export``)."""
    if args.sample in ("demo", "demo-post", "demo-pre"):
        from napari_carspatial.datasets import demo_sample

        return demo_sample(timepoint="pre" if args.sample == "demo-pre" else "post", seed=args.seed,
                           size=args.size, image=getattr(args, "image", False))
    from napari_carspatial.io import read_sample

    kw = {}
    if getattr(args, "pixel_size_um", None) is not None:
        kw["pixel_size_um"] = args.pixel_size_um
    res = read_sample(args.sample, mask=getattr(args, "mask", None), table=getattr(args, "table", None), **kw)
    if isinstance(res, list):
        if len(res) > 1:
            log.warning("%s holds %d samples; using the first (%s)", args.sample, len(res), res[0].name)
        res = res[0]
    return res


def run(args) -> int:
    import numpy as np

    from napari_carspatial.analysis.ligrec import (
        ligrec,
        ligrec_sample_metrics,
        save_ligrec_figure,
        spatial_ligrec,
        store_ligrec,
    )
    from napari_carspatial.analysis.regions import regions_from_rois
    from napari_carspatial.model import SampleError
    from napari_carspatial.model.atomic import atomic_write, atomic_write_text

    sample = load_sample(args)
    adata = sample.table
    if adata is None:
        raise SampleError("the sample has no cell table.", path=args.sample)
    key = args.cell_type_key
    if args.cell_types == "leiden":
        from napari_carspatial.analysis.genes import leiden_cell_types, store_cell_types

        key = store_cell_types(adata, leiden_cell_types(adata, resolution=args.resolution, seed=args.seed,
                                                        layer=args.layer), key="cell_type_rna", overwrite=True)
        log.info("cell types from Leiden clusters: %s", ", ".join(map(str, adata.obs[key].cat.categories)))
    else:
        from napari_carspatial.model.cell_types import resolve_cell_type_key

        try:
            ct = resolve_cell_type_key(adata, key, path=(sample.paths or {}).get("table") or args.sample)
        except SampleError as err:  # RNA tables have no types yet: say how to make them here
            raise SampleError(f"{err} Or pass --cell-types leiden (RNA tables).") from None
        key = ct.key
        log.info("%s: %s", sample.name, ct.describe())
    if args.regions:
        from napari_carspatial.io import read_geojson

        rois = read_geojson(args.regions)
    else:
        rois = list(sample.rois)
    regions = regions_from_rois(adata, rois)
    masks = {k: r.mask for k, r in regions.items()}
    if args.whole or not masks:
        masks = {"whole": np.ones(adata.n_obs, bool), **masks}
    for k in [k for k, m in masks.items() if m.sum() < 3]:
        log.warning("region %s has fewer than 3 cells; skipped", k)
        masks.pop(k)
    if not masks:
        raise SampleError("no region contains 3 or more cells.", path=args.regions or args.sample)
    pairs = args.pairs
    graph_kw = {"method": args.graph, "max_distance_um": args.max_distance_um, "radius_um": args.radius_um,
                "n_neighs": args.k, "expand_px": args.expand_px,
                "labels": sample.labels[0] if (args.graph == "contact" and sample.labels) else None,
                "pixel_size_um": sample.pixel_size_um}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, spatial_tables, cluster_tables, written = [], [], [], []
    try:
        for name, m in masks.items():
            if args.test in ("spatial", "both"):
                r = spatial_ligrec(adata, key, pairs=pairs, layer=args.layer, threshold=args.threshold, mask=m,
                                   region=name, seed=args.seed, min_edges=args.min_edges, **graph_kw)
                results.append(r)
                spatial_tables.append(r.table)
                written.append(save_ligrec_figure(r, out / f"ligrec_spatial_{_slug(name)}.png",
                                                  title=f"{sample.name} · {name}: neighbouring cells"))
            if args.test in ("cluster", "both"):
                r = ligrec(adata, key, pairs=pairs, layer=args.layer, threshold=args.threshold, n_perms=args.n_perms,
                           seed=args.seed, mask=m, region=name)
                results.append(r)
                cluster_tables.append(r.to_frame())
                written.append(save_ligrec_figure(r, out / f"ligrec_cluster_{_slug(name)}.png",
                                                  title=f"{sample.name} · {name}: cell types"))
        metrics = ligrec_sample_metrics(adata, key, pairs=pairs, regions=masks, layer=args.layer,
                                        threshold=args.threshold, min_edges=args.min_edges,
                                        **graph_kw) if args.test != "cluster" else None
    except (KeyError, ValueError) as err:
        raise SampleError(str(err).strip("'\""), path=args.sample) from err
    import pandas as pd

    for fname, tabs in (("ligrec_spatial.csv", spatial_tables), ("ligrec_cluster.csv", cluster_tables)):
        if tabs:
            df = pd.concat(tabs, ignore_index=True)
            atomic_write(out / fname, lambda tmp, df=df: df.to_csv(tmp, index=False))
            written.append(out / fname)
    if metrics is not None:
        metrics.insert(0, "sample", sample.name)
        atomic_write(out / "ligrec_metrics.csv", lambda tmp: metrics.to_csv(tmp, index=False))
        written.append(out / "ligrec_metrics.csv")
    store_ligrec(adata, results)
    if args.save_table:
        from napari_carspatial.io import write_table

        written.append(write_table(adata, args.save_table, overwrite=True))
    params = {"sample": sample.name, "cell_type_key": key, "regions": {k: int(m.sum()) for k, m in masks.items()},
              "runs": [r.params for r in results]}
    atomic_write_text(out / "params.json", json.dumps(params, indent=1, default=str))
    log.info("wrote %d files to %s", len(written) + 1, out)
    return 0
