"""Editable, chunked mask store (zarr): region write-back, pyramid updates, corrected-mask saving.

Segmentation correction never touches the original mask. Edits go into a **working copy**, a
zarr group (OME-Zarr / NGFF 0.5 labels multiscale) next to the original::

    <mask file name>.carspatial-edit.zarr/
        0/  1/  2/ ...      level 0 (full resolution) and nearest-neighbour levels (x2 each)
        zarr.json           attrs: ome.multiscales, carspatial.{role, source, edit_count, max_id}

* :meth:`MaskStore.open_working_copy` creates it chunk by chunk from any mask (TIFF, OME-Zarr,
  a dask array), or reopens it when it exists; masks of any size, memory bounded by a few chunks.
* :meth:`MaskStore.read` / :meth:`MaskStore.write` move full-resolution regions in and out; a
  write updates the lower levels for that region only (``level_k = level_0[::2**k, ::2**k]``,
  the same striding the readers use), so the displayed pyramid is recomputed only where the
  edit is.
* :meth:`MaskStore.pyramid` returns fresh lazy dask levels (new names, so no cache serves
  stale tiles) for napari.
* :func:`save_corrected_mask` writes ``<stem>.corrected.zarr`` beside the original (never over
  it), atomically, as an NGFF 0.5 labels image (axis units and µm scale) through ome-zarr-py's
  writer, with provenance: source path, SHA-256 of the
  source, number of edits, time and tool version. ``read_sample(image, mask=<stem>.corrected.zarr, table=...)`` reopens it.

Samples whose mask has no file (generated in memory) get an in-memory store.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..model import SampleError

if TYPE_CHECKING:
    import zarr

log = logging.getLogger(__name__)

#: suffix of the working copy created next to a mask
WORKING_SUFFIX = ".carspatial-edit.zarr"
#: suffix of a saved corrected mask
CORRECTED_SUFFIX = ".corrected.zarr"
#: chunk edge of the store (pixels): small, so a local edit re-encodes little (a 1024-px chunk
#: costs ~7 ms to rewrite per level, a 512-px one ~1-2 ms)
CHUNK = 512
#: lower levels are added until the longest side is at most this
MIN_LEVEL_SIZE = 1024
ROLE_WORKING = "working-copy"
ROLE_CORRECTED = "corrected-mask"


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("napari-carspatial")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def working_copy_path(mask_path: str | os.PathLike) -> Path:
    """``<mask>.carspatial-edit.zarr`` next to ``mask_path``, or in the user cache when that folder is read-only.

    Read-only is judged from the folder's permission bits as well as ``os.access``: tests and
    containers often run as root, for whom ``os.access`` always says writable, and a folder of
    shared source data must not be written even then.

    Parameters
    ----------
    mask_path
        The original mask file.

    Returns
    -------
    pathlib.Path
        The working copy's folder (it may not exist yet).
    """
    p = Path(os.fspath(mask_path).rstrip("/\\"))
    if _folder_writable(p.parent):
        return p.with_name(p.name + WORKING_SUFFIX)
    import hashlib

    key = hashlib.sha1(os.fspath(p.resolve()).encode("utf-8")).hexdigest()[:16]
    return _cache_dir() / "working" / key / (p.name + WORKING_SUFFIX)


def _folder_writable(folder: Path) -> bool:
    import stat

    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)


def _cache_dir() -> Path:
    base = os.environ.get("CARSPATIAL_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "napari-carspatial"


def _source_fingerprint(src: Path) -> list:
    """Size and modification time of the source mask (file, or every file of a zarr folder)."""
    if src.is_dir():
        files = [f for f in src.rglob("*") if f.is_file()]
        return [sum(f.stat().st_size for f in files), max((f.stat().st_mtime_ns for f in files), default=0)]
    st = src.stat()
    return [st.st_size, st.st_mtime_ns]


def corrected_path(mask_path: str | os.PathLike) -> Path:
    """``<stem>.corrected.zarr`` next to ``mask_path`` (the stem drops image suffixes).

    Parameters
    ----------
    mask_path
        The original mask file.

    Returns
    -------
    pathlib.Path
        Where :func:`save_corrected_mask` writes by default.
    """
    from ._util import stem

    p = Path(os.fspath(mask_path).rstrip("/\\"))
    name = stem(p)
    if name.endswith(WORKING_SUFFIX.removesuffix(".zarr")):
        name = name[: -len(WORKING_SUFFIX.removesuffix(".zarr"))]
    name = stem(name)
    return p.with_name(name + CORRECTED_SUFFIX)


def level_shapes(shape: tuple[int, int], min_size: int = MIN_LEVEL_SIZE) -> list[tuple[int, int]]:
    """(Y, X) of every level: level 0, then ``ceil(s / 2)`` until the longest side <= ``min_size``."""
    out = [tuple(int(s) for s in shape)]
    while max(out[-1]) > min_size:
        out.append(tuple((s + 1) // 2 for s in out[-1]))
    return out


#: multiscales name of a saved corrected mask
CORRECTED_LABELS_NAME = "corrected"


def _ngff_axes(pixel_size_um: float | None) -> list[dict]:
    unit = {"unit": "micrometer"} if pixel_size_um else {}
    return [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}]


def _ngff_transforms(n_levels: int, pixel_size_um: float | None) -> list[list[dict]]:
    """Per level: scale ``2**k`` pixels, times the pixel size in µm when it is known."""
    px = float(pixel_size_um) if pixel_size_um else 1.0
    return [[{"type": "scale", "scale": [px * 2.0 ** k, px * 2.0 ** k]}] for k in range(n_levels)]


def _write_ngff_metadata(g, n_levels: int, pixel_size_um: float | None) -> None:
    """NGFF 0.5 multiscales + image-label metadata of a labels group, through ome-zarr-py's writer."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    datasets = [{"path": str(k), "coordinateTransformations": t}
                for k, t in enumerate(_ngff_transforms(n_levels, pixel_size_um))]
    write_multiscales_metadata(g, datasets, fmt=FormatV05(), axes=_ngff_axes(pixel_size_um), name="labels")
    ome = dict(g.attrs.get("ome", {}))
    ome["image-label"] = {"version": "0.5"}
    g.attrs["ome"] = ome


