"""Lock files: one writer per file (a reviewer's working copy, an adjudication, the project file).

A lock is a small JSON file next to the file it protects (``<file>.lock``) holding the owner
(reviewer id), host, process id and the time it was taken::

    {"owner": "alice", "host": "lab-pc-3", "pid": 4242, "purpose": "read 1 of RV-7K3F9Q",
     "time": "2025-06-01T10:02:11+00:00", "token": "..."}

The lock file's modification time is its heartbeat: a session touches it at every save.

It is created atomically (written to a temporary file, then hard-linked to its name, which fails
when a lock exists; ``O_EXCL`` where hard links are not supported), so a reader never sees a
half-written lock and two writers never both win.

**Stale locks.** A lock is stale when its process is gone: on the same host, when no process
with its pid runs; on another host (a shared drive), when it was not refreshed for
``stale_after_s`` (default 12 h; a session refreshes its lock at every save). A stale lock of
*the same owner on the same host* (a crashed session of yours) is broken automatically with a
warning; anyone else's stale lock is reported (holder, host, pid, age) and broken only when asked
(``break_stale=True``, ``carspatial project unlock``). A broken lock is renamed
``<file>.lock.broken-<time>`` (kept as a record), never silently deleted.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..io.write import pid_alive
from ..model import SampleError

log = logging.getLogger(__name__)

#: a lock on another host not refreshed for this long is stale
STALE_AFTER_S = 12 * 3600.0
LOCK_SUFFIX = ".lock"


class LockError(SampleError):
    """The file is locked by another writer (``holder`` says who; ``stale`` whether it looks dead).

    Parameters
    ----------
    problem
        What is wrong.
    path
        The locked file.
    holder
        Who holds the lock.
    stale
        Whether the lock looks dead (its host process is gone or it was not refreshed).
    hint
        How to fix it.
    """

    def __init__(self, problem: str, *, path: str | os.PathLike, holder: LockInfo | None = None, stale: bool = False,
                 hint: str | None = None):
        self.holder = holder
        self.stale = stale
        super().__init__(problem, path=path, hint=hint)


@dataclass(frozen=True)
class LockInfo:
    """The content of a lock file.

    Attributes
    ----------
    owner
        Who holds the lock.
    host
        The host it was taken on.
    pid
        The holding process.
    time
        When it was taken (UTC ISO 8601).
    refreshed
        When it was last refreshed (UTC ISO 8601).
    purpose
        What for (shown to anyone refused).
    token
        Identifies this holder (a lock is released only by its holder).
    """

    owner: str
    host: str
    pid: int
    time: str
    refreshed: str
    purpose: str = ""
    token: str = ""

    def describe(self) -> str:
        """``alice on host lab-pc-3 (pid 4242) since 2025-06-01 10:02 UTC``."""
        return f"{self.owner} on host {self.host} (pid {self.pid}) since {_short(self.time)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def _short(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of ``path`` (``<path>.lock``)."""
    p = Path(path)
    return p.with_name(p.name + LOCK_SUFFIX)


