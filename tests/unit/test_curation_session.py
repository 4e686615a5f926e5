"""The headless curation session (``editing.curation``): what the Curation dock does, without Qt.

Selection and edits with undo and the audit trail, saving that never touches the sample's own
files, the autosave state machine (one writer, newest snapshot queued, discard after a save)
and recovery (offer, decline, recover; another table or a corrupt file is refused by name).
"""

from __future__ import annotations

import os
import time

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from napari_carspatial.editing import Autosaver, CurationSession
from napari_carspatial.io.write import RECOVERY_SUFFIX, write_table
from napari_carspatial.model import Sample, SampleError, get_log

TYPES = ["Tumor", "CAR T", "Stroma"]


def _table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame({"cell_id": np.arange(1, n + 1),
                        "cell_type": pd.Categorical(rng.choice(TYPES, n), categories=TYPES)},
                       index=[f"c{i}" for i in range(n)])
    t = ad.AnnData(X=rng.random((n, 3), dtype=np.float32), obs=obs)
    t.obsm["spatial"] = rng.uniform(0, 100, (n, 2))   # (x, y) px
    t.uns["spatialdata_attrs"] = {"instance_key": "cell_id", "region_key": "region", "region": "r"}
    return t


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "recovery"


@pytest.fixture
def saved(tmp_path, cache):
    """A sample opened from a table file (its source)."""
    src = write_table(_table(), tmp_path / "source.h5ad")
    return Sample("S1", table=ad.read_h5ad(src), paths={"table": os.fspath(src)})


class Deferred:
    """A runner that holds writes until the test runs them (a worker that has not finished)."""

    def __init__(self):
        self.jobs = []

    def __call__(self, fn, on_done, on_error):
        self.jobs.append((fn, on_done, on_error))

    def finish(self):
        fn, on_done, on_error = self.jobs.pop(0)
        try:
            on_done(fn())
        except SampleError as err:
            on_error(err)


def test_selection_edits_undo_and_audit(saved):
    cs = CurationSession(saved, reviewer="Dr Ünal", autosave=False)
    seen = []
    cs.on_selection.append(seen.append)
    yx = cs.cell_yx()
    box = np.array([[0, 0], [0, 50], [50, 50], [50, 0]], float)            # (y, x) level-0 px
    inside = (yx[:, 0] < 50) & (yx[:, 1] < 50)
    tumor = saved.table.obs["cell_type"].astype(str).to_numpy() == "Tumor"
    assert cs.select_polygon(box, cell_type="Tumor") == int((inside & tumor).sum())
    assert seen[-1] == cs.n_selected
    cmd = cs.assign("Antigen-negative tumor", note="MSLN- by eye")
    cur = saved.table.obs["cell_type_curated"].astype(str).to_numpy()
    assert (cur[inside & tumor] == "Antigen-negative tumor").all()
    assert (saved.table.obs["cell_type"].astype(str).to_numpy()[inside & tumor] == "Tumor").all()   # original kept
    assert cs.changed_columns(cmd) == ("cell_type_curated", "reviewed")
    cs.undo()
    assert "Antigen-negative tumor" not in cs.categories
    cs.redo()
    assert (saved.table.obs["cell_type_curated"].astype(str).to_numpy()[inside & tumor] == "Antigen-negative tumor").all()
    cs.select_ids([3, 4])
    cs.exclude("fold")
    assert saved.table.obs.loc[["c2", "c3"], "excluded"].all()
    audit = cs.audit()
    assert list(audit["action"]) == ["assign", "undo", "redo", "exclude"]
    assert set(audit["reviewer"]) == {"Dr Ünal"}
    cs.reviewer = "Dr B"
    cs.select_ids([5])
    cs.confirm()
    assert get_log(saved.table)["reviewer"].iloc[-1] == "Dr B"


def test_select_ids_toggle_and_clear(saved):
    cs = CurationSession(saved, autosave=False)
    cs.select_ids([1, 2])
    cs.select_ids([2], add=True, toggle=True)        # shift-click on a selected cell: off again
    assert cs.n_selected == 1
    cs.clear_selection()
    assert cs.n_selected == 0
    assert cs.assign("CAR T") is None                # nothing selected: nothing done
    with pytest.raises(ValueError, match="200 cells"):
        cs.select(np.ones(5, bool))


def test_regions_and_geojson_round_trip(saved, tmp_path):
    cs = CurationSession(saved, autosave=False)
    cs.add_roi([[0, 0], [0, 40], [40, 40], [40, 0]], name=cs.next_roi_name("Tumor core"), cls="Tumor core")
    assert [r.name for r in saved.rois] == ["Tumor core 1"]
    assert cs.select_in_roi("Tumor core 1") == int(cs.roi_cells(saved.rois[0]).sum())
    out = cs.export_geojson(tmp_path / "rois.geojson")
    other = CurationSession(Sample("S2", table=_table()), autosave=False)
    cmd, n = other.import_geojson(out)
    assert n == 1
    assert other.curation.rois[0].name == "Tumor core 1"
    other.undo()
    assert other.curation.rois == []
    with pytest.raises(ValueError, match="3 vertices"):
        cs.add_roi([[0, 0], [1, 1]], name="x", cls="Other")


