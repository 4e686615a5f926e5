"""Quantification vs scikit-image ``regionprops_table``; whole-slide peak memory; local re-measure.

Rows
----
``quantify.regionprops``  30 channels x 4096 x 4096 uint16, ~40,000 Voronoi cells (quick: 1024 px):
    :func:`napari_carspatial.analysis.quantify` with the mean intensities and the moment-based
    shape (area, centroid, axes, eccentricity; ``solidity=False``: "mean intensity only" of the
    issue) vs ``regionprops_table(properties=("label", "intensity_mean"))``; max abs diff of the
    means. Target: >= 10x faster, identical values (max abs diff < 1e-6 relative). The full
    product call (with solidity) is in the row's details.
``quantify.vs_read_file``  the same pixels in a tiled TIFF (written once to ``_data``, page cache
    warm for both): quantify from the reader's lazy level 0 (in-process tiles) vs a plain read of
    the same tiles through the same reader (``level0.sum(axis=(1, 2))``: every tile decoded, no
    cell work). Target: within 2x of the read.
``quantify.vs_memory_pass``  the in-memory arrays of the first row: quantify vs one parallel SIMD
    pass summing every pixel of every channel (numba), the bandwidth limit. Target: within 2x;
    ``details`` has the profile (run finding, channel sums, the rest).
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
DATA = Path(__file__).resolve().parent / "_data"


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


def _best(fn, n=3):
    """(result, min wall, cpu of that call) over ``n`` calls: the machine is shared."""
    best = (None, float("inf"), 0.0)
    for _ in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        t = time.perf_counter() - t0
        if t < best[1]:
            best = (out, t, time.process_time() - c0)
    return best


def _sum_pass():
    import numba

    @numba.njit(parallel=True, cache=True)
    def sum_all(img2d):  # pragma: no cover - numba
        c_n, n = img2d.shape
        out = np.zeros(c_n, np.int64)
        for c in numba.prange(c_n):
            s = 0
            row = img2d[c]
            for i in range(n):
                s += row[i]
            out[c] = s
        return out

    return sum_all


def bench_regionprops(size: int) -> list[dict]:
    import importlib

    from skimage.measure import regionprops_table

    from napari_carspatial.analysis.quantify import quantify

    qmod = importlib.import_module("napari_carspatial.analysis.quantify")
    from napari_carspatial.analysis import _quantify_kernels as K

    lab = voronoi_block(0, size, 0, size)
    img = _image(30, size, size)
    quantify(img[:, :64, :64], lab[:64, :64])  # compile / load numba kernels (cached on disk)
    quantify(img[:, :64, :64], voronoi_block(0, 64, 4000, 4064), solidity=False)  # the sparse-id path too
    a, ours, ours_cpu = _best(lambda: quantify(img, lab, solidity=False))
    _, full, full_cpu = _best(lambda: quantify(img, lab), n=1)
    img_yxc = np.moveaxis(img, 0, -1)
    t0 = time.perf_counter()
    c0 = time.process_time()
    ref = regionprops_table(lab, img_yxc, properties=("label", "intensity_mean"))
    ref_s, ref_cpu = time.perf_counter() - t0, time.process_time() - c0
    same_ids = np.array_equal(a.obs["cell_id"].to_numpy(), ref["label"])
    refm = np.stack([ref[f"intensity_mean-{c}"] for c in range(30)], axis=1)
    diff = float(np.max(np.abs(a.X.astype(np.float64) - refm))) if same_ids else float("inf")
    rel = float(np.max(np.abs(a.X - refm) / np.maximum(np.abs(refm), 1))) if same_ids else float("inf")
    ratio = ref_s / ours
    data = f"30 x {size} x {size} uint16, {a.n_obs} cells"
    rows = [result("quantify.regionprops", ours_s=ours, reference="skimage regionprops_table (label, intensity_mean)",
                   reference_s=ref_s, agreement=f"ids equal {same_ids}; max abs diff {diff:.2e} (rel {rel:.1e}, float32 X)",
                   target=">= 10x faster, same values", met=bool(ratio >= 10 and same_ids and rel < 1e-6),
                   data=data, n_cells=int(a.n_obs), ours_cpu_s=ours_cpu, reference_cpu_s=ref_cpu,
                   details={"with_solidity_s": full, "with_solidity_cpu_s": full_cpu,
                            "what": "means + area, centroid, axes, eccentricity (solidity=False)"})]
    # in-memory: against one SIMD pass over the pixels
    sum_all = _sum_pass()
    flat = img.reshape(30, -1)
    sum_all(flat[:, :64])
    tot, t_read, read_cpu = _best(lambda: sum_all(flat))
    # profile of ours
    runs, _, c_runs = _best(lambda: qmod._runs(lab, None))
    st, ln, lc, fl, ids = runs
    _, _, c_sums = _best(lambda: K.run_sums(flat, st, ln, lc, fl, len(ids), False, True, 2))
    ok_tot = bool(np.array_equal(tot, img.sum(axis=(1, 2), dtype=np.int64)))
    rows.append(result(
        "quantify.vs_memory_pass", ours_s=ours, reference="one parallel SIMD pass summing every pixel (numba)",
        reference_s=t_read, agreement=f"same pixels ({data}); reference sums correct: {ok_tot}",
        target="within 2x of the pass (wall and CPU)", met=bool(ours <= 2 * t_read and ours_cpu <= 2 * read_cpu),
        data=data, ours_cpu_s=ours_cpu, reference_cpu_s=read_cpu, cpu_ratio=read_cpu / ours_cpu if ours_cpu else None,
        details={"profile_cpu_s": {"runs (label pass x2 + id hash)": c_runs, "channel sums (one add per run)": c_sums,
                                   "rest (moments, table)": max(0.0, ours_cpu - c_runs - c_sums)},
                 "n_runs": int(len(ln)),
                 "why": "the pass is a SIMD reduction (~0.3 cycles/pixel, memory-bound); the channel sums add "
                        "each run of ~22 pixels in a short scalar loop (~0.8 cycles/pixel) and the run finder "
                        "reads the labels twice"}))
    rows.append(_bench_vs_file(img, lab, data))
    return rows


def _bench_vs_file(img, lab, data) -> dict:
    import dask
    import tifffile

    from napari_carspatial.analysis.quantify import quantify
    from napari_carspatial.io import read_image

    c, h, w = img.shape
    path = DATA / f"quantify_{c}x{h}x{w}.tif"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.tif")
        tifffile.imwrite(tmp, img, tile=(512, 512), photometric="minisblack", metadata={"axes": "CYX"})
        tmp.replace(path)
    level0 = read_image(path).levels[0]
    with dask.config.set(scheduler="threads"):
        level0.sum(axis=(1, 2)).compute()  # page cache warm for both
        _, t_read, read_cpu = _best(lambda: level0.sum(axis=(1, 2)).compute())
        a, ours, ours_cpu = _best(lambda: quantify(level0, lab, solidity=False, chunks=1024))
    ok = bool(np.array_equal(a.obs["area"].to_numpy().sum(), int((lab > 0).sum())))
    return result("quantify.vs_read_file", ours_s=ours,
                  reference="plain read of the same tiles through the same reader (level0.sum)", reference_s=t_read,
                  agreement=f"same file ({data}, 512 px tiles, page cache warm); areas add up: {ok}",
                  target="within 2x of the read (wall and CPU)",
                  met=bool(ok and ours <= 2 * t_read and ours_cpu <= 2 * read_cpu), data=data,
                  ours_cpu_s=ours_cpu, reference_cpu_s=read_cpu)


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
    rows = bench_regionprops(1024 if quick else 4096)
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
