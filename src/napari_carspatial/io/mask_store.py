"""Editable, chunked mask store: copy-on-write region write-back, pyramid updates, corrected-mask
saving.

Segmentation correction never touches the original mask. Edits go into a **working copy**, a
folder next to the original that holds only what was edited (copy-on-write)::

    <mask file name>.carspatial-edit.zarr/
        carspatial.json     role, layout, source, source_fingerprint, levels (shape, chunks),
                            dtype, edit_count, max_id, pixel_size_um
        0/  1/  2/ ...      level 0 and the lower levels: ``<cy>.<cx>.npy`` for each chunk an edit
                            touched (the source's chunk grid when it is regular, else 512 px)
                            and ``held.npy``, the bitmap of those chunks; every other chunk is
                            read from the source mask

Plain ``.npy`` files written atomically (a temporary file, then a rename), no zarr: a commit
writes a few chunks from a worker thread, and zarr 3 costs an event-loop round trip per call
(~0.1 s each on a loaded machine: 6 s of a 10 s commit at 10^6 cells).

* :meth:`MaskStore.open_working_copy` creates it (no pass over the mask: a 10^6-cell mask opens
  for editing at once; only its largest id is needed, from the id check of the sample, cached by
  the file's identity) or reopens it; masks of any size.
* :meth:`MaskStore.read` / :meth:`MaskStore.write` move full-resolution regions in and out. A
  write first copies the source's pixels of every chunk it touches but does not cover (per level),
  marks them held, then writes; lower levels are updated for that region only
  (``level_k[i, j] = level_0[i * 2**k, j * 2**k]``, the striding the readers use).
* :meth:`MaskStore.pyramid` returns fresh lazy dask levels for napari: per chunk, the working
  copy's where it holds it, the source's elsewhere (the source's tiles keep their dask names).
* :func:`save_corrected_mask` writes ``<stem>.corrected.zarr`` beside the original (never over
  it), atomically, as an NGFF 0.5 labels image (axis units and µm scale) through ome-zarr-py's
  writer, level ``k`` = the edited level 0 strided by ``2**k``, with provenance: source path,
  SHA-256 of the source, number of edits, time and tool version.
  ``read_sample(image, mask=<stem>.corrected.zarr, table=...)`` reopens it.

A working copy is no image (its chunks are partial: no reader may take it for the mask).
Working copies made before copy-on-write (full NGFF copies of the mask) are moved aside, never
deleted, and can be opened as masks. Samples whose mask has no file (generated in memory) get an
in-memory store over their labels.

One module because the working-copy writer (:class:`MaskStore`), the corrected-mask writer and
their readers (:func:`read_provenance`, reopening) share the metadata and level helpers, and are
kept side by side so the on-disk format is written and read in one place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..model import SampleError

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
#: ``carspatial.layout`` of a copy-on-write working copy (only edited chunks are stored)
LAYOUT_COW = "copy-on-write"
#: the working copy's group of chunk bitmaps (one uint8 array per level: 1 = the chunk is held)
WRITTEN_GROUP = "written"


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


#: the working copy's metadata file (role, layout, source, levels, edit count, max id)
META_FILE = "carspatial.json"


class _Level:
    """One level of a working copy: its shape and chunks, the chunks it holds (a bitmap) and their
    pixels, one ``.npy`` file per chunk in ``folder`` (written atomically: a temporary file, then
    a rename) or a dict in memory. Plain files, no zarr: a commit writes a few chunks from the
    worker thread with no event-loop round trips (zarr 3's cost ~0.1 s per call under load)."""

    def __init__(self, folder: Path | None, shape, chunks, dtype, held: np.ndarray | None = None):
        self.folder = folder
        self.shape = tuple(int(s) for s in shape)
        self.chunks = tuple(int(c) for c in chunks)
        self.dtype = np.dtype(dtype)
        grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))
        self.held = np.zeros(grid, bool) if held is None else np.asarray(held, bool).reshape(grid)
        self._mem: dict[tuple[int, int], np.ndarray] = {}

    def box(self, cy: int, cx: int) -> tuple[int, int, int, int]:
        c0, c1 = self.chunks
        return cy * c0, min(self.shape[0], (cy + 1) * c0), cx * c1, min(self.shape[1], (cx + 1) * c1)

    def _file(self, cy: int, cx: int) -> Path:
        return self.folder / f"{cy}.{cx}.npy"

    def get(self, cy: int, cx: int) -> np.ndarray:
        """The held chunk's pixels (read-only for file chunks: a fresh array each call)."""
        if self.folder is None:
            return self._mem[(cy, cx)].copy()
        return np.load(self._file(cy, cx), allow_pickle=False)

    def put(self, cy: int, cx: int, pixels: np.ndarray) -> None:
        pixels = np.ascontiguousarray(pixels, dtype=self.dtype)
        if self.folder is None:
            self._mem[(cy, cx)] = pixels.copy()
            return
        _atomic_save(self._file(cy, cx), pixels)

    def save_held(self) -> None:
        if self.folder is not None:
            _atomic_save(self.folder / "held.npy", self.held.astype(np.uint8))


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _as_levels(labels) -> list:
    """``labels`` (one level-0 array or a pyramid, level 0 first) as a list of 2-D levels."""
    levels = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    if not levels:
        raise ValueError("no labels given")
    return levels


