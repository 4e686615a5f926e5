"""``carspatial analyze SAMPLE [--regions REGIONS.geojson] -o OUT/``: region statistics headless.

Writes one CSV per result table (``<statistic>_<table>.csv``, tidy, with a ``region`` column), one
PNG per statistic and region (``<statistic>_<region>.png``), ``metrics.csv`` (the CAR T measures,
the same numbers the dock shows) and ``params.json``. Regions come from a QuPath-style GeoJSON
FeatureCollection (polygon coordinates in level-0 pixels, x then y) read with
:func:`napari_carspatial.io.read_geojson`; without ``--regions`` the sample's own ROIs are used,
and ``--whole`` adds the whole sample.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

NAME = "analyze"
HELP = "region statistics (CAR T measures, enrichment, interactions, ...) to CSV tables and PNG figures"

DEFAULT_STATS = ["cart", "nhood", "interactions", "cooccurrence", "nn_distances", "centrality", "ripley", "niches"]


def add_arguments(parser) -> None:
    parser.add_argument("sample", help="sample path (image / folder / .h5ad), or 'demo' / 'demo-pre' for the demo")
    parser.add_argument("--mask", help="label image (contact graph)")
    parser.add_argument("--table", help="cell table")
    parser.add_argument("--regions", help="QuPath GeoJSON with the regions (level-0 pixel coordinates)")
    parser.add_argument("--whole", action="store_true", help="also analyse the whole sample as region 'whole'")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--cell-type-key", default="cell_type")
    parser.add_argument("--stats", default=",".join(DEFAULT_STATS), help=f"comma list of {', '.join(DEFAULT_STATS)}")
    parser.add_argument("--graph", default="delaunay", choices=["delaunay", "radius", "knn", "contact"])
    parser.add_argument("--max-distance-um", type=float, default=30.0, help="Delaunay maximum edge length (µm)")
    parser.add_argument("--radius-um", type=float, default=20.0)
    parser.add_argument("--k", type=int, default=6, help="kNN neighbours")
    parser.add_argument("--expand-px", type=int, default=2, help="contact graph: mask expansion (px)")
    parser.add_argument("--roles", help='JSON role mapping, e.g. \'{"myeloid": ["Macrophage"]}\'')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1600, help="demo size in pixels (demo only)")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "region"


def _load(args):
    if args.sample in ("demo", "demo-post", "demo-pre"):
        from napari_carspatial.datasets import demo_sample

        return demo_sample(timepoint="pre" if args.sample == "demo-pre" else "post", seed=args.seed,
                           size=args.size, image=False)
    from napari_carspatial.io import read_sample

    res = read_sample(args.sample, mask=args.mask, table=args.table)
    if isinstance(res, list):
        if len(res) > 1:
            log.warning("%s holds %d samples; analysing the first (%s)", args.sample, len(res), res[0].name)
        res = res[0]
    return res


def run(args) -> int:
    import numpy as np

    from napari_carspatial.analysis.plotting import save_figure
    from napari_carspatial.analysis.regions import regions_from_rois
    from napari_carspatial.analysis.results import STATISTICS, compute
    from napari_carspatial.model import SampleError
    from napari_carspatial.model.atomic import atomic_write, atomic_write_text

    sample = _load(args)
    adata = sample.table
    if adata is None:
        raise SampleError("the sample has no cell table to analyse.", path=args.sample)
    if args.regions:
        from napari_carspatial.io import read_geojson

        rois = read_geojson(args.regions)
    else:
        rois = list(sample.rois)
    regions = regions_from_rois(adata, rois)
    if args.whole or not regions:
        regions = {"whole": None, **regions}
    masks = {k: (np.ones(adata.n_obs, bool) if r is None else r.mask) for k, r in regions.items()}
    px = sample.pixel_size_um
    areas = {k: r.area_mm2(px) for k, r in regions.items() if r is not None and r.area_mm2(px) is not None}
    empty = [k for k, m in masks.items() if not m.any()]
    for k in empty:
        log.warning("region %s contains no cell centroid; skipped", k)
        masks.pop(k)
    if not masks:
        raise SampleError("no region contains any cell.", path=args.regions or args.sample)
    stats = [s.strip() for s in args.stats.split(",") if s.strip()]
    bad = [s for s in stats if s not in STATISTICS]
    if bad:
        raise SampleError(f"unknown statistic(s) {', '.join(bad)}; choose from {', '.join(STATISTICS)}.")
    roles = json.loads(args.roles) if args.roles else None
    graph = {"method": args.graph, "max_distance_um": args.max_distance_um, "radius_um": args.radius_um,
             "n_neighs": args.k, "expand_px": args.expand_px}
    labels = sample.labels[0] if sample.labels else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    params = {"sample": sample.name, "regions": {k: int(m.sum()) for k, m in masks.items()}, "runs": {}}
    for st in stats:
        res = compute(adata, st, regions=masks, cluster_key=args.cell_type_key, graph=graph, roles=roles,
                      seed=args.seed, labels=labels, region_areas_mm2=areas)
        params["runs"][st] = {"params": res.params, "time": res.time}
        for tname, df in res.tables.items():
            p = out / (("metrics.csv") if (st, tname) == ("cart", "metrics") else f"{st}_{tname}.csv")
            atomic_write(p, lambda tmp, df=df: df.to_csv(tmp, index=False))
            written.append(p)
        for rg in res.regions:
            p = out / f"{st}_{_slug(rg)}.png"
            save_figure(res, rg, p)
            written.append(p)
        if st != "niches" and len(res.regions) >= 2 and st != "cart":
            a, b = res.regions[:2]
            p = out / f"{st}_{_slug(a)}_vs_{_slug(b)}.png"
            save_figure(res, a, p, compare=b, size=(12, 4.5))
            written.append(p)
    atomic_write_text(out / "params.json", json.dumps(params, indent=1, default=str))
    log.info("wrote %d files to %s", len(written) + 1, out)
    return 0
