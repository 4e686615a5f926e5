"""Lock files: a second writer is refused with the holder's name; stale locks are found and breakable."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from napari_carspatial.review.lock import (
    FileLock,
    LockError,
    break_lock,
    lock_path,
    read_lock,
    stale_reason,
)

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _fake_lock(target: Path, **kw) -> Path:
    d = {"owner": "bob", "host": socket.gethostname(), "pid": os.getpid(), "purpose": "read 2 of RV-AAAAAA",
         "time": "2025-01-01T10:00:00+00:00", "token": "x", **kw}
    lp = lock_path(target)
    lp.write_text(json.dumps(d), encoding="utf-8")
    return lp


def test_second_writer_refused_with_holder(tmp_path):
    f = tmp_path / "alice.h5ad"
    first = FileLock(f, owner="alice", purpose="read 1 of RV-AAAAAA").acquire()
    info = read_lock(f)
    assert (info.owner, info.host, info.pid) == ("alice", socket.gethostname(), os.getpid())
    second = FileLock(f, owner="bob", purpose="read 1 of RV-AAAAAA")
    with pytest.raises(LockError) as err:
        second.acquire()
    msg = str(err.value)
    assert "locked by alice on host" in msg and f"(pid {os.getpid()})" in msg and "second writer is refused" in msg
    assert err.value.holder.owner == "alice" and not err.value.stale
    # the same reviewer in a second session (same process) is refused too: one writer per file
    with pytest.raises(LockError, match="locked by alice"):
        FileLock(f, owner="alice").acquire()
    first.refresh()
    first.release()
    assert read_lock(f) is None
    with second:  # free now
        assert second.held
    assert not lock_path(f).exists()


def test_lock_held_by_another_process(tmp_path):
    f = tmp_path / "bob.h5ad"
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT / 'src')!r})
        from napari_carspatial.review.lock import FileLock
        FileLock({str(f)!r}, owner="bob", purpose="read 2 of RV-BBBBBB").acquire()
        print("locked", flush=True)
        time.sleep(30)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(LockError, match=rf"locked by bob on host .* \(pid {child.pid}\)"):
            FileLock(f, owner="alice").acquire()
        assert stale_reason(read_lock(f)) is None
    finally:
        child.kill()
        child.wait()
    # the holder died without releasing: now stale, and said so
    with pytest.raises(LockError, match="looks stale") as err:
        FileLock(f, owner="alice").acquire()
    assert err.value.stale and f"process {child.pid} is not running" in str(err.value)
    with FileLock(f, owner="alice").acquire(break_stale=True) as lk:
        assert lk.held and read_lock(f).owner == "alice"
    assert list(tmp_path.glob("bob.h5ad.lock.broken-*")), "the broken lock is kept as a record"


def test_stale_lock_of_same_owner_is_taken_over(tmp_path, caplog):
    f = tmp_path / "alice.h5ad"
    _fake_lock(f, owner="alice", pid=_dead_pid())
    with FileLock(f, owner="alice") as lk:
        assert lk.held
    assert "broken" in caplog.text


def test_other_host_stale_by_age(tmp_path):
    f = tmp_path / "x.h5ad"
    lp = _fake_lock(f, host="other-host-xyz", pid=1)
    info = read_lock(f)
    assert stale_reason(info) is None  # just written: fresh
    old = time.time() - 13 * 3600
    os.utime(lp, (old, old))
    reason = stale_reason(read_lock(f))
    assert reason and "last refreshed 13.0 h ago" in reason
    with pytest.raises(LockError, match="bob on host other-host-xyz"):
        FileLock(f, owner="carol").acquire()
    assert break_lock(f, by="test").owner == "bob"
    assert read_lock(f) is None


def test_unreadable_lock_is_stale(tmp_path):
    f = tmp_path / "y.h5ad"
    lock_path(f).write_text("{not json", encoding="utf-8")
    info = read_lock(f)
    assert info.owner == "?" and "cannot be read" in stale_reason(info)
    with pytest.raises(LockError, match="stale"):
        FileLock(f, owner="alice").acquire()


def test_refresh_after_break_refuses(tmp_path):
    f = tmp_path / "z.h5ad"
    lk = FileLock(f, owner="alice").acquire()
    break_lock(f, by="admin")
    FileLock(f, owner="bob").acquire()
    with pytest.raises(LockError, match="no longer holds the lock .*bob"):
        lk.refresh()
    lk.release()  # leaves bob's lock alone
    assert read_lock(f).owner == "bob"
