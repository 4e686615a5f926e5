"""Safe saving: atomic writes (kill -9 during a save), no silent overwrite, read-only folders,
unicode paths, provenance checksums, autosave and recovery."""

from __future__ import annotations

import hashlib
import logging
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

from napari_carspatial.io import (
    AutosavePolicy,
    autosave,
    discard_recovery,
    find_recovery,
    proposed_name,
    read_table,
    recover,
    write_table,
)
from napari_carspatial.io import write as write_mod
from napari_carspatial.model import SampleError, record

log = logging.getLogger(__name__)


def _table(n=300, marker=0.0, n_vars=4):
    rng = np.random.default_rng(0)
    X = rng.random((n, n_vars), dtype=np.float32)
    X[:, 0] = marker
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1), "cell_type": pd.Categorical(rng.choice(["A", "B"], n)),
                        "version": np.full(n, marker)}, index=[str(i) for i in range(n)])
    t = ad.AnnData(X=X, obs=obs)
    t.obsm["spatial"] = rng.random((n, 2)) * 100
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region"}
    return t


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_round_trip_refuses_overwrite_and_unicode_paths(tmp_path, suffix):
    folder = tmp_path / "Patient ü 01 – biopsie"
    folder.mkdir()
    t = _table()
    record(t, "assign", cell_ids=[1, 2], column="cell_type", old="A", new="B", reviewer="Zoë")
    p = write_table(t, folder / f"table curated{suffix}")
    back = read_table(p)
    np.testing.assert_array_equal(back.X, t.X)
    assert back.uns["carspatial_edit_log"]["reviewer"].tolist() == ["Zoë"]
    with pytest.raises(SampleError, match="already exists"):
        write_table(t, p)
    t.obs["version"] = 2.0
    write_table(t, p, overwrite=True)
    assert (read_table(p).obs["version"] == 2.0).all()
    assert sorted(x.name for x in folder.iterdir()) == [p.name]  # no temporary files left


def test_bad_suffix_and_missing_folder(tmp_path):
    with pytest.raises(SampleError, match=".csv"):
        write_table(_table(), tmp_path / "t.csv")
    with pytest.raises(SampleError, match="does not exist"):
        write_table(_table(), tmp_path / "nope" / "t.h5ad")


def test_read_only_folder_clear_error_and_data_kept(tmp_path, monkeypatch):
    ro = tmp_path / "read only"
    ro.mkdir()
    t = _table()
    before = t.copy()
    os.chmod(ro, 0o555)
    try:
        if os.geteuid() == 0:  # root ignores permissions: simulate what the OS says to users
            real_open = open

            def deny(file, *a, **k):
                if Path(file).parent == ro:
                    raise PermissionError(13, "Permission denied", os.fspath(file))
                return real_open(file, *a, **k)

            monkeypatch.setattr("builtins.open", deny)
        with pytest.raises(SampleError) as err:
            write_table(t, ro / "t.h5ad")
    finally:
        monkeypatch.undo()
        os.chmod(ro, 0o755)
    msg = str(err.value)
    assert "read only" in msg and "cannot write" in msg and "Save as" in msg
    np.testing.assert_array_equal(t.X, before.X)  # the work is still in memory
    assert list(ro.iterdir()) == []


def test_provenance_checksums(tmp_path):
    img = tmp_path / "img.tif"
    img.write_bytes(os.urandom(3 * 2**20 + 17))
    mask = tmp_path / "mask.tif"
    mask.write_bytes(b"mask")
    t = _table()
    p = write_table(t, tmp_path / "out.h5ad", paths={"image": img, "mask": mask})
    prov = read_table(p).uns["carspatial"]["provenance"]
    assert prov["image"]["sha256"] == hashlib.sha256(img.read_bytes()).hexdigest()
    assert prov["mask"]["sha256"] == hashlib.sha256(b"mask").hexdigest()
    assert prov["image"]["path"] == os.fspath(img.resolve()) and int(prov["image"]["size"]) == img.stat().st_size


def test_proposed_name_never_the_source(tmp_path):
    src = tmp_path / "s.h5ad"
    src.write_bytes(b"x")
    assert proposed_name(src).name == "s_curated.h5ad"
    (tmp_path / "s_curated.h5ad").write_bytes(b"x")
    assert proposed_name(src).name == "s_curated_2.h5ad"