def read_lock(path: str | os.PathLike) -> LockInfo | None:
    """The lock on ``path`` (the protected file, or the ``.lock`` file itself), or None.

    An unreadable lock file is returned with owner ``"?"`` (it is reported as stale).

    Parameters
    ----------
    path
        The protected file, or its ``.lock`` file.

    Returns
    -------
    LockInfo or None
        The lock, or ``None`` when the file is not locked.
    """
    lp = Path(path) if os.fspath(path).endswith(LOCK_SUFFIX) else lock_path(path)
    try:
        d = json.loads(lp.read_text(encoding="utf-8"))
        refreshed = _iso(datetime.fromtimestamp(lp.stat().st_mtime, UTC))
        return LockInfo(owner=str(d["owner"]), host=str(d["host"]), pid=int(d["pid"]), time=str(d["time"]),
                        refreshed=refreshed, purpose=str(d.get("purpose", "")), token=str(d.get("token", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        try:
            mtime = datetime.fromtimestamp(lp.stat().st_mtime, UTC)
        except OSError:
            return None
        return LockInfo(owner="?", host="?", pid=-1, time=_iso(mtime), refreshed=_iso(mtime),
                        purpose="(unreadable lock file)")


def stale_reason(info: LockInfo, *, stale_after_s: float = STALE_AFTER_S) -> str | None:
    """Why the lock looks dead (``None`` when it looks held)."""
    if info.owner == "?":
        return "the lock file cannot be read"
    if info.host == socket.gethostname():
        if not pid_alive(info.pid):
            return f"process {info.pid} is not running on this host"
        return None
    try:
        age = (_now() - datetime.fromisoformat(info.refreshed)).total_seconds()
    except ValueError:
        return "the lock has no valid time"
    if age > stale_after_s:
        return f"it was last refreshed {age / 3600:.1f} h ago (stale after {stale_after_s / 3600:g} h)"
    return None


def _create(lp: Path, payload: dict) -> bool:
    """Create ``lp`` with ``payload`` atomically; False when it exists."""
    tmp = lp.with_name(f".{lp.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        try:
            os.link(tmp, lp)
            return True
        except FileExistsError:
            return False
        except OSError:  # pragma: no cover - file system without hard links
            try:
                fd = os.open(lp, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(payload, indent=1))
            return True
    finally:
        tmp.unlink(missing_ok=True)


def break_lock(path: str | os.PathLike, *, by: str | None = None) -> LockInfo | None:
    """Break the lock on ``path``: the lock file is renamed ``<lock>.broken-<time>`` (kept).

    Logged as a warning naming the holder.

    Parameters
    ----------
    path
        The protected file (or its ``.lock`` file).
    by
        Who breaks it (logged).

    Returns
    -------
    LockInfo or None
        The broken lock, or ``None`` when there was none.
    """
    lp = lock_path(path)
    info = read_lock(path)
    if info is None:
        return None
    stamp = _now().strftime("%Y%m%dT%H%M%S")
    target = lp.with_name(f"{lp.name}.broken-{stamp}-{uuid.uuid4().hex[:4]}")
    try:
        os.replace(lp, target)
    except FileNotFoundError:  # someone else broke or released it first
        return info
    log.warning("%s: lock of %s broken%s (kept as %s)", path, info.describe(), f" by {by}" if by else "",
                target.name)
    return info


class FileLock:
    """An exclusive lock on one file, held by ``owner`` (a reviewer id) in this process.

    Parameters
    ----------
    path
        The protected file (the lock is ``<path>.lock``).
    owner
        Who writes (shown to anyone refused).
    purpose
        What for (``read 1 of RV-7K3F9Q``), shown to anyone refused.
    stale_after_s
        Age after which a lock from another host counts as stale.

    Notes
    -----
    Use as a context manager or with :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, path: str | os.PathLike, *, owner: str, purpose: str = "",
                 stale_after_s: float = STALE_AFTER_S):
        self.path = Path(path)
        self.lock_file = lock_path(self.path)
        self.owner = str(owner)
        self.purpose = purpose
        self.stale_after_s = float(stale_after_s)
        self._token: str | None = None
        self._time: str | None = None

    @property
    def held(self) -> bool:
        """This object holds the lock (its token is in the lock file)."""
        if self._token is None:
            return False
        info = read_lock(self.path)
        return info is not None and info.token == self._token

    def _payload(self, time: str) -> dict:
        return {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "purpose": self.purpose,
                "time": time, "token": self._token}

    def acquire(self, *, break_stale: bool = False, wait_s: float = 0.0) -> FileLock:
        """Take the lock.

        Parameters
        ----------
        break_stale
            Break another owner's stale lock (see the module docstring).
        wait_s
            Keep trying this long while the lock is held (for short critical sections such as a
            project-file update); 0 refuses at once.

        Raises
        ------
        LockError
            Another writer holds it (the message names owner, host, pid and since when), or its
            lock is stale and ``break_stale`` is False (the message says why it looks stale and
            how to break it). A stale lock of the same owner on this host is broken automatically.
        """
        if self.held:
            return self
        deadline = time.monotonic() + max(float(wait_s), 0.0)
        while True:
            try:
                return self._try_acquire(break_stale=break_stale)
            except LockError as err:
                if err.stale or time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    def _try_acquire(self, *, break_stale: bool) -> FileLock:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self._token = uuid.uuid4().hex
            now = _iso(_now())
            try:
                ok = _create(self.lock_file, self._payload(now))
            except OSError as err:
                self._token = None
                raise SampleError(f"cannot create the lock file ({err}).", path=self.lock_file,
                                  hint="Is the folder writable?") from err
            if ok:
                self._time = now
                return self
            self._token = None
            info = read_lock(self.path)
            if info is None:  # released in between: try again
                continue
            reason = stale_reason(info, stale_after_s=self.stale_after_s)
            mine = info.owner == self.owner and info.host == socket.gethostname()
            if reason and (break_stale or mine):
                break_lock(self.path, by=self.owner)
                continue
            what = f"{self.purpose}: " if self.purpose else ""
            if reason:
                raise LockError(
                    f"{what}locked by {info.describe()}, but the lock looks stale ({reason}).", path=self.path,
                    holder=info, stale=True,
                    hint="If that session is really gone, break the lock (carspatial project unlock, or "
                         "break_stale=True); the broken lock file is kept.")
            raise LockError(f"{what}locked by {info.describe()}"
                            f"{' for ' + info.purpose if info.purpose and info.purpose != self.purpose else ''}; "
                            "a second writer is refused.", path=self.path, holder=info,
                            hint=f"Ask {info.owner} to close it, or wait until they are done.")
        raise LockError("could not take the lock (it keeps changing hands).", path=self.path)

    def refresh(self) -> None:
        """Touch the lock file (its modification time is the heartbeat), when this object still holds it.

        Raises
        ------
        LockError
            The lock was broken or taken by someone else meanwhile (the work is not written).
        """
        info = read_lock(self.path)
        if self._token is None or info is None or info.token != self._token:
            holder = f" (now held by {info.describe()})" if info is not None else ""
            raise LockError(f"this session no longer holds the lock{holder}.", path=self.path, holder=info,
                            hint="Someone broke it; save your work under another name and re-open.")
        try:
            os.utime(self.lock_file)
        except OSError as err:  # pragma: no cover - removed between the check and the touch
            raise LockError(f"the lock file cannot be refreshed ({err}).", path=self.path) from err

    def release(self) -> None:
        """Remove the lock when this object holds it (a lock taken over by someone else is left alone)."""
        if self._token is None:
            return
        info = read_lock(self.path)
        if info is not None and info.token == self._token:
            self.lock_file.unlink(missing_ok=True)
        self._token = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class LockedSession:
    """Close / release / ``with`` for a session that holds a :class:`FileLock` (``self._lock``) and
    saves with ``self.save()`` (the read and adjudication sessions share it).

    ``close()`` saves and releases the lock (once); leaving a ``with`` block closes.
    """

    closed: bool = False

    def close(self) -> None:
        """Save and release the lock (the work stays in progress); a closed session does nothing."""
        if self.closed:
            return
        try:
            self.save()
        finally:
            self._release()

    def _release(self) -> None:
        self._lock.release()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
