"""``carspatial quantify`` end to end on one field: a small job must not start a cluster.

Row ``cli.quantify_field``: the command on a 1024 x 1024 x 22-channel uint16 OME-TIFF and its
~2,600-cell mask (written once to ``_data``), wall time of the whole process (interpreter
start, imports, reading, measuring, writing the .h5ad), median of 3 [quick: 1]. Target < 3 s.
Reference: the same command forced onto a local cluster (``--in-process-max 0``, the old
default). Agreement: both tables are identical to ``quantify`` called in-process on the arrays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import result  # noqa: E402

DATA = Path(__file__).resolve().parent / "_data" / "cli_field"


def _field():
    import tifffile
    from bench_quantify import voronoi_block

    img_p, mask_p = DATA / "field_22ch.ome.tif", DATA / "field_22ch_mask.tif"
    if not (img_p.exists() and mask_p.exists()):
        DATA.mkdir(parents=True, exist_ok=True)
        lab = voronoi_block(0, 1024, 0, 1024)
        img = np.random.default_rng(0).integers(0, 4000, (22, 1024, 1024), dtype=np.uint16)
        tifffile.imwrite(mask_p.with_suffix(".tmp.tif"), lab, tile=(256, 256))
        tifffile.imwrite(img_p.with_suffix(".tmp.tif"), img, ome=True, photometric="minisblack", tile=(256, 256),
                         metadata={"axes": "CYX", "Channel": {"Name": [f"M{i}" for i in range(22)]},
                                   "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        mask_p.with_suffix(".tmp.tif").replace(mask_p)
        img_p.with_suffix(".tmp.tif").replace(img_p)
    return img_p, mask_p


def _cli(img, mask, out, *extra) -> float:
    exe = Path(sys.executable).with_name("carspatial")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_carspatial.cli"]
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, "quantify", str(img), str(mask), "-o", str(out), "--overwrite", *extra],
                          capture_output=True, text=True, timeout=600)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-1500:])
    return dt


def run(quick: bool = False) -> list[dict]:
    import anndata as ad
    import tifffile

    from napari_carspatial.analysis.quantify import quantify

    img_p, mask_p = _field()
    tmp = Path(tempfile.mkdtemp(prefix="bench_cli_"))
    reps = 1 if quick else 3
    _cli(img_p, mask_p, tmp / "warm.h5ad")  # numba cache, page cache
    load0 = os.getloadavg()[0]
    times = [_cli(img_p, mask_p, tmp / "small.h5ad") for _ in range(reps)]
    ref_times = [_cli(img_p, mask_p, tmp / "cluster.h5ad", "--in-process-max", "0") for _ in range(reps)]
    a, b = ad.read_h5ad(tmp / "small.h5ad"), ad.read_h5ad(tmp / "cluster.h5ad")
    direct = quantify(tifffile.imread(img_p), tifffile.imread(mask_p))
    same = bool(np.array_equal(a.X, direct.X) and np.array_equal(b.X, direct.X))
    where = a.uns["carspatial"]["quantify"]["scheduler"]
    t, t_ref = float(np.median(times)), float(np.median(ref_times))
    return [result("cli.quantify_field (1024^2 x 22 ch, end to end)", ours_s=t,
                   reference="the same command on a LocalCluster (--in-process-max 0)", reference_s=t_ref,
                   agreement=f"tables == in-process quantify: {same}; chose: {where}; load {load0:.1f}",
                   target="< 3 s end to end, no cluster for one field",
                   met=bool(same and t < 3.0 and where.startswith("in-process")),
                   details={"all_s": times, "reference_all_s": ref_times, "n_cells": int(a.n_obs)})]


if __name__ == "__main__":
    json.dump(run("--quick" in sys.argv), sys.stdout, indent=1, default=str)
