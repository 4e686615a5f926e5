"""One manifest row of a batch: its results folder (:func:`safe_name`, :func:`sample_dir`), whether
it is finished (:func:`is_done`), its pixel size (:func:`row_pixel_size`), and reading it
(:func:`read_cohort_sample`; review projects read their samples the same way) and measuring it
when it has no table (:func:`quantify_sample`).

Headless: no napari, no Qt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..model import SampleError
from .config import QUANTIFY_OPTIONS, BatchConfig

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anndata import AnnData

    from ..model import Sample

log = logging.getLogger(__name__)


def safe_name(sample: str) -> str:
    """Folder name of a sample id: injective, so two samples never share a results folder.

    Characters a file system may not take (path separators, spaces, ...) become ``_``; when
    anything was replaced, a short hash of the exact id is appended (``P02/post`` ->
    ``P02_post~1b0e7d3a``, while ``P02_post`` stays ``P02_post``).

    Parameters
    ----------
    sample
        Sample id.

    Returns
    -------
    str
    """
    sid = str(sample)
    s = re.sub(r"[^\w.\-+@=]+", "_", sid, flags=re.UNICODE).strip("._")
    if s != sid or not s:
        s = f"{s or 'sample'}~{hashlib.sha1(sid.encode('utf-8')).hexdigest()[:8]}"
    return s


def sample_dir(out: str | os.PathLike, sample: str) -> Path:
    """The results folder of one sample: ``OUT/samples/<safe_name(sample)>``.

    Parameters
    ----------
    out
        The batch results folder.
    sample
        Sample id.

    Returns
    -------
    pathlib.Path
    """
    return Path(out) / "samples" / safe_name(sample)


def check_folder_names(samples: Iterable[str], *, path: str | os.PathLike | None = None) -> None:
    """Refuse sample ids whose results folders would collide on a case-insensitive file system.

    (macOS, Windows, many shares): ``P01-pre`` and ``p01-pre``; the error names both.

    Parameters
    ----------
    samples
        Sample ids.
    path
        The manifest (for the message).

    Raises
    ------
    SampleError
        Two ids differ only in case.
    """
    seen: dict[str, str] = {}
    clashes = []
    for sid in samples:
        key = safe_name(sid).casefold()
        if key in seen:
            clashes.append(f"{seen[key]!r} and {sid!r}")
        else:
            seen[key] = sid
    if clashes:
        raise SampleError(f"sample ids {'; '.join(clashes)} differ only in upper/lower case, so their results "
                          "folders would be the same folder on macOS / Windows.", path=path,
                          hint="Give them ids that differ in more than case.")


def input_fingerprint(row: dict) -> str:
    """Hash of the sample's input paths, sizes and modification times (and the row's pixel size).

    Parameters
    ----------
    row
        A manifest row (:meth:`Manifest.row_dict`).

    Returns
    -------
    str
        16 hex digits.
    """
    parts = []
    for k in ("image", "mask", "table", "regions"):
        p = row.get(k)
        if p and os.path.exists(p):
            st = os.stat(p)
            parts.append(f"{k}={p}:{st.st_size}:{int(st.st_mtime_ns)}")
        else:
            parts.append(f"{k}={p}")
    for k in ("pixel_size_um", "image_name"):  # row values that change what is analysed
        if row.get(k) is not None:
            parts.append(f"{k}={row[k]}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def is_done(out: str | os.PathLike, row: dict, cfg: BatchConfig) -> bool:
    """Whether the sample finished with the same inputs and configuration.

    Parameters
    ----------
    out
        The batch results folder.
    row
        The sample's manifest row.
    cfg
        The batch config.

    Returns
    -------
    bool
    """
    marker = sample_dir(out, row["sample"]) / "done.json"
    if not marker.is_file():
        return False
    try:
        d = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if d.get("sample") != row["sample"]:
        return False
    same = d.get("config") == cfg.fingerprint() and d.get("inputs") == input_fingerprint(row)
    if not same:
        log.info("%s: inputs or configuration changed since it finished; recomputing", row["sample"])
    return same


def row_pixel_size(row: dict, default: float | None = None) -> tuple[float | None, str | None]:
    """The pixel size a manifest row gives, else the config's, with where it came from.

    Parameters
    ----------
    row
        A manifest row (its ``pixel_size_um`` column).
    default
        The config's ``pixel_size_um``.

    Returns
    -------
    tuple
        ``(µm, "manifest pixel_size_um" | "config pixel_size_um")``; ``(None, None)`` when neither
        gives one (the files' is used).
    """
    v = row.get("pixel_size_um")
    if v is not None and not (isinstance(v, float) and np.isnan(v)):
        return float(v), "manifest pixel_size_um"
    if default is not None:
        return float(default), "config pixel_size_um"
    return None, None


def read_cohort_sample(row: dict, *, pixel_size_um: float | None = None, measure: bool = True) -> Sample:
    """Read one manifest row as a Sample named by its sample id.

    ``image`` + ``mask`` + ``table``, or ``table`` [+ ``mask``]. Table and mask ids are checked as
    :func:`~napari_carspatial.io.read_sample` checks them: a table of another image is refused,
    never analysed.

    Parameters
    ----------
    row
        A manifest row (:meth:`Manifest.row_dict`).
    pixel_size_um
        The config's pixel size; the row's ``pixel_size_um`` wins over it, and either over the files'.
    measure
        ``False``: a row with image + mask and no table is read without measuring its cells (the
        batch measures them with the config's options).

    Returns
    -------
    Sample
    """
    from ..io import read_sample, read_table
    from ..model import Sample
    from ..model import pixel_size_um as table_pixel_size

    px, _ = row_pixel_size(row, pixel_size_um)
    if row.get("image"):
        s = read_sample(row["image"], mask=row.get("mask"), table=row.get("table"), name=row["sample"],
                        pixel_size_um=px, measure=measure)
        if isinstance(s, list):
            if len(s) != 1:
                raise SampleError(f"{len(s)} samples in this folder; give one image per manifest row.",
                                  path=row["image"])
            s = s[0]
    else:
        # a multi-image table (cytomapper / steinbock cells.csv) keeps only this sample's rows: those
        # of its mask, else of the image its ``image_name`` column or its sample id names
        keys = {"mask": row["mask"]} if row.get("mask") else {"image": row.get("image_name") or row["sample"]}
        try:
            adata = read_table(row["table"], pixel_size_um=px, **keys)
        except SampleError as err:
            if "no table row belongs to" not in err.problem:
                raise
            raise SampleError(err.problem, path=err.path,
                              hint="In the manifest, give the sample an image_name column naming its image as the "
                                   "table does, or its mask.") from None
        s = Sample(name=row["sample"], table=adata, pixel_size_um=px or table_pixel_size(adata))
        if row.get("mask"):
            from ..io import read_mask

            s.labels = read_mask(row["mask"])
    return s


def quantify_sample(sample: Sample, options: dict) -> AnnData:
    """Measure a sample without a table with the config's ``quantify:`` options.

    Runs in this task's thread; the table is validated as :func:`read_sample` validates a measured
    table, and stored as ``sample.table``.

    Parameters
    ----------
    sample
        A sample with an image and a mask.
    options
        :data:`~napari_carspatial.cohort.config.QUANTIFY_OPTIONS`.

    Returns
    -------
    anndata.AnnData
        The measured table.
    """
    from ..analysis.quantify import quantify

    if sample.labels is None or not sample.image:
        raise SampleError("the sample has no cell table, and quantifying needs both an image and a mask.",
                          path=sample.paths.get("image") or sample.paths.get("mask"))
    opts = {"channel_names": list(sample.channel_names), "pixel_size_um": sample.pixel_size_um,
            "scheduler": "synchronous", "solidity": False, "region": f"{sample.name}_labels"}
    opts.update(options)
    log.info("%s: no cell table, quantifying %d channels (%s)", sample.name, len(sample.channel_names),
             _options_text(options) or "defaults")
    try:
        sample.table = quantify(sample.image, sample.labels, **opts)
    except ValueError as err:
        raise SampleError(f"cannot measure the cells ({err}).", path=sample.paths.get("mask"),
                          hint=f"Check the config's quantify: options ({', '.join(QUANTIFY_OPTIONS)}).") from None
    sample.metadata["table_source"] = f"measured in the batch (quantify: {_options_text(options) or 'defaults'})"
    sample.validate(check_ids=False)   # ids come from this very mask
    return sample.table


def _options_text(options: dict) -> str:
    return ", ".join(f"{k}={options[k]!r}" for k in sorted(options))
