"""``carspatial project init | assign | status | export | unlock``."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest
from review_trial import make_cohort, simulate_read

from napari_carspatial.cli import main
from napari_carspatial.review import load_project
from napari_carspatial.review.lock import lock_path, read_lock


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"), size=260)


def test_project_cli(tmp_path, cohort, capsys, caplog):
    pdir = tmp_path / "proj"
    assert main(["project", "init", str(pdir), "--manifest", str(cohort), "--reviewer", "alice=Dr A. Example",
                 "--reviewer", "bob", "--due", "2099-01-31"]) == 0
    out = capsys.readouterr().out
    assert "4 samples, 2 reviewers, blinding on" in out
    proj = load_project(pdir)
    assert proj.reviewers["alice"].name == "Dr A. Example" and proj.due == "2099-01-31"
    codes = {s: e.code for s, e in proj.samples.items()}

    assert main(["project", "assign", str(pdir), "--reader", "alice", "--reader", "bob", "--adjudicator", "carol"]) == 2
    assert "reviewer 'carol' is not in the project" in capsys.readouterr().err  # a typo is not a new reviewer
    assert main(["project", "assign", str(pdir), "--reader", "alice", "--reader", "bob", "--adjudicator", "carol",
                 "--add-reviewer"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in codes.values()) and not any(s in out for s in codes)  # blinded
    assert main(["project", "status", str(pdir)]) == 0
    out = capsys.readouterr().out
    assert "4 not started" in out and "alice: not started" in out and "2099-01-31" in out
    assert not any(s in out for s in codes)
    assert main(["project", "status", str(pdir), "--unblind"]) == 0
    out = capsys.readouterr().out
    assert all(s in out for s in codes)

    # one sample read twice and adjudicated through the headless API, then the CLI reports it
    proj.reload()
    for r in ("alice", "bob"):
        with proj.start_read("P01-post", r) as rd:
            simulate_read(rd, 1)
    with proj.start_read("P02-pre", "alice") as rd:
        simulate_read(rd, 2, finish=False)
    assert main(["project", "status", str(pdir), "--reviewer", "alice", "--agreement"]) == 0
    out = capsys.readouterr().out
    assert f"next for alice: {codes['P02-pre']}" in out  # the read in progress first
    assert "alice: in progress" in out and f"{codes['P01-post']}: kappa " in out
    assert "P01-post" not in out
    with proj.start_adjudication("P01-post", "carol") as adj:
        adj.accept(adj.disagreements()["cell_id"], "bob", note="bob right")
        adj.decide_region("Tumor core", "union")
        adj.finish()
    assert main(["project", "export", str(pdir), "--n-boot", "100"]) == 0
    out = capsys.readouterr().out
    assert "1 sample(s) exported" in out and "3 not ready" in out and "P01-post: P01-post.h5ad" in out
    assert "not exported P02-pre: reads not done" in out and "pooled kappa" in out
    assert (pdir / "export" / "P01-post.h5ad").is_file() and (pdir / "export" / "agreement.html").is_file()

    # errors: one clean line, exit status 2
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["project", "status", str(pdir), "--reviewer", "zoe"]) == 2
        assert main(["project", "assign", str(pdir), "--reader", "alice"]) == 2
        assert main(["project", "status", str(tmp_path / "missing")]) == 2
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("no reviewer 'zoe'" in m for m in msgs)
    assert any("give two readers" in m for m in msgs)
    assert any("no review project file" in m for m in msgs)


def test_assign_balanced_and_unlock(tmp_path, cohort, capsys):
    pdir = tmp_path / "p"
    assert main(["project", "init", str(pdir), "-m", str(cohort), "--no-blinding"]) == 0
    assert main(["project", "assign", str(pdir), "--reader", "a1", "--reader", "a2", "--reader", "a3",
                 "--adjudicator", "adj"]) == 0
    proj = load_project(pdir)
    firsts = [e.readers[0] for e in proj.samples.values()]
    assert set(firsts) <= {"a1", "a2", "a3"} and len(set(firsts)) == 3
    assert all(e.adjudication.reviewer == "adj" for e in proj.samples.values())
    capsys.readouterr()
    # a lock whose process is gone: the CLI breaks it and says whose it was
    wc = proj.read_path("P01-pre", proj.samples["P01-pre"].readers[0])
    wc.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(wc).write_text(json.dumps({"owner": "a1", "host": socket.gethostname(), "pid": dead.pid,
                                         "time": "2025-01-01T00:00:00+00:00", "token": "t"}), encoding="utf-8")
    rid = proj.samples["P01-pre"].readers[0]
    assert main(["project", "unlock", str(pdir), "P01-pre", "--reviewer", rid]) == 0
    out = capsys.readouterr().out
    assert f"lock of a1 on host {socket.gethostname()} (pid {dead.pid})" in out and "not running" in out
    assert read_lock(wc) is None and list(wc.parent.glob("*.lock.broken-*"))
    # a live holder is not broken without --force
    lock_path(wc).write_text(json.dumps({"owner": "a1", "host": socket.gethostname(), "pid": os.getpid(),
                                         "time": "2025-01-01T00:00:00+00:00", "token": "t"}), encoding="utf-8")
    assert main(["project", "unlock", str(pdir), "P01-pre", "--reviewer", rid]) == 2
    assert read_lock(wc) is not None
    assert main(["project", "unlock", str(pdir), "P01-pre", "--reviewer", rid, "--force"]) == 0
