"""Saves that survive everything: the source guard inside ``write_table``, symbolic links, a
``.zarr`` replace killed between its two renames, disk full (ENOSPC injected into zarr's chunk
writes) and kill -9 during ``.zarr`` saves. The 20/20 trials live in ``scripts/kill_trials.py``."""

from __future__ import annotations

import errno
import itertools
import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.io import read_table, write_table
from napari_carspatial.io import write as write_mod
from napari_carspatial.model import SampleError


def _table(n=200, marker=0.0, n_vars=3):
    rng = np.random.default_rng(0)
    X = rng.random((n, n_vars), dtype=np.float32)
    X[:, 0] = marker
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1), "version": np.full(n, marker)},
                       index=[str(i) for i in range(n)])
    t = ad.AnnData(X=X, obs=obs)
    t.obsm["spatial"] = rng.random((n, 2)) * 100
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region"}
    return t


def _state(folder: Path) -> dict:
    return {p.name: (p.is_symlink(), p.stat().st_mtime_ns if p.exists() else None) for p in folder.iterdir()}


# --------------------------------------------------------------------------- never over a source
@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_write_table_refuses_every_source_whatever_overwrite_says(tmp_path, suffix):
    src = tmp_path / f"source{suffix}"
    write_table(_table(marker=1.0), src)
    before = read_table(src).X.copy()
    img = tmp_path / "img.ome.tif"
    img.write_bytes(b"not really an image")
    paths = {"image": os.fspath(img), "table": os.fspath(src)}
    with pytest.raises(SampleError, match="source table") as err:
        write_table(_table(marker=2.0), src, overwrite=True, paths=paths)
    assert os.fspath(src) in str(err.value)
    # through a symbolic link and a relative spelling of the same path
    link = tmp_path / f"link{suffix}"
    link.symlink_to(src)
    with pytest.raises(SampleError, match="source table"):
        write_table(_table(marker=2.0), link, overwrite=True, paths=paths)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SampleError, match="source table"):
            write_table(_table(marker=2.0), Path(".") / src.name, overwrite=True, paths=paths)
    finally:
        os.chdir(cwd)
    with pytest.raises(SampleError, match="source image"):
        write_mod._refuse_sources(img, paths)   # any part, not only the table
    np.testing.assert_array_equal(read_table(src).X, before)
    assert link.is_symlink()
    # a new name next to it is fine
    write_table(_table(marker=3.0), tmp_path / f"new{suffix}", paths=paths)


def test_write_table_refuses_hard_links_and_targets_inside_a_source_store(tmp_path):
    src = tmp_path / "t.h5ad"
    write_table(_table(marker=1.0), src)
    hard = tmp_path / "hard.h5ad"
    os.link(src, hard)
    with pytest.raises(SampleError, match="source table"):
        write_table(_table(), hard, overwrite=True, paths={"table": src})
    store = tmp_path / "image.ome.zarr"
    store.mkdir()
    with pytest.raises(SampleError, match="inside the sample's source image store"):
        write_table(_table(), store / "table.h5ad", paths={"image": store})
    assert list(store.iterdir()) == []
    # a project folder (steinbock) may receive a new file
    write_table(_table(), tmp_path / "curated.h5ad", paths={"folder": tmp_path, "table": src})


def test_writing_over_a_symlink_never_replaces_the_link(tmp_path):
    real = tmp_path / "elsewhere" / "t.h5ad"
    real.parent.mkdir()
    write_table(_table(marker=1.0), real)
    link = tmp_path / "t.h5ad"
    link.symlink_to(real)
    with pytest.raises(SampleError, match="symbolic link") as err:
        write_table(_table(marker=2.0), link, overwrite=True)
    assert os.fspath(real) in str(err.value)
    assert link.is_symlink() and float(read_table(real).X[0, 0]) == 1.0


# --------------------------------------------------------------------------- killed between the renames
def _die_between_renames(path: str, marker: float):  # forked child
    real = os.replace

    def replace(a, b):
        real(a, b)
        if write_mod._BAK_TAG in os.fspath(b):  # the old store was renamed to its backup
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    write_table(_table(marker=marker), path, overwrite=True)
    os._exit(0)


