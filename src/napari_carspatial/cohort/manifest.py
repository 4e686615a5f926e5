"""Cohort manifest: which samples belong to a trial cohort, with their clinical annotations.

A manifest is a CSV (one row per sample) or a YAML file (``samples:`` list of mappings, optional
top-level ``trial`` / ``indication`` applied to every sample that does not set them)::

    sample,patient,trial,indication,timepoint,response,crs_grade,icans_grade,image,mask,table,regions
    P01-pre,P01,CART-PANC-01,pancreatic adenocarcinoma,pre,CR,2,0,P01-pre.ome.tif,P01-pre_mask.tif,P01-pre.h5ad,
    P01-post,P01,CART-PANC-01,pancreatic adenocarcinoma,post,CR,2,0,...

Columns
-------
``sample`` (alias ``sample_id``)
    Unique sample id (required).
``patient``
    Patient id (required); pre/post samples of one patient are paired.
``timepoint``
    ``pre``, ``post`` or ``day N`` (``d14``, ``D+14``, ``day 14`` all read as ``day 14``) (required).
``trial``, ``indication``
    Free text (optional).
``response``
    Best overall response: ``CR``, ``PR``, ``SD``, ``PD`` (full words accepted) or empty. One
    value per patient. Responders are CR/PR, non-responders SD/PD.
``crs_grade``, ``icans_grade``
    Toxicity grades 0-4 or empty.
``pixel_size_um``
    µm per level-0 pixel of the sample's image and table (optional; overrides the files' and the
    analysis config's ``pixel_size_um``): for TIFFs that do not store it.
``image``, ``mask``, ``table``, ``regions``
    Paths, relative ones resolved against the manifest's folder. A sample needs a table, or an
    image and a mask (then it is quantified). ``regions`` is an optional GeoJSON file. A
    multi-image table (cytomapper / steinbock ``cells.csv``) is cut to the sample's rows: those of
    its image or mask, else of the image named by ``image_name`` (optional; default: the sample id),
    compared as file names without suffix.

Headless: no napari, no Qt.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import SampleError
from ..model.atomic import atomic_write

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("sample", "patient", "timepoint")
CLINICAL_COLUMNS = ("patient", "trial", "indication", "timepoint", "response", "responder", "crs_grade",
                    "icans_grade")
PATH_COLUMNS = ("image", "mask", "table", "regions")
OPTIONAL_COLUMNS = ("trial", "indication", "response", "crs_grade", "icans_grade", "pixel_size_um") + PATH_COLUMNS
RESPONSES = ("CR", "PR", "SD", "PD")
RESPONDERS = ("CR", "PR")
_RESPONSE_ALIASES = {
    "cr": "CR", "complete response": "CR", "complete remission": "CR",
    "pr": "PR", "partial response": "PR", "partial remission": "PR",
    "sd": "SD", "stable disease": "SD",
    "pd": "PD", "progressive disease": "PD", "progression": "PD",
}
_ALIASES = {"sample_id": "sample", "id": "sample", "patient_id": "patient", "crs": "crs_grade",
            "icans": "icans_grade", "best_response": "response"}
_DAY = re.compile(r"^(?:day|d)\s*[+]?\s*(-?\d+)$", re.IGNORECASE)


class ManifestError(SampleError):
    """The manifest is invalid; the message lists every problem (file, row/sample, what)."""

    def __init__(self, problems: list[str], *, path):
        self.problems = list(problems)
        hint = "(see docs/cohorts.md for the manifest columns)"
        if len(problems) == 1:  # one line: file, problem, hint
            super().__init__(f"cohort manifest: {problems[0]}.", path=path, hint=hint)
            return
        head = f"{len(problems)} problems in the cohort manifest:"
        super().__init__(head + "\n  - " + "\n  - ".join(problems), path=path, hint="\n" + hint)


def normalize_timepoint(value: object) -> tuple[str, int] | None:
    """Canonical timepoint and its day.

    ``pre`` -> ("pre", 0), ``post`` -> ("post", 1), ``d14`` / ``day 14`` / ``D+14`` -> ("day 14", 14).

    Parameters
    ----------
    value
        The manifest's timepoint cell.

    Returns
    -------
    tuple of (str, int) or None
        The canonical name and its day; ``None`` when not recognised.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    s = str(value).strip()
    low = s.lower()
    if low in ("pre", "baseline", "screening", "pre-infusion", "before"):
        return "pre", 0
    if low in ("post", "post-infusion", "after", "on-treatment", "on"):
        return "post", 1
    m = _DAY.match(low)
    if m:
        d = int(m.group(1))
        return f"day {d}", d
    return None


