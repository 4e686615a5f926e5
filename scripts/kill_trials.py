"""kill -9 trials of ``io.write_table``: the previous table always loads intact.

Three kinds, TRIALS each (default 20):

* ``h5ad``: the writer is SIGKILLed at a random moment of an ``.h5ad`` save;
* ``zarr``: the same for an AnnData ``.zarr`` save;
* ``between-renames``: the writer kills itself right after renaming the old ``.zarr`` store to
  its backup and before renaming the new one into place (the one moment the target is missing).

After each kill the table is read back with ``read_table`` (and ``read_sample(..., table=)`` for
the between-renames case): it must load and be either the old or the new version, complete.
Prints one line per kind: ``kind: N/N loadable (k old, m new)``; exits 1 on any failure.

    PYTHONPATH=src python scripts/kill_trials.py [TRIALS]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd


def _table(n: int, marker: float, n_vars: int = 40):
    rng = np.random.default_rng(0)
    X = rng.random((n, n_vars), dtype=np.float32)
    X[:, 0] = marker
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1), "version": np.full(n, marker)},
                       index=[str(i) for i in range(n)])
    t = ad.AnnData(X=X, obs=obs)
    t.obsm["spatial"] = rng.random((n, 2)) * 500
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region"}
    t.uns["carspatial"] = {"pixel_size_um": 1.0}
    return t


def _writer(path: str, marker: float, n: int):
    from napari_carspatial.io import write_table

    write_table(_table(n, marker), path, overwrite=True)
    os._exit(0)


def _die_between_renames(path: str, marker: float, n: int):
    from napari_carspatial.io import write as write_mod

    real = os.replace

    def replace(a, b):
        real(a, b)
        if write_mod._BAK_TAG in os.fspath(b):
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    write_mod.write_table(_table(n, marker), path, overwrite=True)
    os._exit(0)


def trials(kind: str, folder: Path, n_trials: int, n: int = 100_000, seed: int = 1) -> tuple[int, int, int]:
    from napari_carspatial.io import read_sample, read_table, write_table

    suffix = ".h5ad" if kind == "h5ad" else ".zarr"
    path = folder / f"{kind}{suffix}"
    write_table(_table(n, 0.0), path)
    t0 = time.perf_counter()
    write_table(_table(n, 0.0), path, overwrite=True)  # the child builds its table, then saves
    save_s = time.perf_counter() - t0
    ctx = mp.get_context("fork")
    rng = random.Random(seed)
    current, ok, old, new_ = 0.0, 0, 0, 0
    img = None
    if kind == "between-renames":  # read back through read_sample too: image + table
        import tifffile

        img = folder / "img.ome.tif"
        tifffile.imwrite(img, np.zeros((1, 600, 600), np.uint16), ome=True, metadata={"axes": "CYX"})
    for trial in range(n_trials):
        new = float(trial + 1)
        target = _die_between_renames if kind == "between-renames" else _writer
        proc = ctx.Process(target=target, args=(os.fspath(path), new, n))
        proc.start()
        if kind != "between-renames":
            time.sleep(rng.uniform(0.0, 1.5 * save_s + 0.1))
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        try:
            if img is not None and trial % 2:
                back = read_sample(img, table=path, check_ids=False).table
            else:
                back = read_table(path)
            got = float(back.X[0, 0])
            good = got in (current, new) and back.n_obs == n and bool(np.all(back.X[:, 0] == got)) \
                and bool(np.all(back.obs["version"] == got))
        except Exception as err:  # noqa: BLE001 - a trial that fails to load is what we count
            print(f"  {kind} trial {trial}: {type(err).__name__}: {err}")
            good, got = False, current
        ok += good
        old += good and got == current
        new_ += good and got == new
        current = got
    return ok, old, new_


def main(n_trials: int = 20) -> int:
    failed = 0
    with tempfile.TemporaryDirectory(prefix="kill-trials-") as tmp:
        for kind in ("h5ad", "zarr", "between-renames"):
            folder = Path(tmp) / kind
            folder.mkdir()
            t0 = time.perf_counter()
            ok, old, new = trials(kind, folder, n_trials)
            print(f"{kind}: {ok}/{n_trials} loadable, complete and old-or-new ({old} old, {new} new), "
                  f"{time.perf_counter() - t0:.0f} s")
            failed += ok != n_trials
            left = sorted(p.name for p in folder.iterdir())
            if kind != "between-renames" and len(left) > 1:
                from napari_carspatial.io import write as write_mod

                write_mod.restore_interrupted(folder / f"{kind}{'.h5ad' if kind == 'h5ad' else '.zarr'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
