"""A synthetic, deterministic CAR T-cell therapy demo sample (generated, never downloaded).

One demo patient ("DEMO-001", pancreatic adenocarcinoma, mesothelin-directed CAR T cells) with
two biopsies that share the tissue layout (tumour nests, desmoplastic stroma, vessels, a
tertiary lymphoid structure) and differ in their cells:

* ``"pre"``: no CAR T cells, ~5 % antigen-negative (MSLN-) tumour cells in one clustered patch.
* ``"post"``: CAR T cells enriched at the invasive margin and sparse in the tumour core,
  macrophages (more of them PD-L1+) gathered around them, ~30 % antigen-negative tumour cells
  (the same subclone, grown: antigen escape).

The cell table's ``X`` is the mean of the generated image pixels over each cell mask, so every
analysis sees exactly what the viewer shows. The image is lazy: level 0 is rendered per dask
chunk from the mask, so huge slides cost memory only for the mask.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..model import ROI, Sample, set_pixel_size_um, set_table_link
from ..model.atomic import atomic_write
from ..model.conventions import UNS_KEY, colors_key
from . import _cells
from ._cells import CELL_TYPE_COLORS, CELL_TYPES, CHANNELS, COMPARTMENTS, LATTICE_UM
from ._layout import make_layout
from ._render import Renderer

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

log = logging.getLogger(__name__)

TIMEPOINTS = ("pre", "post")
#: default physical slide edge, µm (4000 px at 0.5 µm/px)
DEFAULT_EDGE_UM = 2000.0
#: expected fraction of lattice points that hold a cell (used to size a slide for ``n_cells``)
_MEAN_KEEP = 0.40

METADATA = {
    "patient": "DEMO-001",
    "trial": "CARSPATIAL-DEMO (synthetic)",
    "indication": "pancreatic adenocarcinoma",
    "response": "progressive disease",
    "target": "MSLN",
    "synthetic": True,
}


def _shape(size, n_cells, pixel_size_um) -> tuple[int, int]:
    if size is not None:
        if np.ndim(size) == 0:
            return int(size), int(size)
        h, w = size
        return int(h), int(w)
    if n_cells is None:
        e = int(round(DEFAULT_EDGE_UM / pixel_size_um))
        return e, e
    lattice_px2 = (LATTICE_UM / pixel_size_um) ** 2 * np.sqrt(3) / 2
    e = int(np.ceil(np.sqrt(n_cells * lattice_px2 / _MEAN_KEEP) * 1.06))
    return e, e


def demo_sample(*, timepoint: str = "post", n_cells: int | None = None, seed: int = 0, size: int | tuple[int, int] | None = None,
                pixel_size_um: float = 0.5, image: bool = True, chunk: int = 1024, plant: Callable[..., np.ndarray] | None = None,
                name: str | None = None, metadata: dict | None = None, params: dict | None = None) -> Sample:
    """Generate the synthetic demo sample.

    Parameters
    ----------
    timepoint
        ``"pre"`` (before infusion) or ``"post"`` (after infusion).
    n_cells
        Target number of cells (hit within a few percent). Without ``size`` the slide is sized
        for it (about 20,000 x 20,000 px for 1,000,000 cells at 0.5 µm/px).
    seed
        Seed of everything: the same seed gives identical masks, tables and pixels; the two
        timepoints of one seed share the tissue layout.
    size
        Level-0 size in pixels, ``int`` (square) or ``(height, width)``. Default: 2 mm x 2 mm
        (4000 x 4000 px at 0.5 µm/px).
    pixel_size_um
        Micrometres per pixel; cell and tissue dimensions are physical, so a larger pixel makes
        a smaller image of the same tissue.
    image
        Generate the multiplexed image (lazy dask pyramid; ``X`` = mean of its pixels per cell,
        computed tile by tile). With ``False`` there is no image and ``X`` is the noise- and
        PSF-free model mean of each cell (from its nucleus/cytoplasm pixel fractions): for
        huge slides where only the table and mask matter.
    chunk
        Tile / dask chunk edge in pixels.
    plant
        Optional ``plant(types, *, info, layout, yx_px, pixel_size_um) -> types``: change the cell
        types (codes into ``CELL_TYPES``) before shapes, mask and expression are generated, so mask,
        table and image agree. The demo cohort plants its per-patient effects this way.
    name
        Override the sample name.
    metadata
        Added to ``Sample.metadata``.
    params
        Added to the generator parameters stored in ``uns``.

    Returns
    -------
    Sample
        Image pyramid (float32 CYX, 2x mean-downsampled levels), labels pyramid (uint32,
        non-consecutive ids), AnnData table (``obs``: ``cell_id``, ``cell_type`` (true types),
        ``area``, ``compartment``, ``tumor_distance_um``; ``obsm["spatial"]`` (x, y) centroids),
        ground-truth ROIs (tumour cores, TLS) and metadata.
    """
    if timepoint not in TIMEPOINTS:
        raise ValueError(f"timepoint must be one of {TIMEPOINTS}, got {timepoint!r}")
    if not (pixel_size_um > 0):
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    if n_cells is not None and n_cells < 1:
        raise ValueError(f"n_cells must be positive, got {n_cells!r}")
    t0 = time.perf_counter()
    tpi = TIMEPOINTS.index(timepoint)
    ps = float(pixel_size_um)
    H, W = _shape(size, n_cells, ps)
    if min(H, W) < 64:
        raise ValueError(f"size {H} x {W} px is too small for a tissue demo (at least 64 px)")
    # the whole generated demo (mask tiles, cells, means, small levels, ROIs) is cached in the user
    # cache, keyed by every parameter that changes it and the generator's code (never a planted one)
    ckey = None if (plant is not None or not image) else _cache_key(
        seed=int(seed), timepoint=timepoint, size=[H, W], n_cells=n_cells, ps=ps, chunk=int(chunk))
    st = _cached_state(ckey)
    if st is None:
        st = _generate(H, W, ps, n_cells=n_cells, size=size, seed=seed, timepoint=timepoint, image=image,
                       chunk=chunk, plant=plant)
        _store_state(ckey, st)
    H, W = st["H"], st["W"]
    levels, nuc, ids, types, cnt = st["levels"], st["nuc"], st["ids"], st["types"], st["cnt"]
    my, mx, X, small, info, expr = st["my"], st["mx"], st["X"], st["small"], st["info"], st["expr"]
    n_all = len(ids)
    id2idx = np.full(int(ids.max()) + 1 if n_all else 1, n_all, np.int32)
    id2idx[ids] = np.arange(n_all, dtype=np.int32)
    rend = Renderer(levels[1], nuc, id2idx, expr, (seed, tpi), ps, chunk=chunk)
    if X is None:
        X = rend.model_means(cnt, st["ncnt"])
    t_x = time.perf_counter()

    name = name or f"DEMO-001_{timepoint}"
    present = np.flatnonzero(cnt > 0)
    order = present[np.argsort(ids[present], kind="stable")]
    table = _table(name, order, ids, types, cnt, my, mx, X, info, ps,
                   params={"seed": int(seed), "timepoint": timepoint, "n_cells_target": n_cells,
                           "size": [int(H), int(W)], "x_source": "pixels" if image else "model",
                           "margin_um": [-_cells.MARGIN_IN_UM, _cells.MARGIN_OUT_UM], **(params or {})})
    labels = _labels_pyramid(levels)
    img = _image_pyramid(rend.dask_array(), small) if image else []
    rois = [ROI(name=r.name, polygon_yx=r.polygon_yx.copy(), cls=r.cls, id=r.id) for r in st["rois"]]
    sample = Sample(name=name, image=img, channel_names=list(CHANNELS), pixel_size_um=ps, labels=labels,
                    table=table, rois=rois, metadata={"sample": name, **METADATA, "timepoint": timepoint, **(metadata or {})})
    sample.validate(check_ids=False)
    log.info("demo %s: %d x %d px, %d cells; %s %.2f s, table and layers %.2f s",
             name, H, W, table.n_obs, "cache" if st.get("cached") else "generated", t_x - t0, time.perf_counter() - t_x)
    return sample


def _generate(H, W, ps, *, n_cells, size, seed, timepoint, image, chunk, plant) -> dict:
    """Everything :func:`demo_sample` draws: the tiled mask, the cells, their means, the ROIs."""
    t0 = time.perf_counter()
    tpi = TIMEPOINTS.index(timepoint)
    # layout and candidate positions (timepoint-independent); grow the slide if n_cells needs it
    for _attempt in range(4):
        lay = make_layout(np.random.default_rng([seed, 1]), H * ps, W * ps)
        pts = _cells.lattice(H, W, ps, np.random.default_rng([seed, 2]))
        p = _cells.keep_probability(lay, pts[:, 0] * ps, pts[:, 1] * ps)
        expected = float(p.sum())
        if n_cells is None or size is not None or expected >= n_cells:
            break
        grow = np.sqrt(n_cells / expected) * 1.04
        H, W = int(np.ceil(H * grow)), int(np.ceil(W * grow))
        log.debug("demo: %.0f expected cells < %d, growing slide to %d x %d", expected, n_cells, H, W)
    if n_cells is not None:
        if expected < n_cells:
            log.warning("demo: a %d x %d px slide holds about %.0f cells, fewer than n_cells=%d", H, W, expected, n_cells)
        p *= min(1.0, n_cells / expected)
    keep = np.random.default_rng([seed, 3]).random(len(p)) < p
    pts = pts[keep]
    t_layout = time.perf_counter()

    types, info = _cells.assign_types(lay, pts, ps, timepoint, np.random.default_rng([seed, 4, tpi]))
    if plant is not None:
        types = plant(types, info=info, layout=lay, yx_px=pts, pixel_size_um=ps)
    shp = _cells.cell_shapes(types, lay, pts, ps, np.random.default_rng([seed, 5, tpi]))
    n_all = len(pts)
    # non-consecutive cell ids (their own random stream: drawing them first changes nothing)
    ids = np.random.default_rng([seed, 7]).choice(np.arange(1, int(n_all * 1.25) + 2), size=n_all, replace=False)
    ids = ids.astype(np.uint32)
    lut = np.zeros(n_all + 1, np.uint32)
    lut[1:] = ids
    # the mask tile by tile, kept compressed (whole-slide arrays would cost ~5 GB at 1M cells)
    levels, nuc, cnt, ncnt, my, mx = _cells.rasterize_tiled((H, W), pts, shp, lut, chunk=chunk, keep_nuc=image)
    id2idx = np.full(int(ids.max()) + 1, n_all, np.int32)
    id2idx[ids] = np.arange(n_all, dtype=np.int32)
    t_mask = time.perf_counter()

    expr = _cells.expression(types, timepoint, np.random.default_rng([seed, 6, tpi]))
    X, small = None, {}
    if image:
        # keep the small pyramid levels (<= ~64 MB each) from the same rendering pass, so opening
        # the demo (contrast limits, overview) never renders level 0 again
        rend = Renderer(levels[1], nuc, id2idx, expr, (seed, tpi), ps, chunk=chunk)
        X, small = rend.cell_means(keep_factors=_small_factors(H, W, len(CHANNELS), chunk))
    log.info("demo generated: layout %.2f s, mask %.2f s, means %.2f s", t_layout - t0, t_mask - t_layout,
             time.perf_counter() - t_mask)
    return {"H": H, "W": W, "levels": levels, "nuc": nuc, "ids": ids, "types": types, "cnt": cnt, "ncnt": ncnt,
            "my": my, "mx": mx, "X": X, "small": small, "expr": expr,
            "info": {"compartment": info["compartment"], "dist_um": info["dist_um"]},
            "rois": _rois(lay, ps, H, W)}


def demo_pair(**kw) -> tuple[Sample, Sample]:
    """The ``"pre"`` and ``"post"`` samples of the demo patient (same seed, same layout).

    Parameters
    ----------
    **kw
        Passed to :func:`demo_sample` (everything but ``timepoint``).

    Returns
    -------
    tuple of Sample
        ``(pre, post)``.
    """
    kw.pop("timepoint", None)
    return demo_sample(timepoint="pre", **kw), demo_sample(timepoint="post", **kw)


def _table(name, order, ids, types, cnt, my, mx, X, info, ps, params):
    import anndata as ad
    import pandas as pd

    cell_id = ids[order].astype(np.int64)
    obs = pd.DataFrame({
        "cell_id": cell_id,
        "cell_type": pd.Categorical.from_codes(types[order].astype(np.int64), categories=list(CELL_TYPES)),
        "area": cnt[order].astype(np.int64),
        "compartment": pd.Categorical.from_codes(info["compartment"][order].astype(np.int64),
                                                 categories=list(COMPARTMENTS)),
        "tumor_distance_um": info["dist_um"][order].astype(np.float32),
    }, index=pd.Index(cell_id.astype(str), name="cell"))
    var = pd.DataFrame(index=pd.Index(list(CHANNELS), name="channel"))
    adata = ad.AnnData(X=np.ascontiguousarray(X[order], dtype=np.float32), obs=obs, var=var)
    adata.obsm["spatial"] = np.stack([mx[order], my[order]], axis=1).astype(np.float64)
    set_table_link(adata, region=f"{name}_labels", instance_key="cell_id")
    set_pixel_size_um(adata, ps)
    meta = dict(adata.uns[UNS_KEY])
    meta["demo"] = {k: v for k, v in params.items() if v is not None}
    adata.uns[UNS_KEY] = meta
    adata.uns[colors_key("cell_type")] = list(CELL_TYPE_COLORS)
    adata.uns[colors_key("compartment")] = ["#c0504d", "#f2a900", "#7f7f7f", "#e6d800"]
    return adata


def _labels_pyramid(levels: dict) -> list:
    """Labels pyramid from the compressed tile stores, strided ``[::2, ::2]`` down to <= 1024 px
    (levels the tiles could not be sub-sampled for come lazily from the previous one)."""
    out = [levels[1].dask("carspatial-demo-labels")]
    f = 1
    while max(out[-1].shape) > 1024:
        f *= 2
        out.append(levels[f].dask("carspatial-demo-labels") if f in levels else out[-1][::2, ::2])
    return out


# ------------------------------------------------------------------ demo cache
#: what the cache of generated demos is called in the user cache (``model.file_identity``)
CACHE_KIND = "demo-sample"
#: bump when the layout of a cache entry changes
CACHE_LAYOUT = 2
#: entries kept (each ~70 MB at the default 4000 x 4000 px, most of it the small image levels)
CACHE_ENTRIES = 6
_STATE_ARRAYS = ("ids", "types", "cnt", "ncnt", "my", "mx", "expr")


def _code_hash() -> str:
    """Hash of this package's sources: a changed generator never reads an old cache entry."""
    import hashlib

    h = hashlib.sha1()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _cache_key(**params) -> str:
    from ..model.file_identity import identity_key

    return identity_key(CACHE_KIND, _code_hash(), {"layout": CACHE_LAYOUT, **params})