def normalize_response(value: object) -> str | None | bool:
    """Canonical response code: ``CR``/``PR``/``SD``/``PD`` (full words accepted).

    Parameters
    ----------
    value
        The manifest's response cell.

    Returns
    -------
    str, None or bool
        The code; ``None`` when empty; ``False`` when not recognised.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    s = str(value).strip()
    if not s or s.lower() in ("na", "n/a", "nan", "none", "ne", "unknown"):
        return None
    return _RESPONSE_ALIASES.get(s.lower(), False)


def _grade(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None, True
    s = str(value).strip()
    if s == "" or s.lower() in ("na", "nan", "none"):
        return None, True
    s = re.sub(r"^(grade|g)\s*", "", s, flags=re.IGNORECASE)
    try:
        f = float(s)
    except ValueError:
        return None, False
    if f != int(f) or not 0 <= f <= 4:
        return None, False
    return int(f), True


@dataclass
class Manifest:
    """A validated cohort manifest.

    Attributes
    ----------
    path
        The manifest file.
    table
        One row per sample, indexed by ``sample`` (in file order), with normalised ``timepoint``,
        ``day``, ``response``, ``responder`` (bool or NA), grades (nullable Int64) and absolute
        paths (``None`` where not given).
    warnings
        Non-fatal findings (e.g. a patient without a pre/post pair).
    """

    path: Path
    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def samples(self) -> list[str]:
        """The sample ids in manifest order."""
        return list(self.table.index)

    def paths(self, sample: str) -> dict[str, str | None]:
        """Absolute input paths of one sample.

        Parameters
        ----------
        sample
            Sample id.

        Returns
        -------
        dict
            ``{"image", "mask", "table", "regions"}``: absolute paths, or ``None`` where not given.
        """
        row = self.table.loc[sample]
        return {k: (row[k] if isinstance(row[k], str) and row[k] else None) for k in PATH_COLUMNS}

    def clinical(self) -> pd.DataFrame:
        """Clinical columns per sample, for joining onto results.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``sample``.
        """
        cols = [c for c in CLINICAL_COLUMNS + ("day",) if c in self.table.columns]
        return self.table[cols].copy()

    def pairs(self) -> pd.DataFrame:
        """One row per patient with both a ``pre`` and a post sample.

        The post sample is the one marked ``post``, else the earliest ``day N`` with N > 0
        (:func:`sample_phases`, the rule the cohort statistics pair by).

        Returns
        -------
        pandas.DataFrame
            Columns ``patient, pre, post``.
        """
        phase = sample_phases(self.table)
        rows = []
        for pat, g in self.table.groupby("patient", sort=False):
            pre = g.index[phase.loc[g.index] == "pre"]
            post = g.index[phase.loc[g.index] == "post"]
            if len(pre) == 1 and len(post) == 1:
                rows.append({"patient": pat, "pre": pre[0], "post": post[0]})
        return pd.DataFrame(rows, columns=["patient", "pre", "post"])

    def row_dict(self, sample: str) -> dict:
        """One sample's row as a plain-Python dict (picklable, for workers).

        Parameters
        ----------
        sample
            Sample id.

        Returns
        -------
        dict
            Column -> value (``sample`` included; NaN as ``None``).
        """
        r = self.table.loc[sample].to_dict()
        r["sample"] = sample
        return {k: (None if (v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v) for k, v in r.items()}


def sample_phases(table: pd.DataFrame) -> pd.Series:
    """``"pre"``, ``"post"`` or ``""`` per sample: the phase each sample has in pre/post pairing.

    Per patient, the ``pre`` sample is ``"pre"``; the post sample is the one marked ``post``, else
    the earliest ``day N`` with N > 0; every other sample (a later day, a second biopsy) is ``""``.

    Parameters
    ----------
    table
        Indexed by sample, with ``patient``, ``timepoint`` (normalised: ``pre``, ``post``,
        ``day N``) and ``day`` columns (as :attr:`Manifest.table`).

    Returns
    -------
    pandas.Series
        The phase of each sample, same index as ``table``.
    """
    out = pd.Series("", index=table.index, dtype=object)
    for _, g in table.groupby("patient", sort=False):
        out[g.index[g["timepoint"] == "pre"]] = "pre"
        post = _post_of(g)
        if post is not None:
            out[post] = "post"
    return out


def _post_of(g: pd.DataFrame) -> str | None:
    post = g.index[g["timepoint"] == "post"]
    if len(post) == 1:
        return post[0]
    days = g[(g["day"] > 0) & g["timepoint"].str.startswith("day")]
    if len(post) == 0 and len(days):
        return days["day"].astype(int).idxmin()
    return None


def _read_raw(path: Path) -> pd.DataFrame:
    suf = path.suffix.lower()
    if suf in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except Exception as err:  # noqa: BLE001 - yaml.YAMLError and decode errors
            first = " ".join(str(err).strip().splitlines()[:3])
            raise SampleError(f"not valid YAML ({first}).", path=path) from None
        defaults = {}
        if isinstance(data, dict):
            defaults = {k: v for k, v in data.items() if k != "samples" and not isinstance(v, (list, dict))}
            data = data.get("samples")
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise SampleError("a YAML manifest is a list of samples, or a mapping with a 'samples:' list "
                              "(each sample a mapping of column: value).", path=path)
        df = pd.DataFrame([{**defaults, **d} for d in data])
    elif suf in (".csv", ".tsv", ".txt"):
        sep = "," if suf == ".csv" else "\t"
        try:
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True, comment=None)
        except pd.errors.EmptyDataError:
            raise SampleError("the manifest file is empty (no header, no samples).", path=path,
                              hint="The first line names the columns: sample,patient,timepoint,table,...") from None
        except UnicodeDecodeError as err:
            raise SampleError(f"the manifest is not UTF-8 text ({err.reason} at byte {err.start}).", path=path,
                              hint="Save it as CSV UTF-8.") from None
        except pd.errors.ParserError as err:
            first = " ".join(str(err).split())
            raise SampleError(f"cannot parse the CSV ({first}).", path=path) from None
        other = next((c for c in (";", "\t", ",") if c != sep and len(df.columns) == 1 and c in str(df.columns[0])),
                     None)
        if other:
            raise SampleError(f"the manifest looks {'tab' if other == chr(9) else repr(other)}-separated (header "
                              f"{str(df.columns[0])[:60]!r}); a {suf} manifest is "
                              f"{'comma' if sep == ',' else 'tab'}-separated.", path=path,
                              hint="Save it as CSV (comma-separated), or name it .tsv for tabs.")
    else:
        raise SampleError(f"unknown manifest type {path.suffix or '(no suffix)'!r}.", path=path,
                          hint="Use .csv, .tsv, .yaml or .yml.")
    df.columns = [_ALIASES.get(str(c).strip().lower(), str(c).strip().lower()) for c in df.columns]
    return df


def read_manifest(path: str | os.PathLike, *, check_files: bool = True) -> Manifest:
    """Read and validate a cohort manifest (CSV / TSV / YAML).

    Parameters
    ----------
    path
        The manifest. Relative sample paths are resolved against its folder.
    check_files
        Check that every referenced file exists.

    Returns
    -------
    Manifest

    Raises
    ------
    ManifestError
        Listing every problem found: missing columns, empty or duplicate sample ids, unknown
        timepoints or response codes, bad toxicity grades, missing files, a patient with two
        ``pre`` (or two ``post``) samples, a patient with conflicting response codes.
    """
    path = Path(path)
    if not path.is_file():
        raise SampleError("cohort manifest not found.", path=path)
    df = _read_raw(path)
    if df.empty:
        raise ManifestError(["the manifest has no samples"], path=path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError([(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                             f"(found: {', '.join(map(str, df.columns))})")], path=path)
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df[c] = None
    folder = path.parent
    problems: list[str] = []
    warnings: list[str] = []
    rows = []
    seen: dict[str, int] = {}
    first_line = 2 if path.suffix.lower() in (".csv", ".tsv", ".txt") else 1  # header is line 1

    for i, rec in enumerate(df.to_dict("records")):
        sid = "" if rec["sample"] is None else str(rec["sample"]).strip()
        where = f"row {i + first_line}" + (f" (sample {sid!r})" if sid else "")
        if not sid:
            problems.append(f"{where}: empty sample id")
            continue
        if sid in seen:
            problems.append(f"{where}: duplicate sample id (first on row {seen[sid] + first_line})")
            continue
        seen[sid] = i
        out = {"sample": sid}
        pat = "" if rec["patient"] is None else str(rec["patient"]).strip()
        if not pat:
            problems.append(f"{where}: empty patient")
        out["patient"] = pat
        tp = normalize_timepoint(rec["timepoint"])
        if tp is None:
            problems.append(f"{where}: unknown timepoint {rec['timepoint']!r} (expected pre, post or day N)")
            tp = (str(rec["timepoint"]), -1)
        out["timepoint"], out["day"] = tp
        resp = normalize_response(rec["response"])
        if resp is False:
            problems.append(f"{where}: unknown response code {rec['response']!r} (expected one of "
                            f"{', '.join(RESPONSES)} or empty)")
            resp = None
        out["response"] = resp
        out["responder"] = (resp in RESPONDERS) if resp else None
        for g in ("crs_grade", "icans_grade"):
            val, ok = _grade(rec[g])
            if not ok:
                problems.append(f"{where}: {g} must be a grade 0-4 or empty, got {rec[g]!r}")
            out[g] = val
        px = rec["pixel_size_um"]
        px = "" if px is None or (isinstance(px, float) and np.isnan(px)) else str(px).strip()
        out["pixel_size_um"] = None
        if px:
            try:
                out["pixel_size_um"] = float(px)
            except ValueError:
                out["pixel_size_um"] = float("nan")
            if not (np.isfinite(out["pixel_size_um"]) and out["pixel_size_um"] > 0):
                problems.append(f"{where}: pixel_size_um must be a positive number of µm per pixel, got {px!r}")
                out["pixel_size_um"] = None
        for c in ("trial", "indication"):
            v = rec[c]
            out[c] = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
        for c in PATH_COLUMNS:
            v = rec[c]
            v = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
            if not v:
                out[c] = None
                continue
            p = Path(v).expanduser()
            p = p if p.is_absolute() else (folder / p)
            p = Path(os.path.normpath(p))
            if check_files and not p.exists():
                problems.append(f"{where}: {c} file not found: {p}")
            out[c] = os.fspath(p)
        if not out["table"] and not (out["image"] and out["mask"]):
            problems.append(f"{where}: needs a table, or an image and a mask (to quantify)")
        for k, v in rec.items():  # keep extra columns (site, lesion, ...)
            if k not in out and k not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
                out[k] = v
        rows.append(out)

    table = pd.DataFrame(rows)
    if not table.empty:
        for pat, g in table.groupby("patient", sort=False):
            if not pat:
                continue
            for tpn in ("pre", "post"):
                dup = g.loc[g["timepoint"] == tpn, "sample"].tolist()
                if len(dup) > 1:
                    problems.append(f"patient {pat!r}: {len(dup)} '{tpn}' samples ({', '.join(dup)}); pre/post "
                                    "pairing needs one each (mark extra biopsies as 'day N')")
            days = g.loc[g["timepoint"].str.startswith("day"), ["sample", "day"]]
            dupd = days[days["day"].duplicated(keep=False)]
            if len(dupd):
                problems.append(f"patient {pat!r}: several samples at the same day ({', '.join(dupd['sample'])})")
            resp = {r for r in g["response"] if r}
            if len(resp) > 1:
                problems.append(f"patient {pat!r}: conflicting response codes {sorted(resp)} (one per patient)")
            elif resp:  # fill a patient's missing response from its other samples
                table.loc[g.index, "response"] = resp.pop()
            has_pre = (g["timepoint"] == "pre").any()
            has_post = (g["timepoint"] == "post").any() or (g["day"] > 0).any()
            if not (has_pre and has_post):
                warnings.append(f"patient {pat!r} has no pre/post pair (samples: {', '.join(g['sample'])}); "
                                "it is left out of paired tests")
        table["responder"] = [(r in RESPONDERS) if r else None for r in table["response"]]
    if problems:
        raise ManifestError(problems, path=path)
    table = table.set_index("sample", drop=True)
    table.index.name = "sample"
    for g in ("crs_grade", "icans_grade"):
        table[g] = pd.array(table[g].tolist(), dtype="Int64")
    table["day"] = table["day"].astype(int)
    for w in warnings:
        log.warning("%s: %s", path, w)
    return Manifest(path=path.resolve(), table=table, warnings=warnings)


def write_manifest(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write manifest rows as CSV, atomically.

    Parameters
    ----------
    rows
        Dicts with the manifest columns (``sample``, ``patient``, ``timepoint``, ``image``, ...).
    path
        The CSV to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    cols = list(REQUIRED_COLUMNS[:2]) + ["trial", "indication", "timepoint", "response", "crs_grade",
                                        "icans_grade"] + list(PATH_COLUMNS)
    extra = [k for r in rows for k in r if k not in cols]
    df = pd.DataFrame(rows, columns=cols + list(dict.fromkeys(extra)))
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