def _strided(arr, f: int):
    return arr[::f, ::f]


def source_levels(labels, min_size: int = MIN_LEVEL_SIZE) -> list:
    """The display pyramid of a source mask: its own levels while each is level 0 halved ``k``
    times (floor or ceil), then nearest-neighbour levels strided from the last one until the
    longest side is at most ``min_size``. Nothing is computed (dask / numpy views)."""
    levels = _as_levels(labels)
    H, W = (int(s) for s in levels[0].shape[-2:])
    out = [levels[0]]
    for k, lv in enumerate(levels[1:], start=1):
        f = 2 ** k
        if lv.ndim != 2 or any(abs(int(s) - n / f) >= 1 for s, n in zip(lv.shape, (H, W), strict=True)):
            break
        out.append(lv)
    while max(out[-1].shape) > min_size:
        out.append(_strided(out[-1], 2))
    return out


def _match_source(labels, shapes: list[tuple[int, int]], path) -> list:
    """Source levels with exactly the working copy's level ``shapes``."""
    cand = source_levels(labels)
    out = []
    for k, shp in enumerate(shapes):
        if k < len(cand) and tuple(int(s) for s in cand[k].shape) == tuple(shp):
            out.append(cand[k])
            continue
        lv = _strided(cand[0], 2 ** k)
        if tuple(int(s) for s in lv.shape) != tuple(shp):
            raise SampleError(f"the working copy's level {k} is {tuple(shp)}, its source mask's {tuple(lv.shape)}.",
                              path=path, hint="Open without resume to start a fresh working copy.")
        out.append(lv)
    return out


def zarr_source(arr):
    """The zarr array a dask array is a plain ``da.from_zarr`` of (same shape and dtype), else None."""
    if not hasattr(arr, "dask"):
        return None
    try:
        graph = arr.dask
        if len(graph.layers) > 2:  # from_zarr = the array + its getters; anything more is a computation
            return None
        found = None
        for name, layer in graph.layers.items():
            if name.startswith("original-"):
                for v in layer.values():
                    if type(v).__module__.startswith("zarr") and tuple(getattr(v, "shape", ())) == tuple(arr.shape) \
                            and np.dtype(getattr(v, "dtype", None)) == arr.dtype:
                        found = v
        return found
    except Exception:  # noqa: BLE001 - an unusual graph: use dask
        return None


def _read_source(arr, y0: int, y1: int, x0: int, x1: int, dtype) -> np.ndarray:
    """A writable numpy copy of ``arr[y0:y1, x0:x1]`` (numpy, dask or zarr): straight from the
    file's zarr array when the dask array is a plain ``from_zarr`` (no graph per read)."""
    direct = zarr_source(arr)
    sub = (direct if direct is not None else arr)[y0:y1, x0:x1]
    if hasattr(sub, "compute"):
        sub = sub.compute()
    return np.array(sub, dtype=dtype, copy=True)