def _new_group(store_or_path, shape, dtype, chunk: int, carspatial: dict, pixel_size_um: float | None = None):
    import zarr

    shapes = level_shapes(shape)
    g = zarr.open_group(store=store_or_path, mode="w", zarr_format=3)
    for k, shp in enumerate(shapes):
        g.create_array(str(k), shape=shp, chunks=(min(chunk, shp[0]), min(chunk, shp[1])), dtype=dtype,
                       fill_value=0)
    _write_ngff_metadata(g, len(shapes), pixel_size_um)
    g.attrs["carspatial"] = carspatial
    return g


def _store_levels(g, level0) -> int:
    """Fill every level of ``g`` from the dask/numpy ``level0`` in one pass; return the max id.

    Lower levels are strided views of the same source chunks, so level 0 is read once, chunk
    by chunk (memory: a few chunks).
    """
    import dask
    import dask.array as da

    arr0 = g["0"]
    src = level0 if hasattr(level0, "dask") else da.from_array(level0, chunks=arr0.chunks, name=False)
    src = src.astype(arr0.dtype).rechunk(arr0.chunks)
    stores = [da.store(src, arr0, lock=False, compute=False)]
    k = 1
    while str(k) in g:
        f = 2 ** k
        arr = g[str(k)]
        stores.append(da.store(src[::f, ::f].rechunk(arr.chunks), arr, lock=False, compute=False))
        k += 1
    out = dask.compute(*stores, src.max())
    return int(out[-1])


