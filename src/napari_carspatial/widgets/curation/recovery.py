"""Autosave and recovery in the Curation dock: the writes in napari thread workers, the
"unsaved curation found" banner (never a modal dialog). The state machines are headless
(:mod:`napari_carspatial.editing.autosave`)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import weakref
from pathlib import Path

from qtpy.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton

from ..._napari import notify
from ...model import SampleError

log = logging.getLogger(__name__)


class Autosave:
    """Runs the current sample's autosaves in napari thread workers and reports them in the dock.

    Attributes
    ----------
    last
        The recovery file the last autosave of this dock wrote (any sample).
    """

    def __init__(self, dock):
        self.dock = dock
        self.last: Path | None = None
        self._workers: list = []   # running workers (kept referenced)
        self._hooked: list = []    # weak references to the cores whose autosaves report here

    @property
    def policy(self):
        """When the current sample is autosaved (edits pending, last save)."""
        core = self.dock.core
        return core.autosaver.policy if core else None

    def run_in_worker(self, fn, on_done, on_error) -> None:
        """The autosave runner: ``fn`` in a napari thread worker, results back on the main thread."""
        from napari.qt.threading import create_worker

        worker = create_worker(fn, _start_thread=False)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        worker.finished.connect(lambda w=worker: self._workers.remove(w) if w in self._workers else None)
        self._workers.append(worker)
        worker.start()

    def hook(self, core) -> None:
        """``core``'s autosaves run in workers and report here (also after switching sample)."""
        core.autosaver.runner = self.run_in_worker
        if self._written not in core.autosaver.on_written:
            core.autosaver.on_written.append(self._written)
            core.autosaver.on_failed.append(self._failed)
            self._hooked.append(weakref.ref(core))

    def release(self) -> None:
        """The dock closes: later writes (scripts, another dock) run without it."""
        from ...editing import run_now

        for ref in self._hooked:
            core = ref()
            if core is not None and core.autosaver.runner == self.run_in_worker:
                core.autosaver.runner = run_now

    def now(self):
        """Autosave the current sample: a snapshot written to its recovery file in a worker."""
        core = self.dock.core
        if core is None:
            return None
        core.autosaver.autosave_now()
        return True

    def busy(self) -> bool:
        """An autosave of this dock is being written (tests wait on this)."""
        core = self.dock.core
        return bool(self._workers) or bool(core is not None and core.autosaver.busy)

    def tick(self) -> None:
        """The dock's timer: autosave when the policy says so."""
        core = self.dock.core
        if core is not None:
            core.autosaver.maybe_autosave()

    def _written(self, path) -> None:
        self.last = Path(path)
        with contextlib.suppress(RuntimeError):  # the dock is gone
            self.dock.set_status(f"Autosaved to {path}")

    def _failed(self, err) -> None:
        with contextlib.suppress(RuntimeError):
            self.dock.set_status(f"Autosave failed ({err}). Save your work with Save as…")


class RecoveryBanner(QFrame):
    """"Unsaved curation of <sample> from <time> was autosaved. Recover it?" [Recover] [Not now]"""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self._sid: str | None = None
        self.setObjectName("recoveryBanner")
        self.setStyleSheet("#recoveryBanner { background: #fff3cd; border: 1px solid #e0b84a; border-radius: 4px; }"
                           "#recoveryBanner QLabel { color: #533f03; }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.recover_button = QPushButton("Recover")
        self.recover_button.setToolTip("Replace the open table with the autosaved one (the curation you did not save)")
        self.not_now_button = QPushButton("Not now")
        self.not_now_button.setToolTip("Keep the open table; the recovery file is set aside (renamed *.declined), not deleted")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.recover_button)
        lay.addWidget(self.not_now_button)
        self.hide()
        self.recover_button.clicked.connect(self.recover_now)
        self.not_now_button.clicked.connect(self.decline)

    @property
    def recovery_file(self) -> Path | None:
        """The recovery file offered in the banner (None when none is)."""
        core = self.dock.core
        return core.recovery.offered if core is not None and not self.isHidden() else None

    def offer(self) -> Path | None:
        """When the sample has a recovery file newer than its table, offer it here (plus a
        notification). Returns the file offered, or None."""
        core = self.dock.core
        rec = core.recovery.offer() if core is not None else None
        if rec is None:
            self._close()
            return None
        when = _dt.datetime.fromtimestamp(rec.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        self._sid = self.dock.view.sid
        name = core.real_name if core.blinded else core.sample.name
        self.label.setText(f"<b>Unsaved curation of {name}</b> from {when} was autosaved. Recover it?")
        self.label.setToolTip(os.fspath(rec))
        self.show()
        notify(f"Unsaved curation of {name} from {when} was found: Recover it from the Curation dock (or Not now).")
        return rec

    def _close(self) -> None:
        self._sid = None
        self.hide()

    def decline(self) -> Path | None:
        """"Not now": keep the open table; the recovery file is renamed ``*.declined`` (kept)."""
        core = self.dock.core
        self._close()
        if core is None:
            return None
        try:
            out = core.recovery.decline()
        except SampleError as err:
            log.warning("%s", err)
            return None
        if out is not None:
            self.dock.set_status(f"Recovery file kept as {out}")
        return out

    def recover_now(self) -> bool:
        """"Recover": the recovery file becomes the sample's table; every dock follows (hover,
        colouring, gating) through the session's ``table_changed``."""
        sid, core, view = self._sid, self.dock.core, self.dock.view
        if sid is None or core is None or view.sid != sid or core.recovery.offered is None:
            self._close()
            return False
        rec = core.recovery.offered
        self._close()
        try:
            core.recovery.recover()
        except SampleError as err:
            notify(f"Not recovered: {err}", "error")
            return False
        self.dock.session.table_changed(sid, structure=True, reason=f"recovered from {rec}")
        view.sync_roi_layer()
        self.dock.refresh_all()
        notify(f"Recovered unsaved curation from {rec}")
        self.dock.set_status(f"Recovered from {rec}. Save it with Save as…")
        return True
