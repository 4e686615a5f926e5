"""The audit trail as a reviewer reads it: plain values, cell ids, local times with the zone.

The edit log (:mod:`napari_carspatial.model.edit_log`) stores JSON values and UTC times, which is
right for files and wrong for eyes (``"CAR T"`` in quotes, ``null``, ``2024-05-01T12:03:00+00:00``).
:func:`display_rows` turns each row into short texts plus the full values for tooltips. No Qt.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pandas as pd

#: a missing value
MISSING = "–"
#: cell ids written out in the table cell (all of them go to the tooltip)
SHOWN_IDS = 4


def plain(value) -> str:
    """A stored JSON value as plain text: strings unquoted, ``null`` as "–", lists summarised."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, TypeError):
            return value or MISSING
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if not value:
            return MISSING
        # an assign of 10^4 cells stores 10^4 old values, mostly a handful of distinct ones:
        # turn each distinct value into text once (a failed json.loads per cell cost 0.17 s)
        counts: Counter = Counter()
        memo: dict = {}
        for v in value:
            try:
                key = (type(v), v)
                text = memo[key] if key in memo else memo.setdefault(key, plain(v))
            except TypeError:  # an unhashable value (a nested list)
                text = plain(v)
            counts[text] += 1
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{v} ×{n}" if n > 1 else v for v, n in counts.most_common())
    if isinstance(value, float) and value != value:
        return MISSING
    return str(value)


def cell_ids(value) -> list[int]:
    """The cell ids of an audit row (a JSON list)."""
    try:
        ids = json.loads(value) if isinstance(value, str) else list(value or [])
    except (ValueError, TypeError):
        return []
    return [int(i) for i in ids if isinstance(i, (int, float))]


def ids_text(ids: list[int], shown: int = SHOWN_IDS) -> str:
    """``"3 cells: 12, 15, 18"``; more than ``shown`` ids end with "…"."""
    if not ids:
        return MISSING
    head = ", ".join(str(i) for i in ids[:shown]) + (", …" if len(ids) > shown else "")
    return f"{len(ids):,} {'cell' if len(ids) == 1 else 'cells'}: {head}"


def local_time(iso: str, tz=None) -> tuple[str, str]:
    """(short local time ``HH:MM:SS``, full local date-time with the zone) of a stored UTC time."""
    try:
        t = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso), str(iso)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    local = t.astimezone(tz)
    return local.strftime("%H:%M:%S"), local.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)")


def zone_name(tz=None) -> str:
    """The local time zone's abbreviation (``CEST``, ``UTC``), for the time column's header."""
    return datetime.now(UTC).astimezone(tz).strftime("%Z") or "local"


#: the columns of :func:`display_rows`
COLUMNS = ("time", "reviewer", "action", "cells", "change", "note")


def display_rows(audit: pd.DataFrame, tz=None) -> list[dict]:
    """One dict per audit row: ``text`` (column -> short text) and ``tip`` (column -> full text).

    ``change`` reads ``column: old → new`` in plain values.
    """
    out = []
    for row in audit.to_dict("records"):
        short, full = local_time(row.get("time", ""), tz)
        ids = cell_ids(row.get("cell_ids"))
        old, new = plain(row.get("old")), plain(row.get("new"))
        col = row.get("column") or ""
        change = f"{col}: {old} → {new}" if col else f"{old} → {new}"
        text = {"time": short, "reviewer": str(row.get("reviewer", "")), "action": str(row.get("action", "")),
                "cells": ids_text(ids), "change": change, "note": str(row.get("note") or "")}
        tip = dict(text)
        tip["time"] = full
        tip["cells"] = ", ".join(str(i) for i in ids) if ids else MISSING
        out.append({"text": text, "tip": tip, "cell_ids": ids})
    return out