def _level_chunks(level, chunk: int | None) -> tuple[int, int]:
    """Chunks of a working-copy level: ``chunk`` when given; else the source level's own chunks
    when they are regular and 256-2048 px (the merged pyramid then needs no rechunking: one
    source tile per working tile), else :data:`CHUNK`."""
    shp = tuple(int(s) for s in level.shape)
    if chunk is None and hasattr(level, "chunks") and hasattr(level, "dask"):
        own = []
        for ax, c in enumerate(level.chunks):
            first = int(c[0])
            regular = all(int(v) == first for v in c[:-1]) and int(c[-1]) <= first
            own.append(first if regular and (256 <= first <= 2048 or first == shp[ax]) else None)
        if None not in own:
            return own[0], own[1]
    c = int(chunk or CHUNK)
    return min(c, shp[0]), min(c, shp[1])


#: dask-name token -> the store of every pyramid handed out (a sample showing one is editing
#: that working copy: reopening it for that sample must not move it aside)
_ISSUED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _issued_token(labels) -> str | None:
    """The token of a pyramid :meth:`MaskStore.pyramid` made, else None."""
    lv0 = _as_levels(labels)[0]
    name = getattr(lv0, "name", "") or ""
    if hasattr(lv0, "dask") and name.startswith("carspatial-mask-") and not name.startswith("carspatial-mask-source"):
        return name.split("-")[2]
    return None


def _read_meta(path: Path) -> dict | None:
    f = Path(path) / META_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as err:
        raise SampleError(f"the working copy's {META_FILE} is unreadable ({err}).", path=path) from None


