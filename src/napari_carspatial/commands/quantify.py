"""``carspatial quantify IMAGE MASK -o TABLE.h5ad``: per-cell table of a field or a whole slide.

Where it runs (:func:`napari_carspatial.analysis.scheduling.pick_scheduler`): ``--scheduler
ADDRESS`` uses that Dask scheduler; otherwise work up to ``--in-process-max`` (default 2 GB of
image + mask pixels) runs in this process with local threads (a field that fits in memory is
measured as one block), and bigger work starts a local cluster (``--workers``)."""

from __future__ import annotations

import logging

NAME = "quantify"
HELP = "measure every cell (mean intensity per channel, area, centroid, shape) into an .h5ad table"

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("image", help="multiplexed image (OME-TIFF, TIFF, OME-Zarr)")
    parser.add_argument("mask", help="cell segmentation mask (TIFF, OME-Zarr labels)")
    parser.add_argument("-o", "--output", required=True, help="output table (.h5ad or .zarr)")
    parser.add_argument("--nuclear", help="nuclear mask: adds nucleus / cytoplasm means")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (default: in this process for "
                                             "small inputs, a local cluster above --in-process-max)")
    parser.add_argument("--workers", type=int, default=2, help="workers of a local cluster (default 2)")
    parser.add_argument("--in-process-max", type=float, default=None, metavar="GB",
                        help="largest input (GB of image + mask pixels) run in this process (default 2)")
    parser.add_argument("--statistics", default="mean", help="comma-separated: mean, median, sum")
    parser.add_argument("--tile", type=int, default=1024, help="tile edge in pixels (default 1024)")
    parser.add_argument("--panel", help="panel CSV with the channel names")
    parser.add_argument("--pixel-size-um", type=float, default=None, metavar="UM",
                        help="µm per pixel (overrides the image's metadata; recorded as given by the user)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _read_block(path: str, kind: str, block_info=None):
    """One tile of level 0, opened in the worker (file handles never travel through the graph)."""
    import numpy as np

    from ..io import read_image, read_mask

    loc = block_info[None]["array-location"]
    if kind == "image":
        (c0, c1), (y0, y1), (x0, x1) = loc
        return np.asarray(read_image(path).levels[0][c0:c1, y0:y1, x0:x1].compute(scheduler="synchronous"))
    (y0, y1), (x0, x1) = loc
    return np.asarray(read_mask(path, check_empty=False)[0][y0:y1, x0:x1].compute(scheduler="synchronous"))


def _distributable(path: str, arr, kind: str, tile: int):
    """A dask array reading ``path`` tile by tile inside the task (safe to send to a cluster)."""
    import dask.array as da

    if kind == "image":
        chunks = ((arr.shape[0],), _split(arr.shape[1], tile), _split(arr.shape[2], tile))
    else:
        chunks = (_split(arr.shape[0], tile), _split(arr.shape[1], tile))
    return da.map_blocks(_read_block, path, kind, dtype=arr.dtype, chunks=chunks, meta=arr._meta,
                         name=f"read-{kind}-" + __import__("uuid").uuid4().hex[:8])


def _split(n: int, t: int) -> tuple:
    return tuple(min(t, n - i) for i in range(0, n, t))


def run(args) -> int:
    import time

    import numpy as np

    from ..analysis.quantify import SINGLE_BLOCK_MAX_PIXELS, quantify
    from ..analysis.scheduling import pick_scheduler
    from ..io import read_image, read_mask
    from ..io._util import stem
    from ..model import Sample
    from ..model.pixel_size import PixelSize, pixel_size_info, set_pixel_size_source

    t0 = time.perf_counter()
    override = getattr(args, "pixel_size_um", None)
    if override is not None:
        pixel_size_info(override=override)  # a SampleError (exit 2) for 0, negative, NaN
    img = read_image(args.image, panel=args.panel, pixel_size_um=override)
    px_source = (img.metadata or {}).get("pixel_size_source") or "image file"
    px_text = PixelSize(img.pixel_size_um, px_source if img.pixel_size_um is not None else "unknown").describe()
    mask0 = read_mask(args.mask)[0]
    nuc0 = read_mask(args.nuclear)[0] if args.nuclear else None
    for m in [args.mask] + ([args.nuclear] if args.nuclear else []):  # shapes, dtype: a SampleError naming the files
        Sample(name=stem(m), image=img.levels[:1], channel_names=img.channel_names,
               labels=read_mask(m)[:1], paths={"image": str(args.image), "mask": str(m)}).validate()
    level0 = img.levels[0]
    work = int(level0.nbytes) + int(mask0.nbytes) + (int(nuc0.nbytes) if nuc0 is not None else 0)
    stats = tuple(s.strip() for s in args.statistics.split(",") if s.strip())
    limit = None if args.in_process_max is None else int(args.in_process_max * 1e9)
    with pick_scheduler(work, address=args.scheduler, workers=args.workers, in_process_max_bytes=limit) as sch:
        log.info("quantifying %s with %s: %s; %s", args.image, args.mask, sch.description, px_text)
        if sch.distributed:  # workers re-open the files tile by tile (no file handles in the graph)
            image = _distributable(str(args.image), level0, "image", args.tile)
            mask = _distributable(str(args.mask), mask0, "mask", args.tile)
            nuc = _distributable(str(args.nuclear), nuc0, "mask", args.tile) if args.nuclear else None
            chunks = args.tile
        elif int(np.prod(mask0.shape)) <= SINGLE_BLOCK_MAX_PIXELS:  # a field: read once, one block
            image, mask = np.asarray(level0), np.asarray(mask0)
            nuc = None if nuc0 is None else np.asarray(nuc0)
            chunks = None
        else:  # in-process tiles straight from the readers' lazy arrays
            image, mask, nuc, chunks = level0, mask0, nuc0, args.tile
        adata = quantify(image, mask, channel_names=img.channel_names, statistics=stats, nuclear_labels=nuc,
                         pixel_size_um=img.pixel_size_um, chunks=chunks, scheduler=sch.scheduler,
                         progress=chunks is not None, region=f"{stem(args.mask)}_labels")
        where = sch.description
    if img.pixel_size_um is not None:
        set_pixel_size_source(adata, px_source)
    adata.uns.setdefault("carspatial", {})
    meta = dict(adata.uns["carspatial"])
    meta["quantify"] = {"image": str(args.image), "mask": str(args.mask), "statistics": list(stats),
                        "nuclear": str(args.nuclear or ""), "scheduler": where}
    adata.uns["carspatial"] = meta
    from ..io import write_table

    out = write_table(adata, args.output, overwrite=args.overwrite,
                      paths={"image": str(args.image), "mask": str(args.mask)})
    log.info("wrote %d cells x %d channels to %s in %.2f s (%s)", adata.n_obs, adata.n_vars, out,
             time.perf_counter() - t0, where)
    return 0
