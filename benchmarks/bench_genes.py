"""Genes on a million-cell sparse table: nothing densifies ``X`` (peak memory), accessor speed vs scipy.

Input: 1,000,000 cells x 5,000 genes [quick: 100,000 x 5,000], CSR, 50 non-zeros per cell
(geometric counts), float32 data / int32 indices: 0.4 GB sparse, 20 GB if it were dense.
Measured in a fresh process (peak ``VmHWM`` after building the matrix, then after the calls).

Rows:

``genes.gene_values``  :func:`napari_carspatial.analysis.genes.gene_values` for 10 genes, median
    per gene; reference: scipy ``X[:, j].toarray()``. Agreement: identical. Target: no slower
    than scipy, identical.
``genes.peak_memory``  peak RSS over build + gene_values + top_genes (100 cells) + gene_summary +
    gating's ``marker_values`` + sparse ``normalize_log1p`` (a second CSR of the same size).
    Target < 2.5 GB (the dense matrix alone would be 20 GB).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import current_rss_mb, peak_rss_mb, result, run_child  # noqa: E402


def child(mode: str, n_cells: str, _unused: str) -> dict:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    n, g, k = int(n_cells), 5000, 50
    rng = np.random.default_rng(0)
    indices = np.empty(n * k, np.int32)
    for a in range(0, n, 100_000):  # in pieces, so generating does not dominate the peak
        b = min(a + 100_000, n)
        indices[a * k:b * k] = np.sort(rng.integers(0, g, (b - a, k)).astype(np.int32), axis=1).ravel()
    data = rng.geometric(0.4, n * k).astype(np.float32)
    X = sp.csr_matrix((data, indices, np.arange(0, n * k + 1, k, dtype=np.int64)), shape=(n, g))
    del indices, data
    adata = ad.AnnData(X, obs=pd.DataFrame({"cell_id": np.arange(1, n + 1)}, index=pd.RangeIndex(n).astype(str)),
                       var=pd.DataFrame(index=[f"G{i}" for i in range(g)]))
    base = current_rss_mb()
    from napari_carspatial.analysis.gating import marker_values
    from napari_carspatial.analysis.genes import (
        gene_summary,
        gene_values,
        normalize_log1p,
        top_genes,
    )

    genes = [f"G{i}" for i in range(0, g, g // 10)][:10]
    ours, ref, same = [], [], True
    for gn in genes:
        t0 = time.perf_counter()
        v = gene_values(adata, gn)
        ours.append(time.perf_counter() - t0)
        j = int(gn[1:])
        t0 = time.perf_counter()
        r = X[:, j].toarray().ravel()
        ref.append(time.perf_counter() - t0)
        same &= bool(np.array_equal(v, r))
    t0 = time.perf_counter()
    for c in range(0, n, n // 100):
        top_genes(adata, c, n=10)
    t_top = (time.perf_counter() - t0) / 100
    t0 = time.perf_counter()
    gene_summary(adata)
    t_sum = time.perf_counter() - t0
    t0 = time.perf_counter()
    marker_values(adata, "G7")
    t_gate = time.perf_counter() - t0
    t0 = time.perf_counter()
    normalize_log1p(adata)
    t_norm = time.perf_counter() - t0
    return {"ours_s": float(np.median(ours)), "ref_s": float(np.median(ref)), "same": same, "top_s": t_top,
            "summary_s": t_sum, "gate_s": t_gate, "norm_s": t_norm, "base_mb": base, "peak_mb": peak_rss_mb(),
            "nnz": int(X.nnz), "dense_gb": n * g * 4 / 1e9, "sparse_gb": (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1e9,
            "still_sparse": bool(sp.issparse(adata.X))}


def run(quick: bool = False) -> list[dict]:
    n = 100_000 if quick else 1_000_000
    r = run_child(__file__, "genes", [str(n), "0"], timeout=3600)
    if "error" in r:
        return [result("genes.gene_values", ours_s=None, reference="scipy X[:, j]", reference_s=None,
                       agreement=f"error: {r['error']}", target="<= scipy, identical", met=False)]
    return [
        result("genes.gene_values", ours_s=r["ours_s"], reference="scipy X[:, j].toarray()", reference_s=r["ref_s"],
               agreement=f"identical: {r['same']}", target="<= scipy time, identical",
               met=bool(r["same"] and r["ours_s"] <= r["ref_s"]), data=f"{n} x 5000 CSR, {r['nnz']} non-zeros"),
        result("genes.peak_memory", ours_s=None, reference=None, reference_s=None,
               agreement=(f"X stays sparse: {r['still_sparse']}; sparse {r['sparse_gb']:.2f} GB vs dense {r['dense_gb']:.0f} GB; "
                          f"top_genes {r['top_s'] * 1e3:.2f} ms/cell, gene_summary {r['summary_s']:.2f} s, gating marker_values "
                          f"{r['gate_s']:.2f} s, normalize_log1p {r['norm_s']:.2f} s; RSS after build {r['base_mb']:.0f} MB"),
               target="peak < 2.5 GB" if n >= 1_000_000 else "peak < 1 GB",
               met=bool(r["still_sparse"] and r["peak_mb"] < (2560 if n >= 1_000_000 else 1024)), peak_mb=r["peak_mb"]),
    ]


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
