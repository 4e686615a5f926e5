"""Adding samples to a review project from another cohort manifest (the Project dock's "Add
samples…", ``carspatial project add-samples PROJECT --from NEW.csv``): the new rows are validated,
appended to the project's manifest (which stays valid; an invalid addition changes nothing) and the
samples assigned as ``add-samples`` assigns them; a sample already in the project is named in one
line and left alone."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from review_trial import make_cohort

from napari_carspatial.cli import main
from napari_carspatial.cohort.manifest import read_manifest
from napari_carspatial.model import SampleError
from napari_carspatial.review import init_project, load_project


@pytest.fixture(scope="module")
def cohort6(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort6"), n_patients=3, size=120)


def _split(cohort6, tmp_path, first: int):
    """The project's manifest (first ``first`` rows, relative paths, next to the data) and the
    full table of the six samples."""
    full = pd.read_csv(cohort6, dtype=str, keep_default_na=False)
    man = cohort6.parent / f"manifest_{tmp_path.name}.csv"
    full.iloc[:first].to_csv(man, index=False)
    return man, full


def test_add_samples_from_another_manifest(tmp_path, cohort6, capsys):
    man, full = _split(cohort6, tmp_path, 3)
    samples = list(full["sample"])
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob", "carol"])
    proj.assign(None, readers=("alice", "bob"), adjudicator="carol")
    before = {s: (e.code, e.readers, e.adjudication.reviewer) for s, e in load_project(proj.folder).samples.items()}
    old_text = man.read_text()

    # the new manifest: elsewhere, its own relative paths, one sample already in the project
    other = tmp_path / "new"
    other.mkdir()
    add = full.iloc[[0, 3, 4, 5]].copy()
    for c in ("table", "mask"):
        add[c] = [str((cohort6.parent / v).resolve()) if v else v for v in add[c]]
    add.to_csv(other / "new.csv", index=False)
    res = proj.add_samples_from(other / "new.csv")
    assert list(res.added) == samples[3:] and res.appended == samples[3:] and res.already == [samples[0]]
    assert res.summary() == f"3 samples added, assigned like the others; {samples[0]} is in the project already; not added."
    assert not any(code in res.summary() for code in res.added.values())   # new samples counted, not named

    # the project's manifest: the old rows byte for byte, the new rows after them, valid, paths found
    text = man.read_text()
    assert text.startswith(old_text.rstrip("\n").split("\n")[0]) and text.count("\n") == old_text.count("\n") + 3
    assert pd.read_csv(man, dtype=str, keep_default_na=False).iloc[:3].equals(full.iloc[:3].reset_index(drop=True))
    m = read_manifest(man, check_files=True)
    assert m.samples == samples
    assert all(m.paths(s)["table"] == str((cohort6.parent / full.loc[i, "table"]).resolve())
               for i, s in enumerate(samples))
    assert pd.read_csv(man)["table"].iloc[3:].str.startswith("/").sum() == 0   # under its folder: relative

    # assigned like the others: the same two readers, read 1 balanced, the adjudicator; old ones unchanged
    proj = load_project(proj.folder)
    for s, (code, readers, adj) in before.items():
        e = proj.samples[s]
        assert (e.code, e.readers, e.adjudication.reviewer) == (code, readers, adj)
    assert all(set(proj.samples[s].readers) == {"alice", "bob"} and proj.samples[s].adjudication.reviewer == "carol"
               for s in samples[3:])
    firsts = Counter(e.readers[0] for e in proj.samples.values())
    assert sorted(firsts.values()) == [3, 3]
    from napari_carspatial.review.entries import _sha256

    assert proj.manifest_sha256 == _sha256(man)
    with proj.start_read(samples[4], proj.samples[samples[4]].readers[0]) as rd:   # readable like any other
        assert rd.table.n_obs > 0

    # again: everything is there already, one line, nothing changes
    text = man.read_text()
    res = proj.add_samples_from(other / "new.csv")
    assert res.added == {} and res.summary() == (f"{', '.join([samples[0], *samples[3:]])} are in the project "
                                                 "already; not added.")
    assert man.read_text() == text

    # the CLI does the same; the project's own manifest only adds what is new in it
    assert main(["project", "add-samples", str(proj.folder), "--from", str(man)]) == 0
    assert "no new samples to add" in capsys.readouterr().out


def test_an_invalid_addition_changes_nothing(tmp_path, cohort6):
    man, full = _split(cohort6, tmp_path, 2)
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob"])
    proj.assign(None, readers=("alice", "bob"))
    text, project_text = man.read_text(), proj.file.read_text()

    # valid on its own, but a second 'pre' sample of a patient once appended
    bad = full.iloc[[0]].copy()
    bad["sample"] = "P01-pre-again"
    bad["table"] = [str((cohort6.parent / v).resolve()) for v in bad["table"]]
    bad["mask"] = [str((cohort6.parent / v).resolve()) for v in bad["mask"]]
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SampleError, match=r"would make the cohort manifest invalid .*2 'pre' samples") as err:
        proj.add_samples_from(tmp_path / "bad.csv")
    assert str(man.name) in str(err.value)
    assert man.read_text() == text and proj.file.read_text() == project_text

    # a missing file in the new manifest: named, nothing written
    missing = full.iloc[[2]].copy()
    missing["table"] = "nowhere.h5ad"
    missing.to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(SampleError, match="nowhere.h5ad"):
        proj.add_samples_from(tmp_path / "missing.csv")
    # an unknown reader: refused before the manifest is touched
    ok = full.iloc[[2]].copy()
    ok["table"] = [str((cohort6.parent / v).resolve()) for v in ok["table"]]
    ok["mask"] = [str((cohort6.parent / v).resolve()) for v in ok["mask"]]
    ok.to_csv(tmp_path / "ok.csv", index=False)
    with pytest.raises(SampleError, match="reviewer 'zoe' is not in the project"):
        proj.add_samples_from(tmp_path / "ok.csv", readers=["alice", "zoe"])
    assert man.read_text() == text and proj.file.read_text() == project_text
    assert not list(man.parent.glob(f".{man.name}.tmp-*")) and not list(man.parent.glob("*.lock"))

    # a manifest that cannot be written: one line naming it, nothing changed
    import napari_carspatial.model.atomic as atomic

    def refuse(path, writer, **kw):
        raise PermissionError(13, "Permission denied")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(atomic, "atomic_write", refuse)
        with pytest.raises(SampleError, match=r"cannot write the cohort manifest \(Permission denied\)") as err:
            proj.add_samples_from(tmp_path / "ok.csv")
    assert str(man) in str(err.value)
    assert man.read_text() == text and proj.file.read_text() == project_text


def test_yaml_manifest_keeps_its_form(tmp_path, cohort6):
    import yaml

    full = pd.read_csv(cohort6, dtype=str, keep_default_na=False)
    rows = [{k: v for k, v in r.items() if v} for r in full.to_dict("records")]
    for r in rows:
        for c in ("table", "mask"):
            if c in r:
                r[c] = str((cohort6.parent / r[c]).resolve())
    man = tmp_path / "cohort.yaml"
    man.write_text(yaml.safe_dump({"trial": "CART-X", "samples": rows[:2]}, sort_keys=False))
    proj = init_project(tmp_path / "proj", man, reviewers=["alice", "bob"])
    proj.assign(None, readers=("alice", "bob"))
    pd.DataFrame(rows[2:4]).to_csv(tmp_path / "new.csv", index=False)
    res = proj.add_samples_from(tmp_path / "new.csv")
    assert len(res.added) == 2
    data = yaml.safe_load(man.read_text())
    assert data["trial"] == "CART-X" and [d["sample"] for d in data["samples"]] == list(full["sample"][:4])
    assert read_manifest(man).samples == list(full["sample"][:4])
