"""Several small acquisitions (a steinbock / MCD / FOV folder) as one tiled Sample.

napari's cost per layer grows with the number of layers (15 acquisitions x 5 channels + 15 cell
layers = 90 layers took ~33 s to add on a 2-core machine). A montage is one image layer per
channel and one labels layer, whatever the number of acquisitions.

:func:`montage` tiles the samples in a near-square grid (left to right, top to bottom, a gap
between tiles), read once into memory (at most :data:`MONTAGE_MAX_BYTES`): images side by side, masks with cell ids offset so they stay
unique (``id + id_offset`` of the tile), tables concatenated with ``cell_id`` (the montage id),
the source's own id column, ``acquisition`` (the sample name) and centroids shifted by the tile
position. ``metadata["tiles"]`` lists each tile's name, position, size and id offset, so every
montage cell maps back to its acquisition and its own id.
"""

from __future__ import annotations

import numpy as np

from .conventions import SPATIAL_KEY, get_table_link, set_pixel_size_um, set_table_link
from .sample import Sample

#: montages larger than this many level-0 pixels are not built (per-sample layers are used)
MONTAGE_MAX_PIXELS = 1 << 26
#: ... nor larger than this many bytes (image + mask): a montage is read into memory once, so
#: napari slices numpy, not a graph of hundreds of tiles per channel
MONTAGE_MAX_BYTES = 512 << 20
#: fewer samples than this keep their own layers (a pre/post pair stays two samples)
MONTAGE_MIN_SAMPLES = 4
#: a tile may be at most this many pixels on a side (acquisitions / ROIs / FOVs, not slides)
MONTAGE_MAX_TILE = 2048
#: gap between tiles, as a fraction of the larger tile side
GAP_FRACTION = 0.12
#: height of the name band above each tile, as a fraction of the whole montage's larger side: a 10-pt
#: name fits in it at the default zoom (napari fits the montage to the canvas: ~25 px at 1600 x 1000)
LABEL_BAND_FRACTION = 0.035
#: obs column naming each cell's acquisition
ACQUISITION_KEY = "acquisition"


def row_gap(cell_h: float, cell_w: float, n: int, *, gap_fraction: float = GAP_FRACTION) -> tuple[float, float]:
    """(vertical, horizontal) gap between the tiles of a near-square grid of ``n`` cells.

    The horizontal gap is ``gap_fraction`` of the larger cell side; the vertical one also holds
    each tile's name band (:data:`LABEL_BAND_FRACTION` of the whole grid's larger side, plus a
    margin), so a name never runs into the tile above it at the default zoom.
    """
    gap = gap_fraction * max(cell_h, cell_w)
    ncol = int(np.ceil(np.sqrt(max(n, 1))))
    nrow = int(np.ceil(max(n, 1) / ncol))
    gap_y = gap
    if nrow > 1:
        for _ in range(8):   # the band grows with the grid, the grid with the gap: a few fixed-point steps
            total = max(nrow * (cell_h + gap_y), ncol * (cell_w + gap))
            gap_y = max(gap, 1.25 * LABEL_BAND_FRACTION * total)
    return gap_y, gap