def test_save_never_writes_over_the_sources(saved, tmp_path, cache):
    cs = CurationSession(saved, autosave=False)
    src = saved.paths["table"]
    before = os.stat(src).st_mtime_ns
    cs.select_ids([1])
    cs.assign("CAR T")
    for overwrite in (False, True):
        with pytest.raises(SampleError, match="never overwritten") as e:
            cs.save(src, overwrite=overwrite)
        assert src in str(e.value)
    assert os.stat(src).st_mtime_ns == before
    out = cs.save(tmp_path / "curated.h5ad")
    back = ad.read_h5ad(out)
    assert back.obs["cell_type_curated"].iloc[0] == "CAR T"
    assert cs.autosaver.pending == 0


def test_autosave_policy_and_one_writer_at_a_time(saved, cache):
    runner = Deferred()
    cs = CurationSession(saved, autosave_edits=2, runner=runner)
    cs.select_ids([1])
    cs.assign("CAR T")
    assert runner.jobs == []                         # 1 edit: not due
    cs.assign("Stroma")
    assert len(runner.jobs) == 1                     # 2 edits: a write started
    assert cs.autosaver.busy
    cs.assign("Tumor")
    cs.autosaver.autosave_now()                      # while writing: queued, not a second writer
    assert len(runner.jobs) == 1
    runner.finish()                                  # the first write ends: the queued one starts
    assert len(runner.jobs) == 1
    first = cs.autosaver.last_path
    assert first.parent == cache
    runner.finish()
    assert not cs.autosaver.busy
    back = ad.read_h5ad(cs.autosaver.last_path)
    assert back.obs["cell_type_curated"].iloc[0] == "Tumor"   # the newest snapshot won
    assert "cell_type_curated" in saved.table.obs             # the live table was not written


def test_save_during_an_autosave_discards_the_recovery_file_after_it(saved, tmp_path, cache):
    runner = Deferred()
    cs = CurationSession(saved, runner=runner)
    cs.select_ids([1])
    cs.assign("CAR T")
    cs.autosaver.autosave_now()
    cs.save(tmp_path / "curated.h5ad")               # saved while the autosave is being written
    runner.finish()                                  # the write lands after the save ...
    assert not cs.autosaver.last_path.exists()       # ... and is deleted: it holds older work
    assert cs.autosaver.pending == 0


def test_autosave_disabled_only_counts(saved, cache):
    runner = Deferred()
    cs = CurationSession(saved, autosave=False, autosave_edits=1, runner=runner)
    cs.select_ids([1])
    cs.assign("CAR T")
    assert runner.jobs == []
    assert cs.autosaver.pending == 1
    assert not cs.autosaver.maybe_autosave()


def test_autosave_policy_by_time(saved, cache):
    now = [0.0]
    cs = CurationSession(saved, autosave_edits=100, autosave_seconds=60, clock=lambda: now[0])
    cs.select_ids([1])
    cs.assign("CAR T")
    assert not cs.autosaver.maybe_autosave()
    now[0] = 61.0
    assert cs.autosaver.maybe_autosave()             # a timer tick after a minute: written
    assert cs.autosaver.last_path.exists()


def _crash_and_reopen(saved, cs):
    """Autosave, 'crash' (the session is gone), reopen the source: a new session."""
    cs.autosaver.autosave_now()
    rec = cs.autosaver.last_path
    os.utime(rec, (time.time() + 5, time.time() + 5))   # newer than the source
    fresh = Sample("S1", table=ad.read_h5ad(saved.paths["table"]), paths=dict(saved.paths))
    return rec, CurationSession(fresh, autosave=False)


def test_recovery_offer_recover_and_not_offered_again(saved, cache):
    cs = CurationSession(saved)
    cs.select_ids([1, 2, 3])
    cs.assign("Doublet")
    rec, again = _crash_and_reopen(saved, cs)
    assert again.recovery.offer() == rec
    table = again.recovery.recover()
    assert again.table is table
    assert (table.obs["cell_type_curated"].astype(str).to_numpy()[:3] == "Doublet").all()
    assert again.curation.adata is table             # the curation restarted on it
    assert again.n_selected == 0
    assert list(again.audit()["action"]) == ["assign"]
    assert again.recovery.offer() is None            # seen: not offered twice


def test_recovery_decline_keeps_the_file(saved, cache):
    cs = CurationSession(saved)
    cs.select_ids([1])
    cs.assign("Doublet")
    rec, again = _crash_and_reopen(saved, cs)
    assert again.recovery.offer() == rec
    kept = again.recovery.decline()
    assert kept == rec.with_name(rec.name + ".declined")
    assert kept.is_file()
    assert not rec.exists()
    assert again.recovery.offer() is None
    assert "Doublet" not in set(again.table.obs["cell_type_curated"].astype(str))


