"""``carspatial export SAMPLE -o OUT/``: write a sample as SpatialData and its regions as QuPath GeoJSON.

For every sample in ``SAMPLE`` (one file, or each acquisition / FOV of a folder) writes
``<name>.sdata.zarr`` (SpatialData: image multiscale, labels, transcripts, ROIs, table linked; the
``global`` coordinate system in µm via a ``Scale`` of the pixel size) and, when the sample has
ROIs, ``<name>_rois.geojson`` (QuPath GeoJSON, level-0 pixel coordinates). ``--format`` picks
one of them. Instrument folders take ``--pixel-size-um`` and, for a Xenium crop whose morphology
image is not at full resolution, ``--image-pixel-size-um`` / ``--image-origin-um X Y``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

NAME = "export"
HELP = "write samples as SpatialData (.zarr, µm scale) and their regions as QuPath GeoJSON"


def add_arguments(parser) -> None:
    parser.add_argument("sample", help="sample path (image / folder / .h5ad / instrument folder / SpatialData), or 'demo'")
    parser.add_argument("--mask", help="label image")
    parser.add_argument("--table", help="cell table")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--format", choices=["spatialdata", "geojson", "both"], default="both")
    parser.add_argument("--regions", help="QuPath GeoJSON of regions to attach to the sample(s) before writing")
    parser.add_argument("--no-image", dest="image", action="store_false", help="leave the image out of the .zarr")
    parser.add_argument("--no-points", dest="points", action="store_false", help="leave the transcripts out")
    parser.add_argument("--pixel-size-um", type=float)
    parser.add_argument("--image-pixel-size-um", type=float, help="Xenium: µm per morphology-image pixel")
    parser.add_argument("--image-origin-um", type=float, nargs=2, metavar=("X", "Y"),
                        help="Xenium: µm of the morphology image's top-left corner")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1024, help="demo size in pixels (demo only)")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "sample"


def _samples(args) -> list:
    if args.sample in ("demo", "demo-post", "demo-pre"):
        from napari_carspatial.datasets import demo_sample

        return [demo_sample(timepoint="pre" if args.sample == "demo-pre" else "post", seed=args.seed, size=args.size,
                            image=args.image)]
    from napari_carspatial.io import read_sample

    kw = {}
    if args.pixel_size_um is not None:
        kw["pixel_size_um"] = args.pixel_size_um
    if args.image_pixel_size_um is not None:
        kw["image_pixel_size_um"] = args.image_pixel_size_um
    if args.image_origin_um is not None:
        kw["image_origin_um"] = tuple(args.image_origin_um)
    res = read_sample(args.sample, mask=args.mask, table=args.table, **kw)
    return res if isinstance(res, list) else [res]


def run(args) -> int:
    from napari_carspatial.io import export_spatialdata, read_geojson, write_geojson
    from napari_carspatial.model import SampleError

    samples = _samples(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = read_geojson(args.regions) if args.regions else []
    written = []
    for s in samples:
        if extra:
            s.rois = list(s.rois) + list(extra)
        stem = _slug(s.name)
        if args.format in ("spatialdata", "both"):
            if s.table is None:
                raise SampleError(f"sample {s.name!r} has no cell table; SpatialData export needs one.", path=args.sample)
            # ".sdata.zarr": napari opens our stores with this plugin without asking (_napari/reader_claim.py)
            written.append(export_spatialdata(s, out / f"{stem}.sdata.zarr", image=args.image, points=args.points,
                                              overwrite=args.overwrite))
        if args.format in ("geojson", "both"):
            if not s.rois:
                if args.format == "geojson":
                    raise SampleError(f"sample {s.name!r} has no regions to write as GeoJSON.", path=args.sample,
                                      hint="Draw or import regions first, or pass --regions.")
                log.info("%s: no regions; no GeoJSON written", s.name)
            else:
                written.append(write_geojson(s.rois, out / f"{stem}_rois.geojson", overwrite=args.overwrite))
    for p in written:
        log.info("wrote %s", p)
    return 0
