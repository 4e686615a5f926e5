"""Quantification vs scikit-image ``regionprops_table``; whole-slide peak memory; local re-measure.

Rows
----
``quantify.regionprops``  30 channels x 4096 x 4096 uint16, ~40,000 Voronoi cells (quick: 512 px):
    full :func:`napari_carspatial.analysis.quantify` (means + area, centroid, axes, eccentricity,
    solidity) vs ``regionprops_table(properties=("label", "intensity_mean"))``; max abs diff of the
    means. Target: >= 10x faster, identical values (max abs diff < 1e-6 relative).
``quantify.whole_slide_memory``  the 8.6 GB 30-channel OME-TIFF of ``bench_open_ometiff`` with a
    matching lazily generated Voronoi mask, tiled with Dask in a fresh process; peak RSS of the
    child's own address space (``VmHWM``: ``ru_maxrss`` would include the parent's peak).
    Target < 2 GB (quick: the 1 GB file).
``quantify.local_edit_small`` / ``_large``  merge two cells and commit on a small (1024 px) and a
    large (the 12000 px OME-TIFF + a 12000 px zarr mask) slide: mask write-back + re-measure +
    table update (one row removed), ms. Target < 100 ms.
``quantify.local_draw_small`` / ``_large``  the same for a 12 x 12 px polygon drawn as a new cell
    (one row added).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, result, run_child  # noqa: E402

CELL = 20.48  # px per cell: 4096 / 200 -> 40,000 cells


def voronoi_block(y0, y1, x0, x1, cell=CELL, seed=0):
    """Voronoi-like labels of a jittered grid, a pure function of global coordinates (lazy)."""
    gy0, gy1 = int(y0 // cell) - 1, int(y1 // cell) + 2
    gx0, gx1 = int(x0 // cell) - 1, int(x1 // cell) + 2
    gy, gx = np.mgrid[gy0:gy1, gx0:gx1]
    h = (gy * 73856093) ^ (gx * 19349663) ^ seed
    rng_y = ((h * 2654435761) % 1000) / 1000.0
    rng_x = ((h * 40503) % 1000) / 1000.0
    sy = (gy + 0.15 + 0.7 * rng_y) * cell
    sx = (gx + 0.15 + 0.7 * rng_x) * cell
    ncols = 10**6
    ids = (gy + 2) * ncols + (gx + 2)
    yy = np.arange(y0, y1)[:, None, None].astype(np.float32)
    xx = np.arange(x0, x1)[None, :, None].astype(np.float32)
    best = np.full((y1 - y0, x1 - x0), np.inf, np.float32)
    lab = np.zeros((y1 - y0, x1 - x0), np.int64)
    # vectorised over the 3x3 candidate seeds of each pixel
    cy = np.floor(np.arange(y0, y1) / cell).astype(int)
    cx = np.floor(np.arange(x0, x1) / cell).astype(int)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            iy = (cy + dy - gy0)[:, None]
            ix = (cx + dx - gx0)[None, :]
            d = (yy[..., 0] - sy[iy, ix]) ** 2 + (xx[..., 0] - sx[iy, ix]) ** 2
            better = d < best
            best = np.where(better, d, best)
            lab = np.where(better, ids[iy, ix], lab)
    lab[best > (0.45 * cell) ** 2] = 0  # some background between cells
    return lab.astype(np.uint32)


def _image(c, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, size=(c, h, w), dtype=np.uint16)


def bench_regionprops(size: int) -> dict:
    from skimage.measure import regionprops_table

    from napari_carspatial.analysis.quantify import quantify

    lab = voronoi_block(0, size, 0, size)
    img = _image(30, size, size)
    quantify(img[:, :64, :64], lab[:64, :64])  # compile numba kernels (cached on disk)
    t0 = time.perf_counter()
    a = quantify(img, lab)
    ours = time.perf_counter() - t0
    img_yxc = np.moveaxis(img, 0, -1)
    t0 = time.perf_counter()
    ref = regionprops_table(lab, img_yxc, properties=("label", "intensity_mean"))
    ref_s = time.perf_counter() - t0
    same_ids = np.array_equal(a.obs["cell_id"].to_numpy(), ref["label"])
    refm = np.stack([ref[f"intensity_mean-{c}"] for c in range(30)], axis=1)
    diff = float(np.max(np.abs(a.X.astype(np.float64) - refm))) if same_ids else float("inf")
    rel = float(np.max(np.abs(a.X - refm) / np.maximum(np.abs(refm), 1))) if same_ids else float("inf")
    ratio = ref_s / ours
    return result("quantify.regionprops", ours_s=ours, reference="skimage regionprops_table (label, intensity_mean)",
                  reference_s=ref_s, agreement=f"ids equal {same_ids}; max abs diff {diff:.2e} (rel {rel:.1e}, float32 X)",
                  target=">= 10x faster, same values", met=bool(ratio >= 10 and same_ids and rel < 1e-6),
                  data=f"30 x {size} x {size} uint16, {a.n_obs} cells", n_cells=int(a.n_obs))


def child_memory(path: str, tile: int) -> dict:
    import dask
    import dask.array as da

    from napari_carspatial.analysis.quantify import quantify
    from napari_carspatial.io import read_image

    base = peak_rss_mb()
    img = read_image(path).levels[0]
    H, W = img.shape[-2:]
    lab = da.map_blocks(lambda block_info=None: voronoi_block(*_loc(block_info)), dtype=np.uint32,
                        chunks=(tuple(min(tile, H - i) for i in range(0, H, tile)),
                                tuple(min(tile, W - i) for i in range(0, W, tile))))
    t0 = time.perf_counter()
    with dask.config.set(num_workers=2):
        a = quantify(img, lab, chunks=tile)
    return {"seconds": time.perf_counter() - t0, "peak_mb": peak_rss_mb(), "ru_maxrss_mb": __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss / 1024.0, "baseline_mb": base,
            "n_cells": int(a.n_obs), "gb": img.nbytes / 1e9}


def _loc(block_info):
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    return y0, y1, x0, x1


def bench_memory(quick: bool) -> dict:
    from bench_open_ometiff import data_path, ensure_data

    size = "quick" if quick else "full"
    path = data_path(size)
    if not path.exists():
        path = ensure_data(size)
    r = run_child(__file__, "memory", [str(path), "1024"])
    if "error" in r:
        return result("quantify.whole_slide_memory", ours_s=None, reference=None, reference_s=None,
                      agreement="n/a", target="peak RSS < 2 GB", met=False, error=r["error"])
    return result("quantify.whole_slide_memory", ours_s=r["seconds"], reference=None, reference_s=None,
                  agreement=f"{r['n_cells']} cells", target="peak RSS < 2 GB on a >= 8 GB slide",
                  met=bool(r["peak_mb"] < 2048 and (quick or r["gb"] >= 8)), peak_mb=r["peak_mb"],
                  data=f"{path.name} ({r['gb']:.1f} GB level 0)", details=r)


def interior_pair(lab: np.ndarray) -> list[int]:
    """Two touching cells that lie wholly inside the crop (a merge then really removes one).

    Cells cut by the crop edge keep pixels outside it, so merging them removes no cell.
    """
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    a, b = lab[:, :-1], lab[:, 1:]
    ok = (a != b) & (a > 0) & (b > 0) & ~np.isin(a, edge) & ~np.isin(b, edge)
    y, x = divmod(int(np.flatnonzero(ok.ravel())[0]), a.shape[1])
    return [int(a[y, x]), int(b[y, x])]


def bench_edit(quick: bool) -> list[dict]:
    import anndata as ad  # noqa: F401
    import dask.array as da

    from napari_carspatial.analysis.quantify import quantify
    from napari_carspatial.editing import segmentation as se
    from napari_carspatial.io import read_image
    from napari_carspatial.io.mask_store import MaskStore
    from napari_carspatial.model import Sample

    rows = []
    cases = [("small", None, 1024)]
    from bench_open_ometiff import data_path

    big = data_path("quick" if quick else "full")
    if big.exists():
        cases.append(("large", big, None))
    for name, path, size in cases:
        if path is None:
            img = da.from_array(_image(30, size, size), chunks=(30, 512, 512))
            lab0 = voronoi_block(0, size, 0, size)
            lab = da.from_array(lab0, chunks=512)
        else:
            img = read_image(path).levels[0]
            H, W = img.shape[-2:]
            lab = da.map_blocks(lambda block_info=None: voronoi_block(*_loc(block_info)), dtype=np.uint32,
                                chunks=(tuple(min(1024, H - i) for i in range(0, H, 1024)),
                                        tuple(min(1024, W - i) for i in range(0, W, 1024))))
        H, W = lab.shape
        store = MaskStore.open_working_copy(None, labels=lab)
        # the table: quantify the slide once (not timed)
        t = quantify(img, store.pyramid()[0], channel_names=[f"m{i}" for i in range(30)], chunks=1024)
        t.obs["cell_type"] = __import__("pandas").Categorical(np.where(np.arange(t.n_obs) % 2, "tumour", "CAR T"))
        s = Sample(name=name, image=[img], channel_names=[f"m{i}" for i in range(30)], labels=store.pyramid(), table=t)
        ed = se.SegmentationEditor(s, store=store)
        ed.PERSIST_MAX_BYTES = 0
        times, draw_times = [], []
        for k in range(5):
            cy, cx = H // 2 + 97 * k, W // 2 + 53 * k
            r = ed.region(cy - 60, cy + 60, cx - 60, cx + 60)
            pair = interior_pair(r.data)
            t0 = time.perf_counter()
            _, res = ed.apply(r, se.merge_cells, pair)
            times.append(time.perf_counter() - t0)
            assert len(res.removed) == 1, res.message()  # a real merge: one cell vanished
            # a drawn cell (12 x 12 px polygon over neighbours): one row added
            r = ed.region(cy - 60, cy + 60, cx + 140, cx + 260)
            t0 = time.perf_counter()
            _, res2 = ed.apply(r, se.draw_cell, [(50, 50), (50, 62), (62, 62), (62, 50)], ed.new_id(), overwrite=True)
            draw_times.append(time.perf_counter() - t0)
            assert len(res2.added) == 1, res2.message()
        ids = s.table.obs["cell_id"].to_numpy()
        assert len(np.unique(ids)) == len(ids) == s.table.n_obs
        data = f"{H} x {W} px, 30 channels, {s.table.n_obs} cells"
        med = float(np.median(times[1:]))
        rows.append(result(f"quantify.local_edit_{name}", ours_s=med, reference=None, reference_s=None,
                           agreement=f"merge of 2 cells, {res.message()}", target="< 100 ms",
                           met=med < 0.1, data=data, details={"all_s": times}))
        med = float(np.median(draw_times[1:]))
        rows.append(result(f"quantify.local_draw_{name}", ours_s=med, reference=None, reference_s=None,
                           agreement=f"polygon drawn as a new cell, {res2.message()}", target="< 100 ms",
                           met=med < 0.1, data=data, details={"all_s": draw_times}))
    return rows


def run(quick: bool = False) -> list[dict]:
    rows = [bench_regionprops(1024 if quick else 4096)]
    rows += bench_edit(quick)
    rows.append(bench_memory(quick))
    return rows


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child")
    p.add_argument("--out")
    args, rest = p.parse_known_args(argv)
    if args.child:
        from _common import write_child_result

        write_child_result(args.out, child_memory(rest[0], int(rest[1])))
        return 0
    json.dump(run(args.quick), sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
