"""Autosave and recovery of cell tables: recovery files in the user cache folder only
(:func:`cache_dir`), keyed by the source path or, for data never saved, by the sample name and
:func:`table_fingerprint`; :func:`autosave`, :func:`find_recovery`, :func:`recover`,
:func:`decline_recovery`, :func:`discard_recovery`, and :class:`AutosavePolicy` (when to save).
Written with :func:`~napari_carspatial.io.write.write_table` (``record=False``). Re-exported by
:mod:`.write`.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..model import SampleError
from .write import RECOVERY_SUFFIX, restore_interrupted, write_table

if TYPE_CHECKING:
    from collections.abc import Callable

    from anndata import AnnData

log = logging.getLogger(__name__)


#: suffix given to a recovery file the user chose not to recover (kept, never deleted)
DECLINED_SUFFIX = ".declined"


def cache_dir() -> Path:
    """The folder of recovery files: ``$CARSPATIAL_CACHE_DIR/recovery`` when set, else
    ``$XDG_CACHE_HOME/napari-carspatial/recovery`` (default ``~/.cache/...``)."""
    env = os.environ.get("CARSPATIAL_CACHE_DIR")
    if env:
        return Path(env) / "recovery"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-carspatial" / "recovery"


def table_fingerprint(adata: AnnData) -> str:
    """``"<n_obs>-<hash>"``: number of cells and a SHA-1 of the instance ids (mask labels; the
    obs names when the table has no instance-id column) and of the centroids
    (``obsm["spatial"]``) when present. Curation changes neither.

    Parameters
    ----------
    adata
        The cell table.

    Returns
    -------
    str
        ``"<n_obs>-<hash>"``.
    """
    import numpy as np

    from ..model.conventions import SPATIAL_KEY, instance_ids

    h = hashlib.sha1()
    try:
        h.update(np.ascontiguousarray(instance_ids(adata), dtype="<i8").tobytes())
    except (KeyError, ValueError, TypeError):
        h.update("\0".join(map(str, adata.obs_names)).encode("utf-8"))
    if SPATIAL_KEY in adata.obsm:
        h.update(np.ascontiguousarray(np.asarray(adata.obsm[SPATIAL_KEY])[:, :2], dtype="<f8").tobytes())
    return f"{adata.n_obs}-{h.hexdigest()[:12]}"


def recovery_path(source: str | os.PathLike | None, *, name: str | None = None,
                  fingerprint: str | None = None) -> Path:
    """The recovery file of a sample, in :func:`cache_dir`.

    Keyed by the resolved ``source`` path; for data never saved (``source=None``) by ``name``
    and the table ``fingerprint`` (:func:`table_fingerprint`).
    """
    if source:
        key = os.fspath(Path(source).resolve())
        stem = Path(source).name
    else:
        key = f"unsaved:{name}:{fingerprint or ''}"
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in (name or "table"))
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    return cache_dir() / f"{stem}-{digest}{RECOVERY_SUFFIX}"


def recovery_paths(source: str | os.PathLike | None, *, name: str | None = None,
                   fingerprint: str | None = None) -> list[Path]:
    """Where the recovery file of ``source`` may be (a list, for compatibility: the cache folder only)."""
    return [recovery_path(source, name=name, fingerprint=fingerprint)]


def autosave(adata: AnnData, source: str | os.PathLike | None, *, name: str | None = None,
             fingerprint: str | None = None) -> Path:
    """Write ``adata`` to its recovery file in the cache folder; atomic; ``adata`` is not modified.

    Safe to call from a worker thread on a snapshot (``adata.copy()`` taken by the caller).

    Parameters
    ----------
    adata
        The table being curated (or a snapshot of it).
    source
        The table (or image) the session started from; ``None`` for unsaved data.
    name
        Sample name, used when ``source`` is ``None``.
    fingerprint
        :func:`table_fingerprint` of ``adata`` (computed when omitted), used when ``source``
        is ``None``.

    Returns
    -------
    pathlib.Path
        Where the recovery file was written.

    Raises
    ------
    SampleError
        The recovery file cannot be written.
    """
    if not source and fingerprint is None:
        fingerprint = table_fingerprint(adata)
    target = recovery_path(source, name=name, fingerprint=fingerprint)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return write_table(adata, target, overwrite=True, record=False)
    except OSError as err:
        raise SampleError(f"autosave failed ({err}).", path=target,
                          hint="Save your work with Save as.") from err


def find_recovery(source: str | os.PathLike | None, *, name: str | None = None,
                  fingerprint: str | None = None) -> Path | None:
    """The recovery file of ``source`` when it is newer than ``source`` itself, or None.

    Parameters
    ----------
    source
        The table (or image) the session started from; ``None`` for unsaved data.
    name
        Sample name, used when ``source`` is ``None``.
    fingerprint
        :func:`table_fingerprint` of the table, used when ``source`` is ``None``.

    Returns
    -------
    pathlib.Path or None
        The recovery file, or ``None`` when there is none newer than ``source``.
    """
    if source:
        restore_interrupted(source)
    src_m = Path(source).stat().st_mtime if source and Path(source).exists() else -1.0
    found = [p for p in recovery_paths(source, name=name, fingerprint=fingerprint) if p.is_file()]
    found = [p for p in found if p.stat().st_mtime > src_m]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def recover(source_or_recovery: str | os.PathLike, *, name: str | None = None, fingerprint: str | None = None) -> AnnData:
    """Read the recovery table of ``source`` (or a recovery file given directly).

    Parameters
    ----------
    source_or_recovery
        The source table (its recovery file is looked up) or a recovery file itself.
    name
        Sample name, used when the source was unsaved data.
    fingerprint
        :func:`table_fingerprint` of the table, used when the source was unsaved data.

    Returns
    -------
    anndata.AnnData
        The recovered table.

    Raises
    ------
    SampleError
        When there is no recovery file.
    """
    import anndata as ad

    p = Path(source_or_recovery)
    rec = p if p.name.endswith(RECOVERY_SUFFIX) else find_recovery(p, name=name, fingerprint=fingerprint)
    if rec is None or not rec.is_file():
        raise SampleError("no recovery file found.", path=p)
    try:
        adata = ad.read_h5ad(rec)
    except (OSError, ValueError, KeyError) as err:
        raise SampleError(f"the recovery file cannot be read ({type(err).__name__}: {err}).", path=rec,
                          hint="It is kept; your open table is unchanged.") from err
    log.info("recovered the table from %s", rec)
    return adata


def decline_recovery(recovery: str | os.PathLike) -> Path | None:
    """Set a recovery file aside without deleting it: renamed ``<file>.declined`` (``.declined-2``,
    ... when that exists). It is no longer offered; the user can still open it.

    Parameters
    ----------
    recovery
        The recovery file.

    Returns
    -------
    pathlib.Path or None
        The new path, or ``None`` when the file no longer exists.
    """
    p = Path(recovery)
    if not p.is_file():
        return None
    dst = p.with_name(p.name + DECLINED_SUFFIX)
    k = 2
    while dst.exists():
        dst = p.with_name(f"{p.name}{DECLINED_SUFFIX}-{k}")
        k += 1
    os.replace(p, dst)
    log.info("recovery file set aside as %s", dst)
    return dst


def discard_recovery(source: str | os.PathLike | None, *, name: str | None = None,
                     fingerprint: str | None = None) -> None:
    """Delete the recovery file of ``source`` (only after the work was saved successfully).

    Parameters
    ----------
    source
        The table (or image) the session started from; ``None`` for unsaved data.
    name
        Sample name, used when ``source`` is ``None``.
    fingerprint
        :func:`table_fingerprint` of the table, used when ``source`` is ``None``.
    """
    for p in recovery_paths(source, name=name, fingerprint=fingerprint):
        try:
            p.unlink(missing_ok=True)
        except OSError as err:  # pragma: no cover
            log.warning("cannot remove recovery file %s: %s", p, err)


class AutosavePolicy:
    """Decide when to autosave: after ``every_edits`` edits or ``every_seconds`` since the last save.

    Parameters
    ----------
    every_edits
        Save after this many edits (default 5).
    every_seconds
        Or when this many seconds passed since the last save and there are unsaved edits.
    clock
        Seconds, monotonic (injected by tests).
    """

    def __init__(self, every_edits: int = 5, every_seconds: float = 120.0, clock: Callable[[], float] = time.monotonic):
        self.every_edits = int(every_edits)
        self.every_seconds = float(every_seconds)
        self.clock = clock
        self.pending = 0
        self.last = clock()

    def note_edit(self) -> bool:
        """Count one edit; True when an autosave is due."""
        self.pending += 1
        return self.due()

    def due(self) -> bool:
        if self.pending <= 0:
            return False
        return self.pending >= self.every_edits or (self.clock() - self.last) >= self.every_seconds

    def saved(self) -> None:
        self.pending = 0
        self.last = self.clock()