def cache_path(key: str) -> Path:
    """Where the cache entry ``key`` lives: the user cache folder
    (``model.file_identity.user_cache_dir``), never the repository or the package."""
    from ..model.file_identity import user_cache_dir

    return user_cache_dir() / CACHE_KIND / f"{key}.npz"


def _cached_state(key: str | None) -> dict | None:
    """What a previous run generated for the same demo (see :func:`_generate`), or None.

    Generating the mask and rendering the whole image for each cell's mean is all of the demo's
    cost (~20 s at the default 4000 x 4000 px under load); the second ``carspatial demo`` reads
    it back in well under a second. An entry that cannot be read, or does not fit, is ignored.
    """
    if key is None:
        return None
    import zipfile

    from ._tiles import TileStore

    f = cache_path(key)
    try:
        with np.load(f, allow_pickle=False) as z:
            H, W, chunk = (int(v) for v in z["shape"])
            st: dict = {"H": H, "W": W, "cached": True}
            for k in _STATE_ARRAYS:
                st[k] = z[k]
            st["X"] = z["X"]
            st["info"] = {"compartment": z["compartment"], "dist_um": z["dist_um"]}
            st["small"] = {int(k[6:]): z[k] for k in z.files if k.startswith("level_")}
            st["levels"] = {}
            for fc in (int(v) for v in z["factors"]):
                st["levels"][fc] = TileStore.from_arrays((-(-H // fc), -(-W // fc)), np.uint32, chunk // fc,
                                                         z[f"mask_{fc}_blob"], z[f"mask_{fc}_offsets"])
            st["nuc"] = TileStore.from_arrays((H, W), np.bool_, chunk, z["nuc_blob"], z["nuc_offsets"])
            meta = json.loads(str(z["rois"]))
            off = z["roi_offsets"]
            poly = z["roi_polygons"]
            st["rois"] = [ROI(name=m["name"], cls=m["cls"], id=m["id"], polygon_yx=poly[off[i]: off[i + 1]].copy())
                          for i, m in enumerate(meta)]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        if not isinstance(err, FileNotFoundError):
            log.info("demo cache entry %s not used: %s", f, err)
        return None
    n = len(st["ids"])
    if st["X"].shape != (n, len(CHANNELS)) or 1 not in st["levels"] or any(len(st[k]) != n for k in _STATE_ARRAYS):
        log.info("demo cache entry %s does not fit; generating again", f)
        return None
    log.info("demo: read back from the cache (%s)", f)
    return st


def _store_state(key: str | None, st: dict) -> None:
    """Write what :func:`_generate` made to the user cache (atomically; a failure only logs)."""
    if key is None or st.get("X") is None or st.get("nuc") is None:
        return
    import os
    import tempfile

    from ..model.file_identity import _prune

    f = cache_path(key)
    arrays = {k: st[k] for k in _STATE_ARRAYS}
    arrays["X"] = st["X"]
    arrays["compartment"] = st["info"]["compartment"]
    arrays["dist_um"] = st["info"]["dist_um"]
    arrays.update({f"level_{k}": v for k, v in st["small"].items()})
    levels = st["levels"]
    arrays["shape"] = np.array([st["H"], st["W"], levels[1].tile], np.int64)
    arrays["factors"] = np.array(sorted(levels), np.int64)
    for fc, store in levels.items():
        t = store.to_arrays()
        arrays[f"mask_{fc}_blob"], arrays[f"mask_{fc}_offsets"] = t["blob"], t["offsets"]
    t = st["nuc"].to_arrays()
    arrays["nuc_blob"], arrays["nuc_offsets"] = t["blob"], t["offsets"]
    rois = st["rois"]
    arrays["rois"] = np.array(json.dumps([{"name": r.name, "cls": r.cls, "id": r.id} for r in rois]))
    off = np.zeros(len(rois) + 1, np.int64)
    np.cumsum([len(r.polygon_yx) for r in rois], out=off[1:])
    arrays["roi_offsets"] = off
    arrays["roi_polygons"] = (np.concatenate([np.asarray(r.polygon_yx, float) for r in rois])
                              if rois else np.zeros((0, 2)))
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, f)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _prune(f.parent, keep=CACHE_ENTRIES)
    except OSError as err:    # a read-only cache: the next run generates again
        log.info("demo cache not written: %s", err)


def _small_factors(H: int, W: int, C: int, chunk: int, *, max_bytes: int = 64 * 2**20) -> tuple[int, ...]:
    """Pyramid factors (2, 4, ...) whose level is small enough to keep in memory."""
    out, f = [], 1
    while max(H // f, W // f) > 1024:
        f *= 2
        if chunk % f == 0 and C * (H // f) * (W // f) * 4 <= max_bytes:
            out.append(f)
    return tuple(out)


def _image_pyramid(level0, small: dict | None = None) -> list:
    """Level 0 plus 2x mean-downsampled levels down to <= 1024 px; precomputed levels are used as is."""
    import dask.array as da

    small = small or {}
    levels = [level0]
    f = 1
    while max(levels[-1].shape[1:]) > 1024:
        f *= 2
        if f in small:
            levels.append(da.from_array(small[f], chunks=(1, 1024, 1024), name=False))
        else:
            prev = levels[-1]
            levels.append(da.coarsen(np.mean, prev, {1: 2, 2: 2}, trim_excess=True).astype(np.float32))
    return levels


def _rois(lay, ps, H, W) -> list[ROI]:
    """Ground-truth regions from the layout: tumour cores and tertiary lymphoid structures."""
    from skimage.measure import approximate_polygon, find_contours

    rois = []
    scale = lay.grid_um / ps
    for cls, field, label in (("Tumor core", lay.dist_um < -_cells.MARGIN_IN_UM, "core"),
                              ("TLS", lay.tls, "TLS")):
        padded = np.pad(field.astype(np.float32), 1)
        k = 0
        for cont in find_contours(padded, 0.5):
            poly = approximate_polygon((cont - 1) * scale, tolerance=0.75 * scale)
            poly[:, 0] = np.clip(poly[:, 0], 0, H - 1)
            poly[:, 1] = np.clip(poly[:, 1], 0, W - 1)
            if len(poly) > 3 and np.allclose(poly[0], poly[-1]):
                poly = poly[:-1]
            if len(poly) < 3:
                continue
            roi = ROI(name=f"{label} {k + 1}", polygon_yx=poly, cls=cls, id=f"demo-{label.lower()}-{k + 1}")
            if roi.area_px() * ps * ps < 50 * 50:
                continue
            rois.append(roi)
            k += 1
    return rois


def write_demo(path: str | os.PathLike, **kw) -> dict[str, Path]:
    """Write the demo sample to a folder: pyramidal OME-TIFF, uint32 mask TIFF and ``.h5ad`` table.

    Parameters
    ----------
    path
        Output folder (created if missing).
    **kw
        Passed to :func:`demo_sample` (``image`` must stay ``True``).

    Returns
    -------
    dict
        ``{"image": ..., "mask": ..., "table": ...}`` paths. Files are written atomically
        (temporary file in the same folder, then renamed).
    """
    import tifffile

    if kw.get("image") is False:
        raise ValueError("write_demo writes the image; do not pass image=False")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    s = demo_sample(**kw)
    out = {"image": folder / f"{s.name}.ome.tif", "mask": folder / f"{s.name}_mask.tif",
           "table": folder / f"{s.name}.h5ad"}
    ps = float(s.pixel_size_um)

    def write_image(tmp):
        meta = {"axes": "CYX", "Channel": {"Name": list(s.channel_names)}, "PhysicalSizeX": ps,
                "PhysicalSizeXUnit": "µm", "PhysicalSizeY": ps, "PhysicalSizeYUnit": "µm"}
        opts = {"tile": (256, 256), "compression": "zlib", "photometric": "minisblack"}
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
            tif.write(np.asarray(s.image[0].compute()), subifds=len(s.image) - 1, metadata=meta,
                      resolution=(1e4 / ps, 1e4 / ps), resolutionunit="CENTIMETER", **opts)
            for k, lvl in enumerate(s.image[1:], start=1):
                f = 2 ** k
                tif.write(np.asarray(lvl.compute()), subfiletype=1, metadata=None,
                          resolution=(1e4 / (ps * f), 1e4 / (ps * f)), resolutionunit="CENTIMETER", **opts)

    def write_mask(tmp):
        tifffile.imwrite(tmp, np.asarray(s.labels[0].compute()), compression="zlib", tile=(256, 256),
                         resolution=(1e4 / ps, 1e4 / ps), resolutionunit="CENTIMETER")

    def write_table(tmp):
        s.table.write_h5ad(tmp)

    atomic_write(out["image"], write_image)
    atomic_write(out["mask"], write_mask)
    atomic_write(out["table"], write_table)
    log.info("demo %s written to %s", s.name, folder)
    return out