class MaskStore:
    """A chunked, editable label pyramid in a zarr group (see the module docstring).

    Parameters
    ----------
    group
        The zarr group (levels ``"0"``, ``"1"``, ... and ``carspatial`` attributes).
    path
        Its folder, or ``None`` for an in-memory store.
    """

    def __init__(self, group: zarr.Group, path: Path | None = None):
        self.group = group
        self.path = path
        n = 0
        while str(n) in group:
            n += 1
        if n == 0:
            raise SampleError("the mask store has no level '0'.", path=path)
        self.levels = [group[str(k)] for k in range(n)]

    # ------------------------------------------------------------------ creation
    @classmethod
    def open_working_copy(cls, mask_path: str | os.PathLike | None = None, *, labels=None,
                          chunk: int = CHUNK, resume: bool = False,
                          pixel_size_um: float | None = None) -> MaskStore:
        """Open (or create) the working copy of a mask; the original is never written.

        Parameters
        ----------
        mask_path
            The original mask file or zarr store. When it is itself a working copy it is opened
            for editing; otherwise ``<mask>.carspatial-edit.zarr`` next to it is opened, or
            created from ``labels`` (or from the file) chunk by chunk.
        labels
            Level-0 labels (dask or numpy) to copy from; required when there is no file (the
            store is then kept in memory).
        chunk
            Chunk edge of a new store.
        resume
            Reopen an existing working copy with its edits (its source must be unchanged). Without
            it, a working copy that already holds edits, or whose source changed, is moved aside
            (``...carspatial-edit.<time>.zarr``, never deleted) and a fresh one is made: silently
            reusing old edits with a fresh table would break the table-mask link. Edits are
            reopened by opening the *corrected* mask with its saved table.
        pixel_size_um
            µm per pixel, recorded in the store (NGFF scale and units) and used by
            :func:`save_corrected_mask`.
        """
        import zarr

        if mask_path is None:
            if labels is None:
                raise ValueError("give mask_path or labels")
            g = _new_group(zarr.storage.MemoryStore(), tuple(labels.shape), np.dtype(labels.dtype), chunk,
                           {"role": ROLE_WORKING, "source": None, "edit_count": 0, "max_id": 0,
                            "pixel_size_um": pixel_size_um}, pixel_size_um)
            mx = _store_levels(g, labels)
            st = cls(g, None)
            st._set_attr("max_id", mx)
            return st
        src = Path(os.fspath(mask_path).rstrip("/\\"))
        if src.name.endswith(WORKING_SUFFIX) or _role(src) == ROLE_WORKING:
            return cls(zarr.open_group(os.fspath(src), mode="r+"), src)
        wpath = working_copy_path(src)
        fingerprint = _source_fingerprint(src) if src.exists() else None
        if wpath.exists():
            st = cls(zarr.open_group(os.fspath(wpath), mode="r+"), wpath)
            same_source = st.attrs.get("source_fingerprint") == fingerprint
            same_shape = tuple(st.shape) == tuple(labels.shape if labels is not None else st.shape)
            if resume:
                if not (same_source and same_shape):
                    raise SampleError("the working copy no longer matches its source mask (changed since).",
                                      path=wpath, hint="Open without resume to start a fresh working copy.")
                log.info("reopened the working copy %s (%d edits so far)", wpath, st.edit_count)
                return st
            if same_source and same_shape and st.edit_count == 0:
                return st   # an unused copy: nothing to lose, nothing stale
            backup = wpath.with_name(wpath.name.removesuffix(".zarr") + time.strftime(".%Y%m%d-%H%M%S") + ".zarr")
            os.replace(wpath, backup)
            log.warning("an earlier working copy of %s (%d edits) was moved to %s; starting a fresh one",
                        src, st.edit_count, backup)
        if labels is None:
            from .masks import read_mask

            labels = read_mask(src, check_empty=False)[0]
        wpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = wpath.with_name(f".{wpath.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            g = _new_group(os.fspath(tmp), tuple(labels.shape), np.dtype(labels.dtype), chunk,
                           {"role": ROLE_WORKING, "source": os.fspath(src), "edit_count": 0, "max_id": 0,
                            "source_fingerprint": fingerprint, "pixel_size_um": pixel_size_um}, pixel_size_um)
            mx = _store_levels(g, labels)
            a = dict(g.attrs["carspatial"])
            a["max_id"] = mx
            g.attrs["carspatial"] = a
            os.replace(tmp, wpath)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        st = cls(zarr.open_group(os.fspath(wpath), mode="r+"), wpath)
        log.info("created the working copy %s of %s", wpath, src)
        return st

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.levels[0].shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.levels[0].dtype)

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs.get("carspatial", {}) or {})

    def _set_attr(self, key, value) -> None:
        a = self.attrs
        a[key] = value
        self.group.attrs["carspatial"] = a

    @property
    def source(self) -> str | None:
        return self.attrs.get("source")

    @property
    def edit_count(self) -> int:
        return int(self.attrs.get("edit_count", 0))

    @property
    def max_id(self) -> int:
        """Largest id ever stored (new cells get ``max_id + 1``; ids are never reused)."""
        return int(self.attrs.get("max_id", 0))

    def raise_max_id(self, value: int) -> int:
        """Make ``value`` the largest id ever used when it is larger (ids of a table the mask does
        not hold yet must never be handed out again); returns the max id."""
        if int(value) > self.max_id:
            self._set_attr("max_id", int(value))
        return self.max_id

    def reserve_ids(self, n: int = 1) -> np.ndarray:
        """``n`` new unique ids (``max_id + 1 ...``), recorded in the store."""
        start = self.max_id + 1
        self._set_attr("max_id", start + n - 1)
        return np.arange(start, start + n, dtype=np.int64)

    # ------------------------------------------------------------------ regions
    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Level-0 pixels of the region (clipped to the mask), as a new numpy array."""
        y0, x0 = max(0, int(y0)), max(0, int(x0))
        y1, x1 = min(self.shape[0], int(y1)), min(self.shape[1], int(x1))
        return np.asarray(self.levels[0][y0:y1, x0:x1])

    def write(self, y0: int, x0: int, block: np.ndarray, *, count_edit: bool = True) -> list[tuple]:
        """Write ``block`` at level-0 (y0, x0) and update every lower level for that region only.

        Returns the region written at each level as ``(level, i0, i1, j0, j1)``.
        """
        block = np.asarray(block, dtype=self.dtype)
        y0, x0 = int(y0), int(x0)
        y1, x1 = y0 + block.shape[0], x0 + block.shape[1]
        if y0 < 0 or x0 < 0 or y1 > self.shape[0] or x1 > self.shape[1]:
            raise ValueError(f"region {(y0, y1, x0, x1)} is outside the mask {self.shape}")
        self.levels[0][y0:y1, x0:x1] = block
        written = [(0, y0, y1, x0, x1)]
        for k in range(1, len(self.levels)):
            f = 2 ** k
            i0, i1 = -(-y0 // f), -(-y1 // f)
            j0, j1 = -(-x0 // f), -(-x1 // f)
            if i1 <= i0 or j1 <= j0:
                continue
            sub = block[i0 * f - y0::f, j0 * f - x0::f][: i1 - i0, : j1 - j0]
            self.levels[k][i0:i1, j0:j1] = sub
            written.append((k, i0, i1, j0, j1))
        mx = int(block.max()) if block.size else 0
        if mx > self.max_id:
            self._set_attr("max_id", mx)
        if count_edit:
            self._set_attr("edit_count", self.edit_count + 1)
        return written

    def pyramid(self) -> list:
        """Lazy dask levels (level 0 first) with fresh names, for napari and the sample."""
        import dask.array as da

        token = uuid.uuid4().hex[:10]
        return [da.from_zarr(a, name=f"carspatial-mask-{token}-{k}") for k, a in enumerate(self.levels)]


def _role(path: Path) -> str | None:
    import zarr

    try:
        g = zarr.open_group(os.fspath(path), mode="r")
        return (dict(g.attrs).get("carspatial") or {}).get("role")
    except Exception:  # noqa: BLE001 - a probe
        return None


def _write_corrected(path: Path, store: MaskStore, carspatial: dict, pixel_size_um: float | None) -> None:
    """``path``: an NGFF 0.5 labels image (multiscales + image-label) written by ome-zarr-py."""
    import dask.array as da
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import add_metadata, write_multiscale

    root = zarr.open_group(os.fspath(path), mode="w", zarr_format=3)
    chunk = tuple(int(c) for c in store.levels[0].chunks)
    pyramid = [da.from_zarr(a) for a in store.levels]
    write_multiscale(pyramid, root, fmt=FormatV05(), axes=_ngff_axes(pixel_size_um),
                     coordinate_transformations=_ngff_transforms(len(pyramid), pixel_size_um),
                     storage_options=[{"chunks": tuple(min(c, s) for c, s in zip(chunk, a.shape, strict=True))}
                                      for a in pyramid], name=CORRECTED_LABELS_NAME)
    add_metadata(root, {"image-label": {"version": FormatV05().version}})
    root.attrs["carspatial"] = carspatial


def save_corrected_mask(store: MaskStore, out: str | os.PathLike | None = None, *,
                        source: str | os.PathLike | None = None, note: str = "",
                        overwrite: bool = True, pixel_size_um: float | None = None) -> Path:
    """Write the corrected mask as NGFF labels next to the original, atomically (ome-zarr-py's writer).

    The folder is an NGFF 0.5 (zarr v3) labels image: multiscales written by
    ``ome_zarr.writer.write_multiscale`` (axes y, x with unit ``micrometer`` and level-k scale
    ``pixel_size_um * 2**k`` when the pixel size is known) plus ``image-label`` metadata, so
    ome-zarr-py and napari-ome-zarr open it as labels; our readers open it as a mask.

    Parameters
    ----------
    store
        The working copy with the edits.
    out
        Target folder (``.zarr``). Default: ``<stem>.corrected.zarr`` next to ``source``.
    source
        The original mask (default: the store's recorded source). Its SHA-256 goes into the
        provenance; it is never written.
    note
        Free text stored with the provenance.
    overwrite
        Replace an earlier corrected mask at ``out`` (never the source itself).
    pixel_size_um
        µm per level-0 pixel (default: the working copy's recorded pixel size, else none: the
        scale is then in pixels and the axes carry no unit).

    Returns
    -------
    pathlib.Path
        The written folder; its root ``zarr.json`` attributes hold ``carspatial.provenance``:
        ``source``, ``source_sha256``, ``edit_count``, ``time`` (UTC ISO 8601), ``tool_version``,
        ``note``.

    Raises
    ------
    SampleError
        ``out`` is the original mask, or exists without ``overwrite``.
    ValueError
        Neither ``out`` nor a source is known.
    """

    from .write import sha256_file

    src = source if source is not None else store.source
    if pixel_size_um is None:
        pixel_size_um = store.attrs.get("pixel_size_um")
    if out is None:
        if src is None:
            raise ValueError("the mask has no source file: give out=")
        out = corrected_path(src)
    out = Path(out)
    if src is not None and Path(src).resolve() == out.resolve():
        raise SampleError("refusing to write the corrected mask over the original.", path=out)
    if out.exists() and not overwrite:
        raise SampleError("a corrected mask exists already.", path=out, hint="Pass overwrite=True or another path.")
    prov = {
        "source": None if src is None else os.fspath(src),
        "source_sha256": sha256_file(src) if src is not None and Path(src).exists() else None,
        "edit_count": store.edit_count,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool_version": _tool_version(),
        "note": note,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    shutil.rmtree(tmp)
    try:
        _write_corrected(tmp, store, {"role": ROLE_CORRECTED, "provenance": prov, "max_id": store.max_id},
                         pixel_size_um)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved the corrected mask %s (%d edits, source %s)", out, prov["edit_count"], src)
    return out


def read_provenance(path: str | os.PathLike) -> dict:
    """The ``carspatial.provenance`` attributes of a corrected mask (``{}`` when there are none).

    Parameters
    ----------
    path
        A corrected mask folder (``.zarr``).

    Returns
    -------
    dict
        ``source``, ``source_sha256``, ``edit_count``, ``time``, ``tool_version``, ``note``.
    """
    import zarr

    g = zarr.open_group(os.fspath(path), mode="r")
    return dict((dict(g.attrs).get("carspatial") or {}).get("provenance") or {})