class MaskStore:
    """An editable label pyramid over a source mask, copy-on-write (see the module docstring).

    Parameters
    ----------
    meta
        The ``carspatial`` metadata (role, layout, source, levels, edit count, max id).
    source
        The source mask's levels (numpy or dask, level 0 first): every chunk the working copy
        does not hold is read from them.
    path
        The working copy's folder, or ``None`` for an in-memory store.
    """

    def __init__(self, meta: dict, source: list | object, path: Path | None = None):
        self.path = path
        self._meta = dict(meta)
        shapes = [tuple(lv["shape"]) for lv in self._meta["levels"]]
        dtype = np.dtype(self._meta["dtype"])
        self.levels: list[_Level] = []
        for k, lv in enumerate(self._meta["levels"]):
            folder = None if path is None else Path(path) / str(k)
            held = None
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                if (folder / "held.npy").is_file():
                    held = np.load(folder / "held.npy", allow_pickle=False)
            self.levels.append(_Level(folder, lv["shape"], lv["chunks"], dtype, held))
        self._source = _match_source(source, shapes, path)
        self._src_blocks: list | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ creation
    @classmethod
    def _create(cls, path: Path | None, labels, chunk: int | None, meta: dict) -> MaskStore:
        levels = source_levels(labels)
        meta = {**meta, "role": ROLE_WORKING, "layout": LAYOUT_COW, "format_version": 2,
                "dtype": np.dtype(levels[0].dtype).str,
                "levels": [{"shape": [int(s) for s in lv.shape], "chunks": list(_level_chunks(lv, chunk))}
                           for lv in levels]}
        if path is None:
            return cls(meta, levels, None)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.mkdir()
            _write_json(tmp / META_FILE, meta)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(meta, levels, path)

    @classmethod
    def open_working_copy(cls, mask_path: str | os.PathLike | None = None, *, labels=None,
                          chunk: int | None = None, resume: bool = False,
                          pixel_size_um: float | None = None) -> MaskStore:
        """Open (or create) the working copy of a mask; the original is never written.

        The working copy is copy-on-write: it stores only the chunks an edit touches and reads
        every other chunk from the source mask, so making it costs no pass over the mask (a
        10^6-cell mask opens for editing at once). Only the mask's largest id is needed (new
        cells get larger ones): :func:`~napari_carspatial.model.mask_ids.mask_ids`, cached by
        the mask file's identity when the sample was checked on open.

        Parameters
        ----------
        mask_path
            The original mask file or zarr store. When it is itself a working copy it is opened
            for editing; otherwise ``<mask>.carspatial-edit.zarr`` next to it is opened, or
            created.
        labels
            The source mask: level 0 or its pyramid (dask or numpy, level 0 first; the sample's
            ``labels``). Required when there is no file (the store is then kept in memory);
            otherwise read from the file when not given.
        chunk
            Chunk edge of a new store (default: the source's chunks when they are regular and
            256-2048 px, else :data:`CHUNK`).
        resume
            Reopen an existing working copy with its edits (its source must be unchanged). Without
            it, a working copy that already holds edits, or whose source changed, is moved aside
            (``...carspatial-edit.<time>.zarr``, never deleted) and a fresh one is made: silently
            reusing old edits with a fresh table would break the table-mask link. Edits are
            reopened by opening the *corrected* mask with its saved table. A working copy that
            ``labels`` show (a pyramid of this store: the sample is being edited) is returned as
            it is.
        pixel_size_um
            µm per pixel, recorded in the store and used by :func:`save_corrected_mask`.

        Returns
        -------
        MaskStore
            The working copy.

        Raises
        ------
        SampleError
            ``resume`` and the source changed; a working copy made by an older version (a full
            copy) opened directly; unreadable metadata.
        """
        base = {"edit_count": 0, "pixel_size_um": pixel_size_um}
        if mask_path is None:
            if labels is None:
                raise ValueError("give mask_path or labels")
            st = cls._create(None, labels, chunk, {**base, "source": None, "max_id": 0})
            st._set_attr("max_id", _source_max_id(st._source[0], None))
            return st
        src = Path(os.fspath(mask_path).rstrip("/\\"))

        def source():
            if labels is not None:
                return labels
            from .masks import read_mask

            return read_mask(src, check_empty=False)

        if src.name.endswith(WORKING_SUFFIX) or _role(src) == ROLE_WORKING:
            meta = _read_meta(src)
            if meta is None:
                raise SampleError("is a working copy made by an older version (a full copy of the mask).", path=src,
                                  hint="Open it as a mask (read_sample(image, mask=...)) to see its edits.")
            if labels is None:
                from .masks import read_mask

                if not meta.get("source"):
                    raise SampleError("this working copy does not name its source mask.", path=src)
                return cls(meta, read_mask(meta["source"], check_empty=False), src)
            return cls(meta, labels, src)
        wpath = working_copy_path(src)
        token = _issued_token(labels) if labels is not None else None
        if token is not None:
            # the sample shows a working copy (its editor was made again): that store, as it is
            live = _ISSUED.get(token)
            if live is not None and live.path is not None and os.fspath(live.path) == os.fspath(wpath):
                return live
            if live is None:
                raise SampleError("the sample shows an edited mask whose working copy is no longer open.",
                                  path=wpath, hint="Open the sample again (or its saved corrected mask).")
        fingerprint = _source_fingerprint(src) if src.exists() else None
        if wpath.exists():
            meta = _read_meta(wpath)
            if meta is None:   # a full copy made by an older version: kept, never reused
                backup = _backup_path(wpath)
                os.replace(wpath, backup)
                log.warning("a working copy of %s made by an older version was moved to %s (open it as a mask to "
                            "see its edits); starting a fresh one", src, backup)
            else:
                lab = source()
                same_source = meta.get("source_fingerprint") == fingerprint
                same_shape = tuple(int(s) for s in _as_levels(lab)[0].shape) == tuple(meta["levels"][0]["shape"])
                edits = int(meta.get("edit_count", 0))
                if resume:
                    if not (same_source and same_shape):
                        raise SampleError("the working copy no longer matches its source mask (changed since).",
                                          path=wpath, hint="Open without resume to start a fresh working copy.")
                    st = cls(meta, lab, wpath)
                    log.info("reopened the working copy %s (%d edits so far)", wpath, st.edit_count)
                    return st
                if same_source and same_shape and edits == 0:
                    try:
                        return cls(meta, lab, wpath)   # an unused copy: nothing to lose, nothing stale
                    except SampleError:
                        pass
                backup = _backup_path(wpath)
                os.replace(wpath, backup)
                log.warning("an earlier working copy of %s (%d edits) was moved to %s; starting a fresh one",
                            src, edits, backup)
        lab = source()
        st = cls._create(wpath, lab, chunk, {**base, "source": os.fspath(mask_path), "source_fingerprint": fingerprint,
                                             "max_id": _source_max_id(_as_levels(lab)[0], os.fspath(mask_path))})
        log.info("created the working copy %s of %s (copy-on-write)", wpath, src)
        return st

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        return self.levels[0].shape

    @property
    def dtype(self) -> np.dtype:
        return self.levels[0].dtype

    @property
    def attrs(self) -> dict:
        """The working copy's metadata (role, layout, source, edit_count, max_id, ...)."""
        return dict(self._meta)

    def _set_attr(self, key, value) -> None:
        self._meta[key] = value
        if self.path is not None:
            _write_json(Path(self.path) / META_FILE, self._meta)

    @property
    def source(self) -> str | None:
        """The source mask's path as recorded (None for a mask in memory)."""
        return self._meta.get("source")

    @property
    def edit_count(self) -> int:
        return int(self._meta.get("edit_count", 0))

    @property
    def max_id(self) -> int:
        """Largest id ever stored (new cells get ``max_id + 1``; ids are never reused)."""
        return int(self._meta.get("max_id", 0))

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

    # ------------------------------------------------------------------ chunks
    def held_chunks(self, level: int = 0) -> np.ndarray:
        """Which chunks of ``level`` the working copy holds (edited); the rest is the source's."""
        return self.levels[level].held.copy()

    def _read_level(self, k: int, i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
        lv = self.levels[k]
        if i1 <= i0 or j1 <= j0:
            return np.zeros((max(0, i1 - i0), max(0, j1 - j0)), self.dtype)
        c0, c1 = lv.chunks
        cy0, cy1, cx0, cx1 = i0 // c0, (i1 - 1) // c0 + 1, j0 // c1, (j1 - 1) // c1 + 1
        held = lv.held[cy0:cy1, cx0:cx1]
        if held.all():
            out = np.empty((i1 - i0, j1 - j0), self.dtype)
        else:
            out = _read_source(self._source[k], i0, i1, j0, j1, self.dtype)
        for cy, cx in np.argwhere(held):
            cy, cx = int(cy + cy0), int(cx + cx0)
            a0, a1, b0, b1 = lv.box(cy, cx)
            y0, y1, x0, x1 = max(i0, a0), min(i1, a1), max(j0, b0), min(j1, b1)
            out[y0 - i0:y1 - i0, x0 - j0:x1 - j0] = lv.get(cy, cx)[y0 - a0:y1 - a0, x0 - b0:x1 - b0]
        return out

    def _write_level(self, k: int, i0: int, j0: int, block: np.ndarray) -> None:
        """Copy-on-write of ``block`` at (i0, j0) of level ``k``: every chunk it touches gets the
        source's pixels first when the working copy does not hold it yet (unless the block
        covers it whole), then the block's; the bitmap is saved after the chunks."""
        lv = self.levels[k]
        i1, j1 = i0 + block.shape[0], j0 + block.shape[1]
        c0, c1 = lv.chunks
        cy0, cy1, cx0, cx1 = i0 // c0, (i1 - 1) // c0 + 1, j0 // c1, (j1 - 1) // c1 + 1
        chunks = [(cy, cx) for cy in range(cy0, cy1) for cx in range(cx0, cx1)]
        need = []
        for cy, cx in chunks:
            a0, a1, b0, b1 = lv.box(cy, cx)
            if not lv.held[cy, cx] and not (i0 <= a0 and a1 <= i1 and j0 <= b0 and b1 <= j1):
                need.append((a0, a1, b0, b1))
        src = None
        if need:   # one read of the source for every chunk that needs its pixels
            ya, yb = min(p[0] for p in need), max(p[1] for p in need)
            xa, xb = min(p[2] for p in need), max(p[3] for p in need)
            src = _read_source(self._source[k], ya, yb, xa, xb, self.dtype)
        new_held = False
        for cy, cx in chunks:
            a0, a1, b0, b1 = lv.box(cy, cx)
            if lv.held[cy, cx]:
                pix = np.array(lv.get(cy, cx), copy=True)
            elif i0 <= a0 and a1 <= i1 and j0 <= b0 and b1 <= j1:
                pix = np.empty((a1 - a0, b1 - b0), self.dtype)
            else:
                pix = src[a0 - ya:a1 - ya, b0 - xa:b1 - xa].copy()
            y0, y1, x0, x1 = max(i0, a0), min(i1, a1), max(j0, b0), min(j1, b1)
            pix[y0 - a0:y1 - a0, x0 - b0:x1 - b0] = block[y0 - i0:y1 - i0, x0 - j0:x1 - j0]
            lv.put(cy, cx, pix)
            if not lv.held[cy, cx]:
                lv.held[cy, cx] = True
                new_held = True
        if new_held:
            lv.save_held()

    # ------------------------------------------------------------------ regions
    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Level-0 pixels of the region (clipped to the mask), as a new numpy array."""
        y0, x0 = max(0, int(y0)), max(0, int(x0))
        y1, x1 = min(self.shape[0], int(y1)), min(self.shape[1], int(x1))
        with self._lock:
            return self._read_level(0, y0, y1, x0, x1)

    def write(self, y0: int, x0: int, block: np.ndarray, *, count_edit: bool = True) -> list[tuple]:
        """Write ``block`` at level-0 (y0, x0) and update every lower level for that region only.

        Returns the region written at each level as ``(level, i0, i1, j0, j1)``.
        """
        block = np.asarray(block, dtype=self.dtype)
        y0, x0 = int(y0), int(x0)
        y1, x1 = y0 + block.shape[0], x0 + block.shape[1]
        if y0 < 0 or x0 < 0 or y1 > self.shape[0] or x1 > self.shape[1]:
            raise ValueError(f"region {(y0, y1, x0, x1)} is outside the mask {self.shape}")
        written = []
        with self._lock:
            for k, lv in enumerate(self.levels):
                f = 2 ** k
                hk, wk = lv.shape
                i0, i1 = -(-y0 // f), min(hk, -(-y1 // f))
                j0, j1 = -(-x0 // f), min(wk, -(-x1 // f))
                if i1 <= i0 or j1 <= j0:
                    continue
                sub = block[i0 * f - y0::f, j0 * f - x0::f][: i1 - i0, : j1 - j0]
                self._write_level(k, i0, j0, sub)
                written.append((k, i0, i1, j0, j1))
            mx = int(block.max()) if block.size else 0
            if mx > self.max_id:
                self._meta["max_id"] = mx
            if count_edit:
                self._meta["edit_count"] = self.edit_count + 1
            self._set_attr("max_id", self.max_id)
        return written

    # ------------------------------------------------------------------ lazy levels
    def _source_blocks(self, k: int):
        """Source level ``k`` as dask, in the store's chunks (made once: stable dask names, so
        tiles napari cached stay valid across edits)."""
        import dask.array as da

        if self._src_blocks is None:
            self._src_blocks = [None] * len(self.levels)
        if self._src_blocks[k] is None:
            src = self._source[k]
            ch = self.levels[k].chunks
            if not hasattr(src, "dask"):
                src = da.from_array(np.asarray(src), chunks=ch,
                                    name=f"carspatial-mask-source-{uuid.uuid4().hex[:10]}-{k}")
            if src.dtype != self.dtype:
                src = src.astype(self.dtype)
            self._src_blocks[k] = src.rechunk(ch)
        return self._src_blocks[k]

    def _merged(self, k: int, name: str):
        """Level ``k`` as one dask array: the working copy's chunk where it holds it, else the
        source's (an alias: nothing is read twice, nothing computed here)."""
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph

        lv = self.levels[k]
        srcb = self._source_blocks(k)
        held = lv.held.copy()
        if not held.any():
            return srcb   # nothing edited at this level: the source itself (napari's cached tiles stay)
        layer = {}
        for i in range(held.shape[0]):
            for j in range(held.shape[1]):
                layer[(name, i, j)] = (lv.get, i, j) if held[i, j] else (srcb.name, i, j)
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[srcb])
        return da.Array(graph, name, chunks=srcb.chunks, dtype=self.dtype, meta=np.empty((0, 0), self.dtype))

    def pyramid(self) -> list:
        """Lazy dask levels (level 0 first) with fresh names, for napari and the sample."""
        token = uuid.uuid4().hex[:10]
        _ISSUED[token] = self
        with self._lock:
            return [self._merged(k, f"carspatial-mask-{token}-{k}") for k in range(len(self.levels))]

    def level0(self):
        """Level 0 as a lazy dask array (the edited mask)."""
        with self._lock:
            return self._merged(0, f"carspatial-mask-{uuid.uuid4().hex[:10]}-0")


