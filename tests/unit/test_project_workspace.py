"""The review workspace of a viewer (``_napari/project.py``) and the disagreement layer
(``_napari/disagreement.py``) on napari's Qt-free ViewerModel: everything the Project dock does,
headless. A four-sample demo trial (with images) read by alice and bob, adjudicated by carol."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from napari.components import ViewerModel  # noqa: E402

from napari_carspatial._napari import (  # noqa: E402
    ADJUDICATION,
    COMPARISON,
    READ,
    camera,
    disagreement_calls,
    disagreement_key,
    session_for,
    workspace_for,
)
from napari_carspatial.model import SampleError, edit_log  # noqa: E402
from napari_carspatial.review import LockError, break_lock, init_project, load_project, read_lock  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from review_trial import simulate_read  # noqa: E402

SAMPLES = ["P01-pre", "P01-post", "P02-pre", "P02-post"]
CLINICAL = ("patient", "timepoint", "response", "P01", "P02", "pre", "post")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from napari_carspatial.cohort import write_demo_cohort

    folder = tmp_path_factory.mktemp("cohort")
    return write_demo_cohort(folder, n_patients=2, size=160, image=True)["manifest"]


@pytest.fixture
def project(tmp_path, cohort, monkeypatch):
    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    proj = init_project(tmp_path / "proj", cohort, reviewers=["alice", "bob", "carol"], due="2099-12-31")
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    return proj


def _workspace(project, reviewer):
    v = ViewerModel()
    ws = workspace_for(v)
    ws.open_project(project.folder)
    session_for(v).set_reviewer(reviewer)
    return v, ws


def _locks(folder) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*.lock"))


def test_assignments_are_blinded_and_next_is_in_progress_first(project):
    v, ws = _workspace(project, "alice")
    df = ws.assignments()
    assert list(df["role"]) == ["read 1"] * 4 and set(df["status"]) == {"not_started"}
    assert all(lab.startswith("RV-") for lab in df["label"])
    assert not any(s in " ".join(df.astype(str).to_numpy().ravel()) for s in SAMPLES)
    # in progress first, then earliest due, then code order
    project.entry("P02-post").due = None
    with project.updating():
        project.entry("P01-post").due = "2099-01-01"
    assert ws.next_label() == project.label("P01-post")
    with project.start_read("P02-pre", "alice") as rd:
        rd.save()
    assert ws.next_label() == project.label("P02-pre")
    # carol: adjudications wait for the reads
    vc, wc = _workspace(project, "carol")   # the viewer held: the workspace lives as long as its viewer
    a = wc.assignments()
    assert set(a["role"]) == {"adjudication"} and set(a["status"]) == {"waiting"} and not a["ready"].any()
    assert wc.next_label() is None
    with pytest.raises(SampleError, match="waits until both reads are done"):
        wc.prepare(a["label"].iloc[0])


def test_a_read_saves_its_working_copy_under_its_lock_and_closing_releases_it(project):
    v, ws = _workspace(project, "alice")
    label = ws.next_label()
    item = ws.open(label)
    assert item.kind == READ and item.role == "read 1" and item.writable
    session = session_for(v)
    # blinded everywhere: sample, layers, title, metadata, table
    assert item.sample.name == label and item.sample.metadata == {}
    names = [lyr.name for lyr in v.layers] + [v.title]
    assert all(not any(s in n for s in SAMPLES) for n in names), names
    assert any(label in n for n in names)
    assert not {"patient", "timepoint", "response"} & set(item.sample.table.obs)
    # Save writes the working copy (never the source), the lock is alice's
    core = ws.core(label)
    assert core.save_target.label == "Save read 1" and core.reviewer == "alice"
    rows = np.arange(12)
    core.select(rows)
    core.assign("Macrophage", note="CD68+")
    path = ws.save(label)
    assert path == project.read_path(label, "alice") and path.is_file()
    wc = ad.read_h5ad(path)
    assert (wc.obs["cell_type_curated"].astype(str).to_numpy()[rows] == "Macrophage").all()
    log = edit_log.get_log(wc)
    assert list(log["reviewer"]) == ["alice"] and list(log["action"]) == ["assign"]
    assert read_lock(path).owner == "alice"
    # the audit name stays the reader's whatever the Curation dock sets before an edit
    core.reviewer = "mallory"
    assert core.reviewer == "alice"
    # removing the sample's layers saves and releases the lock; the read stays in progress
    core.select(np.arange(12, 20))
    core.exclude("fold")
    for lyr in list(session.layers_of(item.sid)):
        v.layers.remove(lyr)
    assert not ws.items and read_lock(path) is None and not _locks(project.folder)
    proj = load_project(project.folder)
    assert proj.entry(label).read_of("alice").status == "in_progress"
    assert ad.read_h5ad(path).obs["excluded"].to_numpy()[12:20].all()
    assert v.title == "napari"
    # another reviewer in this viewer: alice's slide closes first (saved, lock released)
    ws.open(label)
    core = ws.core(label)
    core.select(np.arange(20, 25))
    core.confirm()
    session.set_reviewer("bob")
    assert not ws.items and read_lock(path) is None
    assert ad.read_h5ad(path).obs["reviewed"].to_numpy()[20:25].all()


def test_a_second_writer_is_refused_with_the_holder(project):
    v1, ws1 = _workspace(project, "alice")
    label = ws1.next_label()
    ws1.open(label)
    v2, ws2 = _workspace(project, "alice")   # the same reviewer in a second window (its viewer held)
    with pytest.raises(LockError, match=r"locked by alice on host .* \(pid \d+\).*a second writer is refused"):
        ws2.open(label)
    assert not ws2.items
    ws1.close_all()
    assert not _locks(project.folder)


def test_recovery_is_keyed_by_the_read_and_offered_only_while_the_lock_is_held(project, tmp_path):
    from napari_carspatial.io.write import recovery_path

    v, ws = _workspace(project, "alice")
    label = ws.next_label()
    item = ws.open(label)
    core = ws.core(label)
    path = project.read_path(label, "alice")
    assert core.recovery.key()[0] == str(path)
    core.select(np.arange(5))
    core.assign("CAR T")
    core.autosaver.autosave_now()                    # a crash now would leave this file
    assert recovery_path(str(path)).is_file()
    assert core.recovery.offer() == recovery_path(str(path))
    core.recovery.offered = None
    broken = break_lock(path, by="admin")           # someone broke the lock
    assert broken.owner == "alice" and not core.writable
    assert core.recovery.offer() is None
    with pytest.raises(LockError, match="no longer holds the lock"):
        ws.save(label)
    ws.items.pop(item.sid)   # do not save on the way out: the lock is gone
    # saving through the target discards the recovery file
    v2, ws2 = _workspace(project, "bob")   # the viewer held: the workspace lives as long as its viewer
    lab2 = ws2.next_label()
    ws2.open(lab2)
    c2 = ws2.core(lab2)
    c2.select(np.arange(3))
    c2.assign("Tumor")
    c2.autosaver.autosave_now()
    rec = recovery_path(str(project.read_path(lab2, "bob")))
    assert rec.is_file()
    ws2.save(lab2)
    assert not rec.exists()
    ws2.close_all()


def test_done_read_is_read_only_until_reopened_and_the_other_read_stays_hidden(project):
    v, ws = _workspace(project, "alice")
    label = project.label("P01-pre")
    ws.open(label)
    core = ws.core(label)
    core.select(np.arange(4))
    core.assign("Macrophage")
    ws.finish(label)
    assert load_project(project.folder).entry(label).read_of("alice").status == "done"
    assert not _locks(project.folder) and core.read_only
    with pytest.raises(SampleError, match="read-only"):
        core.assign("Tumor")
    assert core.undo() is None and not core.can_undo
    assert core.recovery.offer() is None
    ws.close(label)
    # opening it again: alice's own read, read-only (bob's read is not done: never shown)
    item = ws.open(label)
    assert item.kind == READ and item.read is None and "reopen" in item.read_only
    assert not any("_read_" in c for c in item.sample.table.obs.columns)
    item = ws.reopen(label)
    assert item.writable and ws.core(label).save_target is not None
    ws.finish(label)
    # bob sees only his own read; nothing of alice's
    vb, wb = _workspace(project, "bob")   # the viewer held: the workspace lives as long as its viewer
    ib = wb.open(label)
    assert ib.kind == READ and ib.writable
    obs = ib.sample.table.obs
    assert (obs["cell_type_curated"].astype(str).to_numpy() == obs["cell_type"].astype(str).to_numpy()).all()
    assert not any("alice" in c for c in ib.sample.table.obs.columns)
    wb.close_all()
    ws.close_all()


def _both_reads(project, sample):
    i = SAMPLES.index(sample)
    for r in ("alice", "bob"):
        with project.start_read(sample, r) as rd:
            simulate_read(rd, i)


def test_adjudication_through_the_disagreement_layer(project):
    sample = "P02-pre"
    _both_reads(project, sample)
    label = project.label(sample)
    pair = project.reads(sample)
    a = pair.table.obs["cell_type_read_alice"].astype(str).to_numpy()
    b = pair.table.obs["cell_type_read_bob"].astype(str).to_numpy()
    expected = Counter(f"{x} → {y}" for x, y in zip(a, b, strict=True) if x != y)

    v, ws = _workspace(project, "carol")
    assert ws.next_label() == label
    item = ws.open(label)
    assert item.kind == ADJUDICATION and item.writable
    dv = item.disagreements
    key = disagreement_key(("alice", "bob"))
    col = item.sample.table.obs[key]
    assert Counter(col.dropna().astype(str)) == expected            # hand count of the pairs
    assert dv.n_disagreements == sum(expected.values()) == dv.n_undecided()
    coloring = session_for(v).coloring(item.sid)
    assert coloring.key == key and coloring.categories == list(col.cat.categories)
    assert coloring.counts().tolist() == [expected[c] for c in coloring.categories]
    assert dv.pairs()["n"].tolist() == [expected[c] for c in coloring.categories]
    # the curation of the shown table is read-only; the adjudication table is untouched by it
    with pytest.raises(SampleError, match="read-only"):
        ws.core(label).assign("Tumor")
    assert "cell_type_curated" not in item.adjudication.table.obs
    # stepping: every disagreement once, in table order, wrapping; the camera on each cell
    seen = [dv.step(1).cell_id for _ in range(dv.n_disagreements)]
    assert seen == sorted(seen, key=lambda c: list(dv.ids).index(c)) and len(set(seen)) == len(seen)
    assert dv.step(1).cell_id == seen[0] and dv.step(-1).cell_id == seen[-1]
    st = dv.go(0)
    labels = session_for(v).labels_layer(item.sid)
    world = labels.data_to_world((st.y, st.x))
    assert np.allclose(camera(v).center[-2:], world[-2:])
    assert st.calls == {"alice": a[st.row], "bob": b[st.row]} and st.decision is None
    assert any(lyr.name == "pinned cell" for lyr in v.layers)
    # decide one cell (alice's call), with a note: one audit row with both calls
    assert dv.accept("alice", note="CD68 bright") == 1
    assert dv.current().decision == a[st.row]
    log = edit_log.get_log(item.adjudication.table)
    row = log.iloc[-1]
    assert row["action"] == "adjudicate" and row["reviewer"] == "carol" and row["note"] == "CD68 bright"
    assert str(st.cell_id) in row["cell_ids"] and "alice" in row["old"] and "bob" in row["old"]
    # bulk: one pair of calls, then everything left, undecided only
    first = dv.pairs().iloc[0]
    n = dv.set_filter(pair=first["pair"], undecided_only=True)
    assert n == first["n_undecided"]
    assert dv.decide_shown("Macrophage", note="pair decided") == n
    dv.set_filter(undecided_only=True)
    with pytest.raises(SampleError, match="not decided yet"):
        ws.finish(label)
    dv.accept_shown("bob")
    assert dv.n_undecided() == 0 and len(dv.rows) == 0 and dv.step(1) is None
    for cls in dv.region_disagreements()["class"]:
        dv.decide_region(cls, "union", note="both outlines")
    ws.finish(label)
    assert load_project(project.folder).entry(label).adjudication.status == "adjudicated"
    assert not _locks(project.folder)
    saved = ad.read_h5ad(project.adjudication_path(label))
    akey = "cell_type_adjudicated"
    assert saved.obs[akey].notna().all()
    dec = saved.obs[akey].astype(str).to_numpy()
    assert (dec[a == b] == a[a == b]).all()
    assert key not in saved.obs and "cell_type_curated" not in saved.obs   # display columns stay in the viewer
    ws.close_all()


def test_both_done_reader_sees_the_comparison_read_only(project):
    sample = "P01-post"
    _both_reads(project, sample)
    v, ws = _workspace(project, "bob")
    label = project.label(sample)
    item = ws.open(label)
    assert item.kind == COMPARISON and not item.writable and "frozen" in item.read_only
    dv = item.disagreements
    assert not dv.can_decide and dv.n_disagreements > 0
    st = dv.step(1)
    assert set(st.calls) == {"alice", "bob"}
    with pytest.raises(SampleError, match="adjudicat"):
        dv.decide("Tumor")
    assert not _locks(project.folder)
    ws.close_all()


def test_disagreement_calls_by_hand():
    t = ad.AnnData(obs=pd.DataFrame({"a": pd.Categorical(["T", "T", "M", None, "B", "M"]),
                                     "b": pd.Categorical(["T", "M", "T", None, "(excluded)", "T"])}))
    col = disagreement_calls(t, "a", "b")
    assert [None if pd.isna(x) else x for x in col] == [None, "T → M", "M → T", None, "B → (excluded)", "M → T"]
    assert list(col.categories) == ["M → T", "B → (excluded)", "T → M"]   # most first, then by name


def test_real_imc_read_is_blinded_in_the_viewer(tmp_path, cytomapper_dir, monkeypatch):
    """Three real IMC images (cytomapper): a read opened in a viewer shows the code, the real
    channel names and the real cell-type column (CellType), nothing that names the image."""
    from napari_carspatial.cohort import write_manifest

    monkeypatch.setenv("CARSPATIAL_CACHE_DIR", str(tmp_path / "cache"))
    rows = [{"sample": n, "patient": f"donor{i}", "timepoint": "pre",
             "image": str(cytomapper_dir / "images" / f"{n}_imc.tiff"),
             "mask": str(cytomapper_dir / "masks" / f"{n}_mask.tiff"),
             "table": str(cytomapper_dir / "cells.csv")} for i, n in enumerate(("E34", "G01", "J02"))]
    man = write_manifest(rows, tmp_path / "manifest.csv")
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob", "carol"])
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    v, ws = _workspace(proj, "alice")
    label = proj.label("G01")
    item = ws.open(label)
    t = item.sample.table
    assert item.sample.channel_names == ["H3", "CD99", "PIN", "CD8a", "CDH"]
    assert "CellType" in t.obs and "CellType_curated" in t.obs and t.n_obs == 122
    assert not {"ImageName", "MaskName", "ImageNb", "cell_id"} & set(t.obs)
    names = [lyr.name for lyr in v.layers] + [v.title, item.sample.name, *map(str, t.obs_names[:50])]
    for leak in ("E34", "G01", "J02", "donor", "_imc", "cells.csv"):
        assert not any(leak in n for n in names), leak
    core = ws.core(label)
    rows_ = np.flatnonzero(t.obs["CellType"].astype(str).to_numpy() == "celltype_C")[:5]
    core.select(rows_)
    core.assign("celltype_A", note="real data")
    ws.finish(label)
    wc = ad.read_h5ad(proj.read_path(label, "alice"))
    assert (wc.obs["CellType_curated"].astype(str).to_numpy()[rows_] == "celltype_A").all()
    assert not _locks(proj.folder)
    ws.close_all()


def test_disagreement_calls_equal_the_plain_loop():
    """The vectorised pairs equal a plain per-cell loop (missing calls, categories in another
    order, a class only one reader uses)."""
    from napari_carspatial._napari import pair_label

    rng = np.random.default_rng(3)
    n = 20_000
    cats = ["Tumor", "Macrophage", "CAR T", "Stroma", "B cell"]
    a = rng.choice(np.array([*cats, None], dtype=object), n)
    b = a.copy()
    m = rng.random(n) < 0.15
    b[m] = rng.choice(np.array([*cats, "(excluded)", "MDSC", None], dtype=object), int(m.sum()))
    t = ad.AnnData(obs=pd.DataFrame({"a": pd.Categorical(a), "b": pd.Categorical(b, categories=["MDSC", "(excluded)",
                                                                                              *cats[::-1]])},
                                    index=[str(i) for i in range(n)]))
    got = [None if pd.isna(x) else x for x in disagreement_calls(t, "a", "b")]
    ref = [pair_label(x, y) if x != y else None for x, y in zip(a, b, strict=True)]
    assert got == ref
    t.obs["a_text"] = pd.Series(a, index=t.obs_names, dtype=object)   # a text column, not categorical
    assert [None if pd.isna(x) else x for x in disagreement_calls(t, "a_text", "b")] == ref


def test_a_cell_cut_by_the_border_is_ringed_where_it_is_visible():
    """cytomapper's border cells have table centroids off the crop (measured on the whole image):
    stepping to one goes to its visible mask pixels, never off the image."""
    from napari.layers import Labels

    from napari_carspatial._napari.disagreement import visible_centroid

    mask = np.zeros((40, 50), np.uint16)
    mask[0:4, 10:16] = 7          # cut by the top border: rows 0-3 visible
    mask[20:26, 30:36] = 8
    layer = Labels(mask)
    x, y = visible_centroid(layer, 7, (12.5, -3.0), area_px=60)
    assert (x, y) == (12.5, 1.5)
    assert visible_centroid(layer, 8, (32.5, 22.5), area_px=36) == (32.5, 22.5)
    x, y = visible_centroid(layer, 99, (70.0, -5.0), area_px=36)   # no pixels near: clamped onto the image
    assert (x, y) == (49.0, 0.0)
