"""Ligand-receptor tests vs ``squidpy.gr.ligrec``, measured in the same run.

Rows (full; ``quick`` in brackets):

``ligrec.cluster``  :func:`napari_carspatial.analysis.ligrec.ligrec` vs ``squidpy.gr.ligrec``
    (``use_raw=False, n_jobs=1``, numba parallel as squidpy picks it: on) on 100,000 cells
    [10,000] x 1,000 ligand-receptor pairs [200] of liana's consensus resource (all their genes
    in the panel), 10 cell types (niche-clustered, as bench_stats), counts with 5 % non-zeros,
    1,000 permutations [200], the same seed. Target >= 10x faster. Agreement: means identical,
    p-values identical (max |dp|), number of tested cells of the result. Each side runs in its own
    process (peak memory ``VmHWM``); the numba kernels are compiled on a small input first.
``ligrec.spatial``  :func:`spatial_ligrec` on the same table with a Delaunay graph (30 µm at
    0.5 µm/px), analytic null (no permutations): no reference (squidpy has no neighbour test);
    target < 60 s.

Run alone: ``python benchmarks/bench_ligrec.py [--quick]``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, peak_rss_mb, result, run_child  # noqa: E402

N_TYPES = 10


def make_table(n_cells: int, n_pairs: int, seed: int = 0, density: float = 0.05):
    """(AnnData, pairs DataFrame): consensus pairs whose genes are the panel; niche-clustered types."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    from napari_carspatial.analysis.ligrec import ligand_receptor_pairs

    rng = np.random.default_rng(seed)
    res = ligand_receptor_pairs("consensus").drop_duplicates()
    res = res.sample(frac=1.0, random_state=seed).head(n_pairs).reset_index(drop=True)
    genes = sorted({g for c in pd.concat([res["ligand"], res["receptor"]]) for g in str(c).split("_")})
    g = len(genes)
    nnz = int(n_cells * g * density)
    rows = rng.integers(0, n_cells, nnz)
    cols = rng.integers(0, g, nnz)
    vals = rng.geometric(0.5, nnz).astype(np.float32)
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n_cells, g))
    X.sum_duplicates()
    side = int(np.ceil(np.sqrt(n_cells)))
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    xy = np.column_stack([gx.ravel(), gy.ravel()])[:n_cells].astype(float) * 20.0 + rng.uniform(-8, 8, (n_cells, 2))
    centers = rng.uniform(0, side * 20.0, (max(4, n_cells // 400), 2))
    mixes = rng.dirichlet(np.full(N_TYPES, 0.3), len(centers))
    niche = cKDTree(centers).query(xy)[1]
    lab = (rng.random(n_cells)[:, None] > np.cumsum(mixes, axis=1)[niche]).sum(axis=1).clip(0, N_TYPES - 1)
    obs = pd.DataFrame({"ct": pd.Categorical([f"type{i}" for i in lab])}, index=pd.RangeIndex(n_cells).astype(str))
    a = ad.AnnData(X, obs=obs, var=pd.DataFrame(index=genes))
    a.obsm["spatial"] = xy
    a.uns["carspatial"] = {"pixel_size_um": 0.5}
    return a, res


def _data(n_cells, n_pairs):
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    f = DATA_DIR / f"ligrec_{n_cells}_{n_pairs}.h5ad"
    if not f.exists():
        a, res = make_table(n_cells, n_pairs)
        a.uns["pairs"] = res
        a.write_h5ad(f)
    return f


def child(mode: str, path: str, n_perms: int) -> dict:
    import anndata as ad

    warnings.filterwarnings("ignore")
    a = ad.read_h5ad(path)
    pairs = a.uns["pairs"][["ligand", "receptor"]]
    small = a[:2000].copy()
    if mode == "ours":
        from napari_carspatial.analysis.ligrec import ligrec

        ligrec(small, "ct", pairs=pairs, n_perms=5, seed=0)  # numba compile
        t0 = time.perf_counter()
        r = ligrec(a, "ct", pairs=pairs, n_perms=n_perms, seed=0, corr_method=None)
        dt = time.perf_counter() - t0
        out = {"means": r.means.to_numpy().tolist(), "pvalues": np.nan_to_num(r.pvalues.to_numpy(), nan=-1).tolist(),
               "index": [list(map(str, i)) for i in r.means.index], "columns": [list(c) for c in r.means.columns]}
    elif mode == "squidpy":
        import squidpy as sq

        from napari_carspatial.analysis.ligrec import resolve_pairs

        inter = resolve_pairs(list(a.var_names), pairs)[["source", "target"]]
        kw = {"use_raw": False, "copy": True, "n_jobs": 1, "show_progress_bar": False, "seed": 0}
        sq.gr.ligrec(small, "ct", interactions=inter, n_perms=5, **kw)  # numba compile
        t0 = time.perf_counter()
        r = sq.gr.ligrec(a, "ct", interactions=inter, n_perms=n_perms, **kw)
        dt = time.perf_counter() - t0
        m = r["means"].sparse.to_dense()
        p = r["pvalues"].sparse.to_dense()
        out = {"means": m.to_numpy().tolist(), "pvalues": np.nan_to_num(p.to_numpy(), nan=-1).tolist(),
               "index": [list(map(str, i)) for i in m.index], "columns": [list(c) for c in m.columns]}
    elif mode == "spatial":
        from napari_carspatial.analysis.ligrec import spatial_ligrec

        spatial_ligrec(small, "ct", pairs=pairs)
        t0 = time.perf_counter()
        r = spatial_ligrec(a, "ct", pairs=pairs, max_distance_um=30.0)
        dt = time.perf_counter() - t0
        out = {"n_rows": int(len(r.table)), "n_tested": int(r.table["z"].notna().sum())}
    else:
        raise ValueError(mode)
    out.update(seconds=dt, peak_mb=peak_rss_mb())
    return out


def _align(res):
    import pandas as pd

    idx = pd.MultiIndex.from_tuples([tuple(i) for i in res["index"]])
    cols = pd.MultiIndex.from_tuples([tuple(c) for c in res["columns"]])
    return (pd.DataFrame(res["means"], index=idx, columns=cols), pd.DataFrame(res["pvalues"], index=idx, columns=cols))


def run(quick: bool = False) -> list[dict]:
    n_cells, n_pairs, n_perms = (10_000, 200, 200) if quick else (100_000, 1000, 1000)
    path = _data(n_cells, n_pairs)
    ours = run_child(__file__, "ours", [str(path), str(n_perms)], timeout=7200)
    ref = run_child(__file__, "squidpy", [str(path), str(n_perms)], timeout=7200)
    rows = []
    if "error" in ours or "error" in ref:
        rows.append(result("ligrec.cluster", ours_s=ours.get("seconds"), reference="squidpy.gr.ligrec",
                           reference_s=ref.get("seconds"), agreement=f"error: {ours.get('error') or ref.get('error')}",
                           target=">= 10x faster, identical", met=False))
    else:
        mo, po = _align(ours)
        mr, pr = _align(ref)
        mr, pr = mr.loc[mo.index, mo.columns], pr.loc[po.index, po.columns]
        dmean = float(np.max(np.abs(mo.to_numpy() - mr.to_numpy())))
        dp = float(np.max(np.abs(po.to_numpy() - pr.to_numpy())))
        tested = int((po.to_numpy() >= 0).sum())
        ratio = ref["seconds"] / ours["seconds"]
        rows.append(result(
            "ligrec.cluster", ours_s=ours["seconds"], reference="squidpy.gr.ligrec", reference_s=ref["seconds"],
            agreement=f"max|dmean|={dmean:.3g}, max|dp|={dp:.3g} over {tested} tested of {po.size}",
            target=">= 10x faster, identical", met=bool(ratio >= 10 and dmean == 0 and dp == 0),
            peak_mb=ours["peak_mb"], reference_peak_mb=ref["peak_mb"],
            data=f"{n_cells} cells x {mo.shape[0]} pairs (of {n_pairs} asked) x {mo.shape[1]} cluster pairs, {n_perms} permutations"))
    sp_ = run_child(__file__, "spatial", [str(path), str(n_perms)], timeout=7200)
    rows.append(result("ligrec.spatial", ours_s=sp_.get("seconds"), reference=None, reference_s=None,
                       agreement=f"{sp_.get('n_tested')} of {sp_.get('n_rows')} rows tested" if "error" not in sp_ else f"error: {sp_['error']}",
                       target="< 60 s (analytic null)", met=bool("error" not in sp_ and sp_["seconds"] < 60),
                       peak_mb=sp_.get("peak_mb"), data=f"{n_cells} cells, Delaunay 30 µm"))
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

        write_child_result(args.out, child(args.child, rest[0], int(rest[1])))
        return 0
    json.dump(run(args.quick), sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