def test_autosave_find_recover_discard(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", os.fspath(tmp_path / "cache"))
    src = tmp_path / "data" / "table.h5ad"
    src.parent.mkdir()
    t = _table()
    write_table(t, src)
    assert find_recovery(src) is None
    t.obs["version"] = 7.0
    time.sleep(0.01)
    rp = autosave(t, src)
    # only in the cache folder, never beside the data
    assert rp.parent == tmp_path / "cache" / "recovery" and rp.name.startswith("table.h5ad-")
    assert sorted(p.name for p in src.parent.iterdir()) == ["table.h5ad"]
    os.utime(rp, (time.time() + 5, time.time() + 5))
    assert find_recovery(src) == rp
    assert (recover(src).obs["version"] == 7.0).all()
    discard_recovery(src)
    assert find_recovery(src) is None
    # without CARSPATIAL_CACHE_DIR: $XDG_CACHE_HOME/napari-carspatial/recovery
    monkeypatch.delenv("CARSPATIAL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", os.fspath(tmp_path / "xdg"))
    assert autosave(t, src).parent == tmp_path / "xdg" / "napari-carspatial" / "recovery"


def test_unsaved_recovery_is_keyed_by_the_table_fingerprint(tmp_path, monkeypatch):
    """Data never saved: a recovery file is only found for the same table (cells, ids, centroids)."""
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", os.fspath(tmp_path / "cache"))
    t = _table()
    fp = write_mod.table_fingerprint(t)
    assert fp.startswith("300-")
    rp = autosave(t, None, name="DEMO-001_post")
    assert find_recovery(None, name="DEMO-001_post", fingerprint=fp) == rp
    other = _table(n=301)
    assert find_recovery(None, name="DEMO-001_post", fingerprint=write_mod.table_fingerprint(other)) is None
    moved = _table()
    moved.obsm["spatial"] = moved.obsm["spatial"] + 1.0   # same ids, other cells
    assert write_mod.table_fingerprint(moved) != fp
    t.obs["cell_type_curated"] = "A"                      # curation does not change it
    assert write_mod.table_fingerprint(t) == fp


def test_declined_recovery_is_kept_not_deleted(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", os.fspath(tmp_path / "cache"))
    t = _table()
    rp = autosave(t, None, name="s", fingerprint="x")
    out = write_mod.decline_recovery(rp)
    assert out == rp.with_name(rp.name + ".declined") and out.is_file() and not rp.exists()
    assert find_recovery(None, name="s", fingerprint="x") is None
    assert ad.read_h5ad(out).n_obs == t.n_obs   # the work is still there
    rp = autosave(t, None, name="s", fingerprint="x")
    assert write_mod.decline_recovery(rp).name.endswith(".declined-2")


def test_recovery_write_does_not_touch_the_table(tmp_path, monkeypatch):
    """write_table(record=False) and autosave leave uns as it was (no "saved", no provenance)."""
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", os.fspath(tmp_path / "cache"))
    src = tmp_path / "table.h5ad"
    t = _table()
    write_table(t, src)
    saved = dict(t.uns["carspatial"]["saved"])
    before = {k: (dict(v) if isinstance(v, dict) else v) for k, v in t.uns["carspatial"].items()}
    rp = autosave(t, src)
    assert dict(t.uns["carspatial"]["saved"]) == saved and t.uns["carspatial"].keys() == before.keys()
    out = write_table(t, tmp_path / "plain.h5ad", record=False, paths={"table": src})
    assert "provenance" not in t.uns["carspatial"] and t.uns["carspatial"]["saved"] == saved
    assert ad.read_h5ad(out).uns["carspatial"]["saved"]["path"] == os.fspath(src)
    assert ad.read_h5ad(rp).uns["carspatial"]["saved"]["path"] == os.fspath(src)
    fresh = _table()
    write_table(fresh, tmp_path / "fresh.h5ad", record=False)
    assert "carspatial" not in fresh.uns


def test_autosave_policy():
    now = [0.0]
    pol = AutosavePolicy(every_edits=3, every_seconds=60, clock=lambda: now[0])
    assert not pol.note_edit() and not pol.note_edit() and pol.note_edit()
    pol.saved()
    assert not pol.note_edit()
    now[0] = 61
    assert pol.due()


def _writer(path: str, marker: float, n: int, n_vars: int):  # runs in the forked child
    t = _table(n=n, marker=marker, n_vars=n_vars)
    write_table(t, path, overwrite=True)
    os._exit(0)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5ad"])
def test_kill_during_save_never_loses_the_previous_file(tmp_path, suffix):
    """SIGKILL the writer at random moments: the file always loads and is the old or the new version."""
    n, n_vars = 120_000, 100  # ~48 MB of X: a save takes a few tenths of a second
    path = tmp_path / f"victim{suffix}"
    write_table(_table(n=n, marker=0.0, n_vars=n_vars), path)
    t0 = time.perf_counter()
    write_table(_table(n=n, marker=0.0, n_vars=n_vars), path, overwrite=True)
    save_s = time.perf_counter() - t0
    ctx = mp.get_context("fork")
    rng = random.Random(1234)
    current, outcomes = 0.0, []
    for trial in range(20):
        new = float(trial + 1)
        proc = ctx.Process(target=_writer, args=(os.fspath(path), new, n, n_vars))
        proc.start()
        time.sleep(rng.uniform(0.0, 1.3 * save_s + 0.1))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        back = read_table(path)  # always loads
        got = float(back.X[0, 0])
        assert got in (current, new), f"trial {trial}: file holds version {got}, expected {current} or {new}"
        assert back.n_obs == n and np.all(back.X[:, 0] == got) and np.all(back.obs["version"] == got)
        outcomes.append("new" if got == new else "old")
        current = got
        write_mod.restore_interrupted(path)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    write_table(_table(n=10), path, overwrite=True)  # a later save cleans up after killed writers
    assert [p.name for p in tmp_path.iterdir()] == [path.name], leftovers
    log.warning("kill test: save %.2f s; 20/20 loadable; %d killed before rename, %d completed",
                save_s, outcomes.count("old"), outcomes.count("new"))
