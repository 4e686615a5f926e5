"""The audit trail: every curation or segmentation edit is one row in the table's ``uns``.

Stored as a DataFrame at ``adata.uns[EDIT_LOG_KEY]`` (h5ad/zarr-serialisable), columns:
``time`` (ISO 8601, UTC), ``reviewer``, ``action``, ``cell_ids`` (JSON list), ``column``,
``old`` (JSON), ``new`` (JSON), ``note``. Rows are only ever appended; undo is itself an action.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .atomic import atomic_write

if TYPE_CHECKING:
    from anndata import AnnData

EDIT_LOG_KEY = "carspatial_edit_log"
COLUMNS = ["time", "reviewer", "action", "cell_ids", "column", "old", "new", "note"]


def default_reviewer() -> str:
    """Return the OS user name (what the GUI proposes when it asks for the reviewer once).

    Returns
    -------
    str
        The login name, or ``"unknown"`` when there is none (containers).
    """
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # pragma: no cover - no login name (containers)
        return "unknown"


def _json(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (np.integer,)):
        value = int(value)
    if isinstance(value, (np.floating,)):
        value = float(value)
    return json.dumps(value, default=str)


def record(adata: AnnData, action: str, *, cell_ids: Iterable[int] = (), column: str = "", old: Any = None,
           new: Any = None, note: str = "", reviewer: str | None = None, time: str | None = None) -> dict:
    """Append one audit row to ``adata.uns[EDIT_LOG_KEY]`` and return it.

    Parameters
    ----------
    adata
        The cell table (its audit trail is extended in place).
    action
        What was done (``assign``, ``exclude``, ``add_roi``, ...).
    cell_ids
        Mask labels of the cells the action touched.
    column
        The ``obs`` column changed, if any.
    old
        Value before (JSON-encoded in the row).
    new
        Value after (JSON-encoded in the row).
    note
        Free text.
    reviewer
        Who did it; default :func:`default_reviewer`.
    time
        ISO timestamp; default now (UTC, seconds).

    Returns
    -------
    dict
        The row written (``time``, ``reviewer``, ``action``, ``cell_ids``, ``column``, ``old``,
        ``new``, ``note``).
    """
    ids = np.asarray(list(cell_ids) if not isinstance(cell_ids, np.ndarray) else cell_ids).ravel()
    ids = ids.astype(np.int64).tolist() if ids.size else []   # Python ints, without a per-cell int() call
    row = {
        "time": time or datetime.now(UTC).isoformat(timespec="seconds"),
        "reviewer": reviewer or default_reviewer(),
        "action": str(action),
        "cell_ids": json.dumps(ids),
        "column": str(column or ""),
        "old": _json(old),
        "new": _json(new),
        "note": str(note or ""),
    }
    log = get_log(adata)
    log = pd.concat([log, pd.DataFrame([row], columns=COLUMNS)], ignore_index=True)
    log.index = log.index.astype(str)
    adata.uns[EDIT_LOG_KEY] = log
    return row


def get_log(adata: AnnData) -> pd.DataFrame:
    """Return the audit trail as a DataFrame.

    Parameters
    ----------
    adata
        The cell table.

    Returns
    -------
    pandas.DataFrame
        One row per action, all columns as strings; empty with the right columns when there is
        no trail.
    """
    log = adata.uns.get(EDIT_LOG_KEY)
    if log is None:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in COLUMNS})
    if not isinstance(log, pd.DataFrame):
        log = pd.DataFrame(log)
    for c in COLUMNS:
        if c not in log:
            log[c] = ""
    return log[COLUMNS].astype(str)


def export_csv(adata, path) -> None:
    """Write the audit trail as CSV (UTF-8)."""
    df = get_log(adata)
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def cell_ids_of(row) -> list[int]:
    """Decode the ``cell_ids`` column of one audit row."""
    return [int(i) for i in json.loads(row["cell_ids"] or "[]")]