def grid(shapes: list[tuple[int, int]], *, gap_fraction: float = GAP_FRACTION) -> tuple[list[tuple[int, int]], tuple[int, int], int]:
    """Top-left (y, x) of each tile in a near-square grid, the cell size and the column count
    (gaps: :func:`row_gap`)."""
    cell_h = max(h for h, _ in shapes)
    cell_w = max(w for _, w in shapes)
    gy, gx = row_gap(cell_h, cell_w, len(shapes), gap_fraction=gap_fraction)
    gap_y, gap = int(np.ceil(gy)), int(round(gx))
    ncol = int(np.ceil(np.sqrt(len(shapes))))
    offs = [((i // ncol) * (cell_h + gap_y), (i % ncol) * (cell_w + gap)) for i in range(len(shapes))]
    return offs, (cell_h + gap_y, cell_w + gap), ncol


def can_montage(samples: list[Sample], *, max_pixels: int = MONTAGE_MAX_PIXELS,
                min_samples: int = MONTAGE_MIN_SAMPLES) -> bool:
    """Many small acquisitions (at least ``min_samples``, each at most :data:`MONTAGE_MAX_TILE` px
    a side) with images, the same channels and pixel size, at most ``max_pixels`` together."""
    if len(samples) < max(2, min_samples) or any(not s.image for s in samples):
        return False
    if any(max(s.shape_yx) > MONTAGE_MAX_TILE for s in samples):
        return False
    names = samples[0].channel_names
    if any(s.channel_names != names for s in samples):
        return False
    px = {s.pixel_size_um for s in samples}
    if len(px) > 1:
        return False
    if any(s.labels is not None for s in samples) and any(s.labels is None for s in samples):
        return False
    tables = [s.table for s in samples]
    if any(t is not None for t in tables) and (any(t is None for t in tables)
                                              or any(list(t.var_names) != list(tables[0].var_names) for t in tables)):
        return False
    shapes = [s.shape_yx for s in samples]
    _, (ch, cw), ncol = grid(shapes)
    nrow = int(np.ceil(len(samples) / ncol))
    n_px = ch * cw * nrow * ncol
    itemsize = np.dtype(np.result_type(*[s.image[0].dtype for s in samples])).itemsize
    n_bytes = n_px * (samples[0].n_channels * itemsize + (4 if samples[0].labels is not None else 0))
    return n_px <= max_pixels and n_bytes <= MONTAGE_MAX_BYTES


def _place(arrs: list, offs, cell, ncol, n_rows, fill_dtype, lead: tuple):
    """A dask mosaic of ``arrs`` (each (*lead, h, w)) at grid cells of size ``cell``."""
    import dask.array as da

    ch, cw = cell
    rows = []
    for r in range(n_rows):
        row = []
        for c in range(ncol):
            i = r * ncol + c
            if i < len(arrs):
                a = arrs[i].astype(fill_dtype)
                h, w = a.shape[-2:]
                pad = [(0, 0)] * len(lead) + [(0, ch - h), (0, cw - w)]
                row.append(da.pad(a, pad, mode="constant", constant_values=0))
            else:
                row.append(da.zeros((*lead, ch, cw), dtype=fill_dtype))
        rows.append(da.concatenate(row, axis=-1))
    return da.concatenate(rows, axis=-2)


def montage(samples: list[Sample], *, name: str | None = None, gap_fraction: float = GAP_FRACTION) -> Sample:
    """Tile ``samples`` into one lazy :class:`Sample` (see the module docstring). Inputs are not modified.

    Raises
    ------
    ValueError
        When :func:`can_montage` is False (different channels or pixel sizes, too large).
    """
    import anndata as ad
    import pandas as pd

    if not can_montage(samples, min_samples=2):
        raise ValueError("these samples cannot be tiled into one montage (channels, pixel size or size differ)")
    shapes = [s.shape_yx for s in samples]
    offs, cell, ncol = grid(shapes, gap_fraction=gap_fraction)
    n_rows = int(np.ceil(len(samples) / ncol))
    dtype = np.result_type(*[s.image[0].dtype for s in samples])
    n_c = samples[0].n_channels
    import dask

    image = _place([s.image[0] for s in samples], offs, cell, ncol, n_rows, dtype, (n_c,))
    labels = None
    id_offsets = [0] * len(samples)
    if samples[0].labels is not None:
        import dask.array as da

        maxes = [int(s.labels[0].max().compute()) for s in samples]
        id_offsets = [int(v) for v in np.concatenate([[0], np.cumsum(maxes)[:-1]])]
        tiles = [da.where(s.labels[0] > 0, s.labels[0].astype(np.uint32) + np.uint32(off), np.uint32(0))
                 for s, off in zip(samples, id_offsets, strict=True)]
        labels = _place(tiles, offs, cell, ncol, n_rows, np.uint32, ())
    # read once (at most MONTAGE_MAX_BYTES): napari then slices numpy instead of a tile graph
    if labels is None:
        (image,) = dask.compute(image)
    else:
        image, labels = dask.compute(image, labels)
        labels = [labels]
    table = None
    if samples[0].table is not None:
        parts = []
        for s, (y0, x0), off in zip(samples, offs, id_offsets, strict=True):
            t = s.table.copy()
            key = get_table_link(t)["instance_key"]
            ids = t.obs[key].to_numpy(np.int64)
            if key == "cell_id":
                t.obs["source_cell_id"] = ids
            t.obs["cell_id"] = ids + off      # the source's own id stays in its column (Object, label, ...)
            t.obs[ACQUISITION_KEY] = s.name
            t.obs_names = [f"{s.name}:{i}" for i in ids]
            if SPATIAL_KEY in t.obsm:
                t.obsm[SPATIAL_KEY] = np.asarray(t.obsm[SPATIAL_KEY], float)[:, :2] + np.array([x0, y0], float)
            for k in [k for k in t.obsm if k != SPATIAL_KEY]:
                del t.obsm[k]
            t.uns = {}
            parts.append(t)
        table = ad.concat(parts, join="outer", pairwise=True, merge="same")
        table.obs[ACQUISITION_KEY] = pd.Categorical(table.obs[ACQUISITION_KEY], categories=[s.name for s in samples])
    mname = name or _montage_name([s.name for s in samples])
    if table is not None:
        set_table_link(table, region=f"{mname}_labels", instance_key="cell_id")
        if samples[0].pixel_size_um:
            set_pixel_size_um(table, samples[0].pixel_size_um)
    tiles_meta = [{"name": s.name, "y0": int(y0), "x0": int(x0), "height": int(h), "width": int(w),
                   "id_offset": int(off)}
                  for s, (y0, x0), (h, w), off in zip(samples, offs, shapes, id_offsets, strict=True)]
    meta = {"montage_of": [s.name for s in samples], "tiles": tiles_meta}
    for key in ("platform", "segmentation"):
        vals = {str(s.metadata.get(key)) for s in samples}
        if len(vals) == 1 and samples[0].metadata.get(key) is not None:
            meta[key] = samples[0].metadata[key]
    if samples[0].metadata.get("channel_metadata"):
        meta["channel_metadata"] = samples[0].metadata["channel_metadata"]
    folder = samples[0].paths.get("folder")
    out = Sample(name=mname, image=[image], channel_names=list(samples[0].channel_names),
                 pixel_size_um=samples[0].pixel_size_um, labels=labels, table=table, metadata=meta,
                 paths={"folder": folder} if folder else {})
    return out.validate(check_ids=False)


def _montage_name(names: list[str]) -> str:
    import os

    common = os.path.commonprefix(names)
    if not all(n == common for n in names):     # cut back to a separator: mockData2_00 -> mockData2
        cut = max(common.rfind(c) for c in "_- .")
        common = common[:cut] if cut > 0 else common
    common = common.rstrip("_- .")
    return f"{common or 'montage'} ({len(names)} acquisitions)"


def tile_names(samples: list[Sample]) -> list[str]:
    """Labels for the tiles: the acquisitions' own descriptions (IMC ``ROI_001``) when they tell the
    tiles apart, else the sample names without their shared prefix."""
    import os

    names = [s.name for s in samples]
    desc = [s.metadata.get("acquisition_description") for s in samples]
    if all(desc) and len(set(desc)) == len(desc):
        return [str(d) for d in desc]
    if len(names) < 2:
        return names
    common = os.path.commonprefix(names)
    cut = max(common.rfind(c) for c in "_- .") + 1 if common else 0
    short = [n[cut:] or n for n in names]
    return short if len(set(short)) == len(short) else names


def tile_of(sample: Sample, cell_id: int) -> tuple[str, int] | None:
    """(acquisition name, the cell's own id) of a montage cell id, or None."""
    tiles = sample.metadata.get("tiles") or []
    best = None
    for t in tiles:
        if cell_id > t["id_offset"] and (best is None or t["id_offset"] >= best["id_offset"]):
            best = t
    return None if best is None else (best["name"], int(cell_id - best["id_offset"]))
