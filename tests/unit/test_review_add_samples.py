"""``carspatial project add-samples``: samples appended to the cohort manifest after the project was
made are added with new codes and assigned like the others (same readers, balanced load, the
project's adjudicator); nothing of the samples already there changes; and the project option
``hide_original_calls`` (the reads start without the table's calls)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from review_trial import make_cohort

from napari_carspatial.cli import main
from napari_carspatial.model import SampleError
from napari_carspatial.review import init_project, load_project


@pytest.fixture(scope="module")
def cohort6(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort6"), n_patients=3, size=120)


def _manifest_with(cohort6, tmp_path, n: int):
    """The six-sample manifest cut to its first ``n`` rows (absolute paths), rewritten in place."""
    full = pd.read_csv(cohort6)
    for c in ("image", "mask", "table", "regions"):
        if c in full:
            full[c] = [str((cohort6.parent / v).resolve()) if isinstance(v, str) and v else v for v in full[c]]
    out = tmp_path / "manifest.csv"
    full.iloc[:n].to_csv(out, index=False)
    return out, list(full["sample"])


def test_add_samples_assigns_like_the_others(tmp_path, cohort6, capsys):
    man, samples = _manifest_with(cohort6, tmp_path, 3)
    pdir = tmp_path / "proj"
    proj = init_project(pdir, man, reviewers=["alice", "bob", "dan", "carol"], due="2099-01-31")
    proj.assign_balanced(["alice", "bob", "dan"], adjudicator="carol")
    before = {s: (e.code, e.readers, e.adjudication.reviewer) for s, e in load_project(pdir).samples.items()}
    with proj.start_read(samples[0], before[samples[0]][1][0]) as rd:   # work has started on one
        rd.save()

    assert main(["project", "add-samples", str(pdir)]) == 0   # nothing new yet
    assert "no new samples" in capsys.readouterr().out

    # three samples appended to the manifest later
    _manifest_with(cohort6, tmp_path, 6)
    assert main(["project", "add-samples", str(pdir)]) == 0
    out = capsys.readouterr().out
    proj = load_project(pdir)
    new = samples[3:]
    assert list(proj.samples) == samples                          # appended, manifest order
    assert "3 sample(s) added" in out
    assert all(proj.samples[s].code in out for s in new) and not any(s in out for s in samples)   # blinded
    # the samples already there are unchanged (codes, readers, the started read)
    for s, (code, readers, adj) in before.items():
        e = proj.samples[s]
        assert (e.code, e.readers, e.adjudication.reviewer) == (code, readers, adj)
    assert proj.samples[samples[0]].reads[0].status == "in_progress"
    # new codes: unique, the project's salt; same readers, balanced load, the project's adjudicator
    codes = [e.code for e in proj.samples.values()]
    assert len(set(codes)) == 6 and all(c.startswith("RV-") for c in codes)
    from napari_carspatial.review.entries import sample_code

    assert all(proj.samples[s].code == sample_code(s, proj.code_salt) for s in new)
    reads = Counter(r for e in proj.samples.values() for r in e.readers)
    firsts = Counter(e.readers[0] for e in proj.samples.values())
    assert set(reads) == {"alice", "bob", "dan"} and set(reads.values()) == {4}     # 12 reads over 3 readers
    assert set(firsts.values()) == {2}
    assert all(proj.samples[s].adjudication.reviewer == "carol" and len(set(proj.samples[s].readers)) == 2
               for s in new)
    assert all(proj.samples[s].due is None and proj.due_of(s) == "2099-01-31" for s in new)
    assert proj.manifest_sha256 and load_project(pdir).manifest is not None
    # a new sample is read like any other
    with proj.start_read(new[0], proj.samples[new[0]].readers[0]) as rd:
        assert rd.table.n_obs > 0
        rd.save()
    # again: nothing to add; a given sample already there is refused with one line
    assert main(["project", "add-samples", str(pdir)]) == 0
    assert "no new samples" in capsys.readouterr().out
    with pytest.raises(SampleError, match=r"in the project already: " + samples[4]):
        proj.add_samples(samples=[samples[4]])


def test_add_samples_with_given_readers_and_unassigned_projects(tmp_path, cohort6):
    man, samples = _manifest_with(cohort6, tmp_path, 4)
    proj = init_project(tmp_path / "p", man, reviewers=["alice", "bob", "carol"])
    _manifest_with(cohort6, tmp_path, 5)
    res = proj.add_samples()                        # nothing assigned yet: the new one waits for `assign`
    assert list(res.added) == [samples[4]] and res.assigned == {}
    assert load_project(proj.folder).samples[samples[4]].reads == []
    _manifest_with(cohort6, tmp_path, 6)
    with pytest.raises(SampleError, match="reviewer 'zoe' is not in the project"):
        proj.add_samples(readers=["alice", "zoe"])
    with pytest.raises(SampleError, match="cannot also be a reader"):
        proj.add_samples(readers=["alice", "bob"], adjudicator="bob")
    res = proj.add_samples(readers=["alice", "bob"], adjudicator="carol", due="2099-02-01")
    e = load_project(proj.folder).samples[samples[5]]
    assert res.assigned == {samples[5]: ("alice", "bob", "carol")}
    assert e.readers == ["alice", "bob"] and e.adjudication.reviewer == "carol" and e.due == "2099-02-01"
    # a sample that left the manifest is reported and kept
    _manifest_with(cohort6, tmp_path, 2)
    res = proj.add_samples()
    assert res.added == {} and res.missing == samples[2:] and len(load_project(proj.folder).samples) == 6


def test_hidden_original_calls_start_every_read_blank(tmp_path, cohort6):
    man, samples = _manifest_with(cohort6, tmp_path, 2)
    assert main(["project", "init", str(tmp_path / "h"), "--manifest", str(man), "--reviewer", "alice",
                 "--reviewer", "bob", "--hide-original-calls"]) == 0
    proj = load_project(tmp_path / "h")
    assert proj.hide_original_calls and proj.to_dict()["hide_original_calls"] is True
    proj.assign(None, readers=("alice", "bob"))
    src = pd.read_csv(cohort6).iloc[0]
    import anndata as ad

    source = ad.read_h5ad(cohort6.parent / src["table"])
    key = "cell_type"
    with proj.start_read(samples[0], "alice") as rd:
        obs = rd.table.obs
        assert obs[key].isna().all()                                    # no original call visible
        assert set(obs[key].cat.categories) == set(source.obs[key].cat.categories)   # the classes offered
        assert rd.curation.type_key == key
        rd.curation.assign(np.arange(5), "Macrophage")
        rd.save()
    wc = ad.read_h5ad(proj.read_path(samples[0], "alice"))
    assert wc.obs[key].isna().all() and (wc.obs[f"{key}_curated"].astype(str).to_numpy()[:5] == "Macrophage").all()
    assert wc.obs[f"{key}_curated"].iloc[5:].isna().all()
    # the source keeps its calls; a project without the option shows them
    assert ad.read_h5ad(cohort6.parent / src["table"]).obs[key].notna().all()
    plain = init_project(tmp_path / "plain", man, reviewers=["alice", "bob"])
    plain.assign(None, readers=("alice", "bob"))
    with plain.start_read(samples[0], "alice") as rd:
        assert (rd.table.obs[key].astype(str).to_numpy() == source.obs[key].astype(str).to_numpy()).all()


def test_hidden_calls_on_real_imc_drop_every_relabelling_of_them(tmp_path, cytomapper_dir):
    """cytomapper's table has CellType and CellType_original_meaning (the same calls in words):
    a hidden-calls read shows neither; the cells, ids and markers stay."""
    from napari_carspatial.cohort import write_manifest

    rows = [{"sample": n, "patient": f"donor{i}", "timepoint": "pre", "image": str(cytomapper_dir / "images" / f"{n}_imc.tiff"),
             "mask": str(cytomapper_dir / "masks" / f"{n}_mask.tiff"), "table": str(cytomapper_dir / "cells.csv")}
            for i, n in enumerate(("E34", "G01"))]
    man = write_manifest(rows, tmp_path / "manifest.csv")
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob"], hide_original_calls=True)
    proj.assign(None, readers=("alice", "bob"))
    with proj.start_read("G01", "alice") as rd:
        obs = rd.table.obs
        assert rd.table.n_obs == 122 and obs["CellType"].isna().all()
        assert set(obs["CellType"].cat.categories) == {"celltype_A", "celltype_B", "celltype_C"}
        assert "CellType_original_meaning" not in obs
        assert "CellNb" in obs and "Pattern" in obs           # the cell ids and the exocrine flag stay
        assert rd.table.n_vars == 5
