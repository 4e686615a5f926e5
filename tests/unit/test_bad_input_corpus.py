"""Every case of the bad-input corpus (``tests/unit/bad_input_corpus.py``, built at test time):
one clear line naming the file and the problem, and nothing the user had changed."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from bad_input_corpus import CASES, run_case


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            out[os.fspath(p.relative_to(root))] = (p.is_symlink(), st.st_mtime_ns if not p.is_dir() else 0, digest)
    return out


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line_and_loses_nothing(case, tmp_path):
    folder = tmp_path / case.id
    folder.mkdir()
    built = {}

    def build(f):
        action, named = case.build(f)
        built["before"] = _snapshot(f)
        return action, named

    msg, named, warned = run_case(type(case)(case.id, case.problem, case.expect, build, case.warns), folder)
    assert warned == case.warns, f"{'no error raised' if warned else 'raised'}: {msg}"
    assert re.search(case.expect, msg), msg
    assert os.fspath(named) in msg or Path(named).name in msg, f"the message does not name {named}: {msg}"
    if not warned:
        assert "\n" not in msg and "Traceback" not in msg, msg
    assert _snapshot(folder) == built["before"], "the case changed the user's files"
