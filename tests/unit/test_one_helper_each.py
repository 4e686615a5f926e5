"""One implementation of each shared helper (QA1 low: duplicates): the results-folder name of a
sample id, whether a process is alive, and the close / release / ``with`` block of the review's
locked sessions."""

from __future__ import annotations

import re
from pathlib import Path

import napari_carspatial

SRC = Path(napari_carspatial.__file__).parent


def _count(pattern: str) -> list[str]:
    rx = re.compile(pattern, re.MULTILINE)
    return [f"{p.relative_to(SRC)}" for p in SRC.rglob("*.py") for _ in rx.finditer(p.read_text(encoding="utf-8"))]


def test_one_safe_name_and_one_pid_check():
    assert _count(r"^def safe_name\(") == ["cohort/samples.py"]
    assert _count(r"os\.kill\(pid, 0\)") == ["io/write.py"]


def test_review_sessions_share_one_locked_session_block(tmp_path):
    from napari_carspatial.io.write import pid_alive
    from napari_carspatial.review import lock
    from napari_carspatial.review.adjudication import AdjudicationSession
    from napari_carspatial.review.reads import ReadSession

    assert lock.pid_alive is pid_alive
    for cls in (ReadSession, AdjudicationSession):
        assert issubclass(cls, lock.LockedSession)
        for name in ("close", "_release", "__enter__", "__exit__"):
            assert name not in vars(cls), (cls.__name__, name)
    # the shared block: close saves once and releases; a second close does nothing
    calls = []

    class Fake(lock.LockedSession):
        def __init__(self):
            self._lock = lock.FileLock(tmp_path / "x.h5ad", owner="t")
            self._lock.acquire()

        def save(self):
            calls.append("save")

    with Fake() as f:
        assert lock.read_lock(tmp_path / "x.h5ad") is not None
    f.close()
    assert calls == ["save"] and f.closed and lock.read_lock(tmp_path / "x.h5ad") is None
