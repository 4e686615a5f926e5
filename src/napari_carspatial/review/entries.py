"""The review project's entries: statuses, reviewer ids, sample codes, due dates, and one
dataclass per project-file record (:class:`Reviewer`, :class:`ReadEntry`,
:class:`AdjudicationEntry`, :class:`SampleEntry`). The project (:mod:`.project`) re-exports them.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from ..model import SampleError

FORMAT = "napari-carspatial review project"
FORMAT_VERSION = 1
PROJECT_FILE = "project.yaml"

NOT_STARTED, IN_PROGRESS, DONE, ADJUDICATED = "not_started", "in_progress", "done", "adjudicated"
#: statuses of a reader's entry
READ_STATUSES = (NOT_STARTED, IN_PROGRESS, DONE)
#: statuses of the adjudicator's entry
ADJUDICATION_STATUSES = (NOT_STARTED, IN_PROGRESS, ADJUDICATED)
#: every status (per sample and reviewer)
STATUSES = (NOT_STARTED, IN_PROGRESS, DONE, ADJUDICATED)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    from ..io.write import sha256_file

    return sha256_file(path)


def check_reviewer_id(rid: str, *, path=None) -> str:
    """A reviewer id is a short file-name-safe word (letters, digits, ``.``, ``_``, ``-``)."""
    rid = str(rid).strip()
    if not _ID.match(rid):
        raise SampleError(f"reviewer id {rid!r} is not allowed; use letters, digits, '.', '_' or '-' "
                          "(it names the reviewer's files).", path=path)
    return rid


def sample_code(sample: str, salt: str, *, length: int = 6) -> str:
    """The blinded code of a sample: ``RV-`` + base32 of HMAC-SHA256(salt, sample id).

    Stable for a project (same salt), unrelated to the sample's name, patient, arm, timepoint,
    outcome or its position in the manifest.

    Parameters
    ----------
    sample
        The sample id.
    salt
        The project's secret salt.
    length
        Characters after ``RV-``.

    Returns
    -------
    str
        ``RV-`` and ``length`` base32 characters.
    """
    digest = hmac.new(salt.encode("utf-8"), str(sample).encode("utf-8"), hashlib.sha256).digest()
    n = int.from_bytes(digest[:10], "big")
    chars = []
    for _ in range(length):
        n, r = divmod(n, 32)
        chars.append(_CODE_ALPHABET[r])
    return "RV-" + "".join(chars)


def _codes(samples: list[str], salt: str, taken: set[str] | None = None) -> dict[str, str]:
    taken = set(taken or ())
    out = {}
    for s in samples:
        length = 6
        code = sample_code(s, salt, length=length)
        while code in taken:
            length += 2
            code = sample_code(s, salt, length=length)
        taken.add(code)
        out[s] = code
    return out


def _parse_due(value, *, path=None, where: str = "") -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise SampleError(f"{where}due date {value!r} is not a date (YYYY-MM-DD).", path=path) from None


# =========================================================================== entries
@dataclass
class Reviewer:
    """A reviewer of a project.

    Attributes
    ----------
    id
        Short id (in file names and audit rows).
    name
        Full name (shown).
    """
    id: str
    name: str = ""


@dataclass
class ReadEntry:
    """One read of one sample: read number (1 = first, 2 = second), reviewer and status.

    Attributes
    ----------
    read
        1 (first read) or 2 (second read).
    reviewer
        The reviewer id.
    status
        ``not_started``, ``in_progress`` or ``done``.
    started
        When the read started (UTC ISO 8601).
    finished
        When it was finished (UTC ISO 8601).
    progress
        Fraction of cells reviewed (0-1), or ``None``.
    """

    read: int
    reviewer: str
    status: str = NOT_STARTED
    started: str | None = None
    finished: str | None = None
    progress: float | None = None


@dataclass
class AdjudicationEntry:
    """The adjudication of one sample: adjudicator and status.

    Attributes
    ----------
    reviewer
        The adjudicator id, or ``None`` before one is assigned.
    status
        ``not_started``, ``in_progress`` or ``adjudicated``.
    started
        When it started (UTC ISO 8601).
    finished
        When it was finished (UTC ISO 8601).
    """
    reviewer: str | None = None
    status: str = NOT_STARTED
    started: str | None = None
    finished: str | None = None


@dataclass
class SampleEntry:
    """One sample of a project: its blinded code, due date, reads and adjudication.

    Attributes
    ----------
    sample
        The sample id (from the manifest).
    code
        The blinded code (``RV-XXXXXX``).
    due
        Due date (``YYYY-MM-DD``), or ``None``.
    reads
        The two reads.
    adjudication
        The adjudication.
    source
        The manifest row the sample came from.
    """
    sample: str
    code: str
    due: str | None = None
    reads: list[ReadEntry] = field(default_factory=list)
    adjudication: AdjudicationEntry = field(default_factory=AdjudicationEntry)
    source: dict | None = None

    def read_of(self, reviewer: str) -> ReadEntry | None:
        """Return the read of ``reviewer``, or ``None``.

        Parameters
        ----------
        reviewer
            A reviewer id.

        Returns
        -------
        ReadEntry or None
            That reviewer's read of this sample.
        """
        return next((r for r in self.reads if r.reviewer == reviewer), None)

    @property
    def readers(self) -> list[str]:
        return [r.reviewer for r in sorted(self.reads, key=lambda r: r.read)]

    @property
    def reads_done(self) -> bool:
        return len(self.reads) == 2 and all(r.status == DONE for r in self.reads)

    @property
    def status(self) -> str:
        """Derived sample status."""
        if self.adjudication.status == ADJUDICATED:
            return ADJUDICATED
        if self.reads_done:
            return DONE
        if any(r.status != NOT_STARTED for r in self.reads) or self.adjudication.status != NOT_STARTED:
            return IN_PROGRESS
        return NOT_STARTED


class RevealError(SampleError):
    """A read was asked for before both reads of the sample are done (independent reads).

    Parameters
    ----------
    problem
        What is wrong.
    path
        The file or folder at fault.
    hint
        How to fix it.
    """
