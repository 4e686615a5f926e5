"""``carspatial analyze SAMPLE [--regions REGIONS.geojson] -o OUT/``: region statistics headless.

With no options every statistic runs (or a line says why one cannot: no mask for touching cells,
fewer than two cell types, ...). The cell-type column is found by name
(:func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`; ``--cell-type-key`` names
it), the roles are inferred from the type names (``--roles`` edits them), the pixel size comes
from the files (``--pixel-size-um`` overrides it); all three are reported on stderr and in
``params.json``.

Writes one CSV per result table (``<statistic>_<table>.csv``, tidy, with a ``region`` column), one
PNG per statistic and region (``<statistic>_<region>.png``), ``metrics.csv`` (the CAR T measures,
the same numbers the dock shows, with a ``note`` saying why a value is NaN), ``roles.json`` (the
role mapping used) and ``params.json``. Regions come from a QuPath-style GeoJSON FeatureCollection
(polygon coordinates in level-0 pixels, x then y) read with
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
HELP = "region statistics (CAR T measures, enrichment, interactions, phenoptr's touching cells, ...) to CSV and PNG"

#: statistics run without --stats (every one there is)
DEFAULT_STATS = ["cart", "nhood", "interactions", "cooccurrence", "nn_distances", "centrality", "ripley", "niches",
                 "touching", "nearest", "count_within"]


def add_arguments(parser) -> None:
    from napari_carspatial.analysis.contact import CONTACT_PRESETS

    parser.add_argument("sample", help="sample path (image / folder / .h5ad / a cell table .csv/.txt on its own), "
                                       "or 'demo' / 'demo-pre'")
    parser.add_argument("--mask", help="label image (contact graph, touching cells)")
    parser.add_argument("--table", help="cell table")
    parser.add_argument("--regions", help="QuPath GeoJSON with the regions (level-0 pixel coordinates)")
    parser.add_argument("--whole", action="store_true", help="also analyse the whole sample as region 'whole'")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--cell-type-key", default=None,
                        help="cell-type column (default: the first of cell_type, celltype, CellType, Phenotype, "
                             "phenotype, ... / cluster columns)")
    parser.add_argument("--roles", default=None,
                        help='role mapping as JSON or a .json/.yaml file, e.g. \'{"car_t": ["CAR+ T"], '
                             '"tumor": ["Tumour"]}\' or \'{"car_t": {"rule": "CD3+ CAR+"}}\' '
                             "(default: inferred from the type names)")
    parser.add_argument("--pixel-size-um", type=float, default=None,
                        help="µm per level-0 pixel, overriding the files' (every distance and area)")
    parser.add_argument("--stats", default=",".join(DEFAULT_STATS), help=f"comma list of {', '.join(DEFAULT_STATS)}")
    parser.add_argument("--graph", default="delaunay", choices=["delaunay", "radius", "knn", "contact"])
    parser.add_argument("--max-distance-um", type=float, default=30.0, help="Delaunay maximum edge length (µm)")
    parser.add_argument("--radius-um", type=float, default=20.0)
    parser.add_argument("--k", type=int, default=6, help="kNN neighbours")
    parser.add_argument("--contact", default="phenoptr", choices=list(CONTACT_PRESETS),
                        help="contact definition of the contact graph (default phenoptr's touching cells)")
    parser.add_argument("--expand-px", type=int, default=None,
                        help="contact steinbock_expansion / expand: mask expansion (px; defaults 4 / 2)")
    parser.add_argument("--membrane-width-px", type=int, default=1, choices=[1, 2],
                        help="contact phenoptr and touching cells: inForm membrane width (1 or 2 px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1600, help="demo size in pixels (demo only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "region"


def _load(args):
    if args.sample in ("demo", "demo-post", "demo-pre"):
        from napari_carspatial.datasets import demo_sample

        return demo_sample(timepoint="pre" if args.sample == "demo-pre" else "post", seed=args.seed,
                           size=args.size, image=False)
    from napari_carspatial.io import read_sample

    p = Path(args.sample)
    if p.suffix.lower() in (".csv", ".tsv", ".txt") and args.table is None:
        # a cell table on its own (an inForm / QuPath / steinbock export): analyse the table
        from napari_carspatial.io import read_table
        from napari_carspatial.model import Sample

        from ..io._util import require_exists

        table = read_table(require_exists(p, "cell table"))
        return Sample(name=p.stem, table=table, paths={"table": str(p)}).validate(check_ids=False)
    res = read_sample(args.sample, mask=args.mask, table=args.table)
    if isinstance(res, list):
        if len(res) > 1:
            log.warning("%s holds %d samples; analysing the first (%s)", args.sample, len(res), res[0].name)
        res = res[0]
    return res


def _unmapped_line(mapping) -> str | None:
    from napari_carspatial.analysis.roles import ROLE_TITLES

    core = ("car_t", "tumor", "antigen_neg", "myeloid")
    miss = [ROLE_TITLES[r] for r in core if not mapping.is_mapped(r)]
    if not miss:
        return None
    role_of = {}
    for r, ts in mapping.types.items():
        for t in ts:
            role_of.setdefault(t, ROLE_TITLES.get(r, r))
    seen = [f"{t} ({role_of[t]})" for t in role_of][:8] + list(mapping.unmapped[:8])
    types = ", ".join(seen) or "none"
    return (f"roles not mapped to any cell type: {', '.join(miss)} (the types here: {types}); their CAR T "
            f"measures are NaN with the reason in metrics.csv. Map them with --roles "
            f"'{{\"car_t\": [\"<type>\"]}}' (a marker rule works too: '{{\"car_t\": {{\"rule\": \"CD3+ CAR+\"}}}}')")


def run(args) -> int:
    import numpy as np

    from napari_carspatial.analysis.plotting import save_figure
    from napari_carspatial.analysis.regions import regions_from_rois
    from napari_carspatial.analysis.results import PUBLISHED, STATISTICS, compute
    from napari_carspatial.analysis.roles import parse_roles, resolve_roles
    from napari_carspatial.model import SampleError
    from napari_carspatial.model.atomic import atomic_write, atomic_write_text
    from napari_carspatial.model.cell_types import resolve_cell_type_key
    from napari_carspatial.model.pixel_size import pixel_size_info

    from ._progress import progress

    stats = [s.strip() for s in args.stats.split(",") if s.strip()]
    known = [*STATISTICS, *PUBLISHED]
    bad = [s for s in stats if s not in known]
    if bad:
        raise SampleError(f"unknown statistic(s) {', '.join(bad)}; choose from {', '.join(known)}.")
    given_roles = parse_roles(args.roles) if args.roles else None
    sample = _load(args)
    adata = sample.table
    where = (sample.paths or {}).get("table") or args.table or args.sample
    if adata is None:
        raise SampleError("the sample has no cell table to analyse.", path=where,
                          hint="Quantify it first: carspatial quantify IMAGE MASK -o TABLE.h5ad.")
    ct = resolve_cell_type_key(adata, args.cell_type_key, path=where)
    px = pixel_size_info(sample, override=args.pixel_size_um)
    mapping = resolve_roles(adata, cell_type_key=ct.key, roles=given_roles)
    (log.warning if px.value is None else log.info)("%s: %d cells; %s; %s", sample.name, adata.n_obs,
                                                     ct.describe(), px.describe())
    line = _unmapped_line(mapping)
    if line:
        log.warning("%s: %s", sample.name, line)

    if args.regions:
        from napari_carspatial.io import read_geojson

        rois = read_geojson(args.regions)
    else:
        rois = list(sample.rois)
    regions = regions_from_rois(adata, rois)
    if args.whole or not regions:
        regions = {"whole": None, **regions}
    masks = {k: (np.ones(adata.n_obs, bool) if r is None else r.mask) for k, r in regions.items()}
    areas = {k: r.area_mm2(px.value) for k, r in regions.items() if r is not None and r.area_mm2(px.value) is not None}
    for k in [k for k, m in masks.items() if not m.any()]:
        log.warning("region %s contains no cell centroid; skipped", k)
        masks.pop(k)
    if not masks:
        raise SampleError("no region contains any cell.", path=args.regions or args.sample)
    graph = {"method": args.graph, "max_distance_um": args.max_distance_um, "radius_um": args.radius_um,
             "n_neighs": args.k, "contact": args.contact, "membrane_width_px": args.membrane_width_px}
    if args.expand_px is not None:
        graph["expand_px"] = args.expand_px
    if args.contact == "phenoptr":
        graph.pop("expand_px", None)
    else:
        graph.pop("membrane_width_px", None)
    labels = sample.labels[0] if sample.labels else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    params = {"sample": sample.name, "cell_type_key": ct.key, "cell_type_key_how": ct.how,
              **px.to_dict(), "roles": mapping.to_dict(), "regions": {k: int(m.sum()) for k, m in masks.items()},
              "runs": {}, "skipped": {}}
    atomic_write_text(out / "roles.json", json.dumps(mapping.to_dict(), indent=1))
    written.append(out / "roles.json")
    with progress(len(stats), "analyze", enabled=False if args.no_progress else None) as bar:
        for st in stats:
            bar.set_description_str(f"analyze: {st}")
            if st == "touching" and labels is None:
                why = "needs the segmentation mask (give --mask)"
                log.warning("%s: %s skipped: %s", sample.name, st, why)
                params["skipped"][st] = why
                bar.update()
                continue
            try:
                res = compute(adata, st, regions=masks, cluster_key=ct.key, graph=graph, roles=mapping,
                              seed=args.seed, labels=labels, region_areas_mm2=areas, pixel_size_um=px.value,
                              options={"membrane_width_px": args.membrane_width_px})
            except (SampleError, ValueError) as err:
                # the statistic cannot run on this input (too few types or cells, no mask, ...)
                why = " ".join(str(err).split())
                log.warning("%s: %s skipped: %s", sample.name, st, why)
                params["skipped"][st] = why
                bar.update()
                continue
            params["runs"][st] = {"params": res.params, "time": res.time}
            for tname, df in res.tables.items():
                p = out / (("metrics.csv") if (st, tname) == ("cart", "metrics") else f"{st}_{tname}.csv")
                atomic_write(p, lambda tmp, df=df: df.to_csv(tmp, index=False))
                written.append(p)
            if st in STATISTICS:
                for rg in res.regions:
                    p = out / f"{st}_{_slug(rg)}.png"
                    save_figure(res, rg, p)
                    written.append(p)
                if st not in ("niches", "cart") and len(res.regions) >= 2:
                    a, b = res.regions[:2]
                    p = out / f"{st}_{_slug(a)}_vs_{_slug(b)}.png"
                    save_figure(res, a, p, compare=b, size=(12, 4.5))
                    written.append(p)
            bar.update()
    atomic_write_text(out / "params.json", json.dumps(params, indent=1, default=str))
    ran = [s for s in stats if s in params["runs"]]
    log.info("%s: %d of %d statistics (%s) on %d region(s); wrote %d files to %s", sample.name, len(ran), len(stats),
             ", ".join(ran) or "none", len(masks), len(written) + 1, out)
    if not ran:
        raise SampleError(f"no statistic could run ({'; '.join(f'{k}: {v}' for k, v in params['skipped'].items())}).",
                          path=where)
    return 0