def _backup_path(wpath: Path) -> Path:
    return wpath.with_name(wpath.name.removesuffix(".zarr") + time.strftime(".%Y%m%d-%H%M%S")
                           + f".{uuid.uuid4().hex[:4]}.zarr")


def _source_max_id(level0, source: str | None) -> int:
    """The largest id of a source mask (cached by the file's identity when ``source`` names it)."""
    from ..model.mask_ids import mask_ids

    ids = mask_ids(level0, source=source)
    return int(ids.max()) if ids.size else 0


def _role(path: Path) -> str | None:
    meta = None
    with contextlib.suppress(SampleError):
        meta = _read_meta(path)
    if meta is not None:
        return meta.get("role")
    import zarr

    try:
        g = zarr.open_group(os.fspath(path), mode="r")
        return (dict(g.attrs).get("carspatial") or {}).get("role")
    except Exception:  # noqa: BLE001 - a probe
        return None


def _write_corrected(path: Path, store: MaskStore, carspatial: dict, pixel_size_um: float | None) -> None:
    """``path``: an NGFF 0.5 labels image (multiscales + image-label) written by ome-zarr-py.

    Level 0 is the edited mask (the working copy's chunks where it holds them, the source's
    elsewhere); level ``k`` is ``level_0[::2**k, ::2**k]`` (:func:`level_shapes`), all levels
    written in one pass over level 0 (the lower levels are strided views of its chunks)."""
    import dask
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import add_metadata, write_multiscale

    root = zarr.open_group(os.fspath(path), mode="w", zarr_format=3)
    chunk = (CHUNK, CHUNK)
    lvl0 = store.level0()
    pyramid = []
    for k, shp in enumerate(level_shapes(store.shape)):
        f = 2 ** k
        lv = lvl0 if k == 0 else lvl0[::f, ::f]
        assert tuple(lv.shape) == tuple(shp)
        pyramid.append(lv.rechunk(tuple(min(c, s) for c, s in zip(chunk, shp, strict=True))))
    delayed = write_multiscale(pyramid, root, fmt=FormatV05(), axes=_ngff_axes(pixel_size_um),
                               coordinate_transformations=_ngff_transforms(len(pyramid), pixel_size_um),
                               storage_options=[{"chunks": tuple(min(c, s) for c, s in zip(chunk, a.shape, strict=True))}
                                                for a in pyramid], name=CORRECTED_LABELS_NAME, compute=False)
    dask.compute(*delayed)
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
