"""Transcripts at scale: index build, view queries and density images at 10 million points.

Input: a synthetic Xenium-like ``transcripts.parquet`` (cached in ``benchmarks/_data``): 10,000,000
rows [quick: 1,000,000] in 1,000,000-row groups, columns ``x_location``, ``y_location`` (µm on a
8.5 x 8.5 mm slide = 40,000 x 40,000 px at 0.2125 µm/px), ``feature_name`` (300 genes, Zipf
frequencies), ``cell_id``, ``qv`` (Xenium's 0-40 quality, 20 % below 20), molecules clustered in
200,000 cells.

Rows:

``transcripts.build``  :func:`napari_carspatial.io.transcripts.build_transcripts` from the parquet
    (two passes, memory-mapped output), fresh process: time and peak RSS. Reference: reading the
    parquet into pandas (what any in-memory table costs), same process kind. Target: peak < 1 GB.
``transcripts.query_view``  "points in this view, these genes, quality >= 20": 40 random
    2,000 x 2,000 px views (425 µm), 5 random genes, on the index (memory-mapped, warm page
    cache); median ms per query. Reference: the same filter on the parquet as a dask DataFrame
    (how a SpatialData points element is queried), median of 5. Agreement: identical row sets
    on every reference query. Target < 50 ms and >= 10x faster; peak RSS of the query process.
``transcripts.query_wide``  the same with 10,000 x 10,000 px views (a quarter of the slide side).
``transcripts.density``  the all-gene density pyramid (64 px bins) and one for 5 genes, from the
    bins x genes count matrix (no row read); reference: ``numpy.histogram2d`` of all points read
    from the parquet. Agreement: equal counts. Target < 100 ms.
``transcripts.density_quality``  the density with ``qv >= 20`` (streams the gene and quality
    columns). Agreement: equal to the reference histogram of the filtered points.

Run alone: ``python benchmarks/bench_transcripts.py [--quick]``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, peak_rss_mb, result, run_child  # noqa: E402

PX = 0.2125
SIDE_PX = 40_000
N_GENES = 300


def make_parquet(n: int, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    f = DATA_DIR / f"transcripts_{n}.parquet"
    if f.exists() and pq.ParquetFile(f).metadata.num_rows == n:
        return f
    rng = np.random.default_rng(seed)
    n_cells = max(1000, n // 50)
    cx = rng.uniform(0, SIDE_PX * PX, n_cells)
    cy = rng.uniform(0, SIDE_PX * PX, n_cells)
    p = 1.0 / np.arange(1, N_GENES + 1) ** 1.1
    p /= p.sum()
    genes = np.array([f"GENE{i:03d}" for i in range(N_GENES)])
    tmp = f.with_suffix(".tmp")
    writer = None
    step = 1_000_000
    for a in range(0, n, step):
        m = min(step, n - a)
        cell = rng.integers(0, n_cells, m)
        x = np.clip(cx[cell] + rng.normal(0, 4, m), 0, SIDE_PX * PX - 1e-3)
        y = np.clip(cy[cell] + rng.normal(0, 4, m), 0, SIDE_PX * PX - 1e-3)
        outside = rng.random(m) < 0.1
        cid = np.where(outside, "UNASSIGNED", np.char.add("cell", cell.astype(str)))
        qv = np.where(rng.random(m) < 0.2, rng.uniform(0, 20, m), rng.uniform(20, 40, m)).astype(np.float32)
        t = pa.table({"x_location": x.astype(np.float32), "y_location": y.astype(np.float32),
                      "feature_name": pa.array(genes[rng.choice(N_GENES, m, p=p)]).dictionary_encode(),
                      "cell_id": cid, "qv": qv})
        if writer is None:
            writer = pq.ParquetWriter(tmp, t.schema)
        writer.write_table(t, row_group_size=step)
    writer.close()
    tmp.replace(f)
    return f


def _spec():
    from napari_carspatial.io.transcripts import ColumnSpec

    a = np.diag([1 / PX, 1 / PX, 1.0])
    a[:2, 2] = -0.5
    return ColumnSpec(x="x_location", y="y_location", gene="feature_name", cell_id=None, quality="qv", affine=a)


class AnonSampler:
    """Peak anonymous (heap) memory, sampled every 20 ms: ``VmHWM`` also counts the file pages
    of the memory-mapped output, which the kernel reclaims at will."""

    def __init__(self):
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def anon_mb() -> float:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.anon_mb())
            self._stop.wait(0.02)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.anon_mb())


def _build(path, cache_dir):
    import os

    os.environ["CARSPATIAL_CACHE_DIR"] = str(cache_dir)
    from napari_carspatial.io.transcripts import build_transcripts, parquet_chunks

    spec = _spec()
    return build_transcripts(parquet_chunks(path, spec.columns()), spec, shape_yx=(SIDE_PX, SIDE_PX),
                             quality_name="qv", source=path, in_memory_max_rows=0)


def _views(n, size, seed=1):
    rng = np.random.default_rng(seed)
    y0 = rng.uniform(0, SIDE_PX - size, n)
    x0 = rng.uniform(0, SIDE_PX - size, n)
    genes = [list(rng.choice(N_GENES, 5, replace=False)) for _ in range(n)]
    return [((float(a), float(b), float(a + size), float(b + size)), [f"GENE{g:03d}" for g in gs])
            for a, b, gs in zip(y0, x0, genes, strict=True)]


def child(mode: str, path: str, cache: str) -> dict:
    if mode == "build":
        import shutil

        shutil.rmtree(cache, ignore_errors=True)
        with AnonSampler() as mem:
            t0 = time.perf_counter()
            tr = _build(path, cache)
            dt = time.perf_counter() - t0
        return {"seconds": dt, "peak_mb": peak_rss_mb(), "peak_anon_mb": mem.peak, "n": len(tr)}
    if mode == "pandas":
        import pandas as pd

        with AnonSampler() as mem:
            t0 = time.perf_counter()
            df = pd.read_parquet(path)
            dt = time.perf_counter() - t0
        return {"seconds": dt, "peak_mb": peak_rss_mb(), "peak_anon_mb": mem.peak, "n": len(df)}
    if mode in ("query", "query_wide"):
        tr = _build(path, cache)  # reopens the cached index
        size = 2000 if mode == "query" else 10_000
        views = _views(40, size)
        tr.query(bbox=views[0][0], genes=views[0][1], min_quality=20)  # page in the index once
        times, counts = [], []
        for bbox, genes in views:
            t0 = time.perf_counter()
            r = tr.query(bbox=bbox, genes=genes, min_quality=20, columns=("x", "y", "gene"))
            times.append(time.perf_counter() - t0)
            counts.append(len(r["x"]))
        ours_peak = peak_rss_mb()  # before the reference runs in this process
        # the reference: a dask DataFrame filter on the parquet (SpatialData points), 5 queries
        import dask.dataframe as dd

        ddf = dd.read_parquet(path, columns=["x_location", "y_location", "feature_name", "qv"])
        ref_t, agree = [], []
        for bbox, genes in views[:5]:
            y0, x0, y1, x1 = bbox
            t0 = time.perf_counter()
            # the index stores float32 level-0 pixels: filter the same values
            xs = (ddf["x_location"].astype("float64") / PX - 0.5).astype("float32")
            ys = (ddf["y_location"].astype("float64") / PX - 0.5).astype("float32")
            sel = ddf[(xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1) & ddf["feature_name"].isin(genes) & (ddf["qv"] >= 20)]
            got = sel.compute()
            ref_t.append(time.perf_counter() - t0)
            ours = tr.query(bbox=bbox, genes=genes, min_quality=20, columns=("x", "y"))
            a = np.sort(np.round(ours["x"], 2))
            b = np.sort(np.round((got["x_location"].to_numpy(np.float64) / PX - 0.5).astype(np.float32), 2))
            agree.append(bool(a.size == b.size and np.allclose(a, b, atol=0.02)))
        return {"median_s": float(np.median(times)), "p90_s": float(np.percentile(times, 90)),
                "mean_points": float(np.mean(counts)), "ref_median_s": float(np.median(ref_t)),
                "agree": all(agree), "peak_mb": ours_peak, "reference_peak_mb": peak_rss_mb()}
    if mode == "density":
        import pyarrow.parquet as pq

        tr = _build(path, cache)
        genes = ["GENE003", "GENE010", "GENE050", "GENE100", "GENE200"]
        t0 = time.perf_counter()
        pyr = tr.density_pyramid()
        t_all = time.perf_counter() - t0
        t0 = time.perf_counter()
        pyr5 = tr.density_pyramid(genes=genes)
        t_five = time.perf_counter() - t0
        t0 = time.perf_counter()
        dq = tr.density(min_quality=20)
        t_q = time.perf_counter() - t0
        ours_peak = peak_rss_mb()
        t0 = time.perf_counter()
        tab = pq.read_table(path, columns=["x_location", "y_location", "feature_name", "qv"]).to_pandas()
        ny, nx = tr.bins_shape
        edges_y = np.arange(ny + 1) * tr.bin_px - 0.5
        edges_x = np.arange(nx + 1) * tr.bin_px - 0.5
        x = tab["x_location"].to_numpy(np.float64) / PX - 0.5
        y = tab["y_location"].to_numpy(np.float64) / PX - 0.5
        h_all = np.histogram2d(y, x, bins=[edges_y, edges_x])[0]
        t_ref = time.perf_counter() - t0
        keep = tab["feature_name"].isin(genes).to_numpy()
        h5 = np.histogram2d(y[keep], x[keep], bins=[edges_y, edges_x])[0]
        q = tab["qv"].to_numpy() >= 20
        hq = np.histogram2d(y[q], x[q], bins=[edges_y, edges_x])[0]
        return {"all_s": t_all, "five_s": t_five, "quality_s": t_q, "ref_s": t_ref,
                "levels": [list(a.shape) for a in pyr],
                "agree_all": bool(np.array_equal(pyr[0], h_all)), "agree_five": bool(np.array_equal(pyr5[0], h5)),
                "agree_quality": bool(np.array_equal(dq, hq)), "total": float(pyr[-1].sum()), "peak_mb": ours_peak,
                "reference_peak_mb": peak_rss_mb()}
    raise ValueError(mode)


def run(quick: bool = False) -> list[dict]:
    n = 1_000_000 if quick else 10_000_000
    path = make_parquet(n)
    cache = str(DATA_DIR / f"transcripts_cache_{n}")
    rows = []
    b = run_child(__file__, "build", [str(path), cache], timeout=3600)
    ref = run_child(__file__, "pandas", [str(path), cache], timeout=3600)
    rows.append(result("transcripts.build", ours_s=b.get("seconds"), reference="pandas.read_parquet (all in memory)",
                       reference_s=ref.get("seconds"),
                       agreement=(f"{b.get('n')} rows indexed; peak heap (RssAnon) {b.get('peak_anon_mb', float('nan')):.0f} MB "
                                  f"vs pandas {ref.get('peak_anon_mb', float('nan')):.0f} MB; VmHWM counts the memory-mapped output pages")
                       if "error" not in b else f"error: {b['error']}",
                       target="peak heap < 1 GB (out of core)", met=bool("error" not in b and b["peak_anon_mb"] < 1024),
                       peak_mb=b.get("peak_mb"), reference_peak_mb=ref.get("peak_mb"), data=f"{n} transcripts"))
    for mode, name, size in (("query", "transcripts.query_view", 2000), ("query_wide", "transcripts.query_wide", 10_000)):
        q = run_child(__file__, mode, [str(path), cache], timeout=3600)
        if "error" in q:
            rows.append(result(name, ours_s=None, reference="dask DataFrame filter", reference_s=None,
                               agreement=f"error: {q['error']}", target="< 50 ms, >= 10x", met=False))
            continue
        target_s = 0.05 if mode == "query" else 0.5
        rows.append(result(name, ours_s=q["median_s"], reference="dask DataFrame filter on the parquet",
                           reference_s=q["ref_median_s"],
                           agreement=f"identical rows: {q['agree']}; {q['mean_points']:.0f} points per view; p90 {q['p90_s'] * 1e3:.1f} ms",
                           target=f"< {target_s * 1e3:.0f} ms and >= 10x faster",
                           met=bool(q["agree"] and q["median_s"] < target_s and q["ref_median_s"] / q["median_s"] >= 10),
                           peak_mb=q["peak_mb"], reference_peak_mb=q["reference_peak_mb"],
                           data=f"{n} transcripts, {size} px views, 5 genes, qv >= 20"))
    d = run_child(__file__, "density", [str(path), cache], timeout=3600)
    if "error" in d:
        rows.append(result("transcripts.density", ours_s=None, reference="numpy.histogram2d", reference_s=None,
                           agreement=f"error: {d['error']}", target="< 100 ms", met=False))
    else:
        rows.append(result("transcripts.density", ours_s=d["all_s"], reference="read all + numpy.histogram2d",
                           reference_s=d["ref_s"],
                           agreement=f"equal counts: all {d['agree_all']}, 5 genes {d['agree_five']}; pyramid {d['levels']}; 5 genes {d['five_s'] * 1e3:.1f} ms",
                           target="< 100 ms, equal", met=bool(d["agree_all"] and d["agree_five"] and d["all_s"] < 0.1),
                           peak_mb=d["peak_mb"], reference_peak_mb=d["reference_peak_mb"]))
        rows.append(result("transcripts.density_quality", ours_s=d["quality_s"], reference="read all + numpy.histogram2d",
                           reference_s=d["ref_s"], agreement=f"equal counts: {d['agree_quality']}",
                           target="< 2 s, equal", met=bool(d["agree_quality"] and d["quality_s"] < 2)))
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

        write_child_result(args.out, child(args.child, rest[0], rest[1]))
        return 0
    json.dump(run(args.quick), sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