def test_recovery_of_another_table_is_refused(saved, cache):
    cs = CurationSession(saved)
    cs.select_ids([1])
    cs.assign("Doublet")
    rec, again = _crash_and_reopen(saved, cs)
    other = _table(n=150, seed=3)
    write_table(other, rec, overwrite=True, record=False)
    os.utime(rec, (time.time() + 5, time.time() + 5))
    again.recovery.offer()
    with pytest.raises(SampleError, match="another table") as e:
        again.recovery.recover()
    assert str(rec) in str(e.value)
    assert again.table.n_obs == 200                  # the open table is unchanged
    assert rec.exists()                              # and the file kept


def test_corrupt_recovery_file_names_the_path(saved, cache):
    cs = CurationSession(saved)
    cs.select_ids([1])
    cs.assign("Doublet")
    rec, again = _crash_and_reopen(saved, cs)
    rec.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)   # an HDF5 signature and nothing else
    os.utime(rec, (time.time() + 5, time.time() + 5))
    assert again.recovery.offer() == rec
    with pytest.raises(SampleError) as e:
        again.recovery.recover()
    assert str(rec) in str(e.value)
    assert "cannot be read" in str(e.value)
    assert again.table.obs["cell_type_curated"].astype(str).iloc[0] != "Doublet"


def test_unsaved_data_recovery_is_keyed_by_name_and_fingerprint(cache):
    a = Sample("demo", table=_table(seed=1))
    cs = CurationSession(a)
    cs.select_ids([1])
    cs.assign("Doublet")
    cs.autosaver.autosave_now()
    rec = cs.autosaver.last_path
    assert rec.name.endswith(RECOVERY_SUFFIX)
    same = CurationSession(Sample("demo", table=_table(seed=1)), autosave=False)
    other = CurationSession(Sample("demo", table=_table(n=201, seed=1)), autosave=False)
    assert same.recovery.offer() == rec
    assert other.recovery.offer() is None            # same name, other cells: never offered


def test_blinding_hides_the_name_but_recovery_uses_the_real_one(saved, cache):
    saved.metadata.update({"timepoint": "post", "response": "CR", "patient": "P01"})
    cs = CurationSession(saved)
    key = cs.recovery.key()
    assert cs.set_blinded(True)
    assert saved.name == "Sample A"
    assert "timepoint" not in cs.public_metadata()
    assert cs.recovery.key() == key
    assert not cs.set_blinded(True)                  # already blinded: nothing changes
    cs.set_blinded(False)
    assert saved.name == "S1"


def test_autosaver_reports_failures(saved, cache, monkeypatch):
    import napari_carspatial.editing.autosave as mod

    failed = []
    cs = CurationSession(saved)
    cs.autosaver.on_failed.append(failed.append)

    def boom(self):
        raise SampleError("autosave failed (disk full).", path="/x")

    monkeypatch.setattr(mod.AutosaveJob, "run", boom)
    cs.autosaver.autosave_now()
    assert len(failed) == 1
    assert "disk full" in str(cs.autosaver.last_error)
    assert not cs.autosaver.busy
    assert isinstance(cs.autosaver, Autosaver)


def test_autosave_snapshot_equals_a_copy_and_later_edits_do_not_reach_it(saved, cache):
    """The snapshot (copied parts, the AnnData made where the write runs) writes the same file
    contents as ``AnnData.copy()`` would, and nothing done to the live table after it, in place
    or not, reaches it."""
    runner = Deferred()
    cs = CurationSession(saved, autosave_edits=1, runner=runner)
    t = saved.table
    t.layers["raw_counts"] = np.asarray(t.X).copy()
    t.obsp["adj"] = np.eye(t.n_obs, dtype=np.float32)[:, : t.n_obs]
    cs.select_ids([1, 2, 3])
    cs.assign("CAR T")                    # due: a snapshot is taken, its write held
    want = t.copy()
    # after the snapshot: edits in place and not (a segmentation re-measure, a centroid moved,
    # the type column and the audit trail by the next edit)
    np.asarray(t.X)[:5] = -1.0
    t.obsm["spatial"][:5] = -1.0
    t.layers["raw_counts"][:5] = -1.0
    t.obs.iloc[:5, t.obs.columns.get_loc("cell_id")] = -1
    cs.autosaver.enabled = False
    cs.assign("Stroma")
    runner.finish()
    back = ad.read_h5ad(cs.autosaver.last_path)
    np.testing.assert_array_equal(np.asarray(back.X), np.asarray(want.X))
    np.testing.assert_array_equal(back.obsm["spatial"], want.obsm["spatial"])
    np.testing.assert_array_equal(back.layers["raw_counts"], want.layers["raw_counts"])
    np.testing.assert_array_equal(np.asarray(back.obsp["adj"].todense() if hasattr(back.obsp["adj"], "todense")
                                             else back.obsp["adj"]), want.obsp["adj"])
    pd.testing.assert_frame_equal(back.obs, want.obs, check_categorical=False)
    assert list(back.obs_names) == list(want.obs_names) and list(back.var_names) == list(want.var_names)
    assert len(get_log(back)) == len(get_log(want))          # the second edit's audit row is not in it
    assert (back.obs.loc[back.obs["cell_id"].isin([1, 2, 3]), "cell_type_curated"] == "CAR T").all()