def test_zarr_replace_killed_between_renames_is_restored_by_the_reader(tmp_path):
    from napari_carspatial.io._util import require_exists

    path = tmp_path / "table.zarr"
    write_table(_table(marker=1.0), path)
    ctx = mp.get_context("fork")
    for trial in range(3):
        proc = ctx.Process(target=_die_between_renames, args=(os.fspath(path), 10.0 + trial))
        proc.start()
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        assert not path.exists() and any(write_mod._BAK_TAG in p.name for p in tmp_path.iterdir())
        if trial == 0:
            back = read_table(path)          # the reader restores the previous table
        elif trial == 1:
            require_exists(path, "cell table")   # what read_sample(table=...) calls first
            back = read_table(path)
        else:
            assert write_mod.find_recovery(path) is None  # find_recovery restores it too
            back = read_table(path)
        assert float(back.X[0, 0]) == 1.0 and back.n_obs == 200
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # backup and temp folder gone


# --------------------------------------------------------------------------- disk full
def test_enospc_during_zarr_save_clean_error_old_store_intact_no_temp_folder_reappears(tmp_path, monkeypatch):
    """A chunk write fails with ENOSPC while others are still in flight (zarr writes chunks on its
    own event loop): the error is clean, the old store intact, and the temporary folder is removed
    in this process after every background write stopped (it does not reappear)."""
    import zarr
    import zarr.storage._local as zlocal

    path = tmp_path / "table.zarr"
    old = _table(n=100_000, marker=1.0, n_vars=40)
    write_table(old, path)
    real_put = zlocal._put
    counter = itertools.count(1)
    x_chunks = itertools.count(1)
    late_writes = []

    def put(p, value, exclusive=False):
        next(counter)
        time.sleep(0.03)                 # slow disk: other chunk writes are in flight
        if Path(p).parent.name == "X" and next(x_chunks) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(p))
        late_writes.append(time.monotonic())
        return real_put(p, value, exclusive)

    monkeypatch.setattr(zlocal, "_put", put)
    new = _table(n=100_000, marker=2.0, n_vars=40)
    with zarr.config.set({"array.write_empty_chunks": True}), pytest.raises(SampleError) as err:
        write_table(new, path, overwrite=True, record=False)
    t_err = time.monotonic()
    monkeypatch.setattr(zlocal, "_put", real_put)
    msg = str(err.value)
    assert "No space left on device" in msg and os.fspath(tmp_path) in msg and "\n" not in msg
    assert next(x_chunks) > 4, "the injected failure did not happen among concurrent chunk writes"
    time.sleep(0.5)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert not [t for t in late_writes if t > t_err], "chunk writes went on after write_table returned"
    back = read_table(path)
    np.testing.assert_array_equal(back.X, old.X)


def test_own_leftover_temp_folders_are_removed_in_process(tmp_path):
    target = tmp_path / "t.zarr"
    write_table(_table(), target)
    stale = tmp_path / f".{target.name}{write_mod._TMP_TAG}{os.getpid()}-deadbeef.zarr"
    (stale / "X").mkdir(parents=True)
    write_mod.restore_interrupted(target)
    assert not stale.exists() and target.is_dir()


# --------------------------------------------------------------------------- kill -9 during .zarr saves
def _writer(path: str, marker: float):
    write_table(_table(n=60_000, marker=marker, n_vars=30), path, overwrite=True)
    os._exit(0)


@pytest.mark.slow
def test_kill_during_zarr_save_never_loses_the_previous_store(tmp_path):
    """A few trials here; ``scripts/kill_trials.py`` runs 20/20 for .h5ad, .zarr and between-renames."""
    path = tmp_path / "victim.zarr"
    write_table(_table(n=60_000, marker=0.0, n_vars=30), path)
    t0 = time.perf_counter()
    write_table(_table(n=60_000, marker=0.0, n_vars=30), path, overwrite=True)
    save_s = time.perf_counter() - t0
    ctx = mp.get_context("fork")
    rng = random.Random(7)
    current = 0.0
    for trial in range(4):
        new = float(trial + 1)
        proc = ctx.Process(target=_writer, args=(os.fspath(path), new))
        proc.start()
        time.sleep(rng.uniform(0.0, 1.3 * save_s + 0.05))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        back = read_table(path)
        got = float(back.X[0, 0])
        assert got in (current, new) and np.all(back.X[:, 0] == got) and back.n_obs == 60_000
        current = got
    write_mod.restore_interrupted(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
