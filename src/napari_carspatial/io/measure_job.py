"""Measuring a loaded sample's cells with progress and cancel (the "Measure cells" action, headless).

:func:`napari_carspatial.io.measure.measure_cells` runs ``analysis.quantify`` to the end. A GUI
needs to show how far it is and to stop it; a :class:`MeasureJob` wraps the same call:

* progress: quantify computes its tiles as dask tasks named ``measure-<y0>-<x0>``; dask's callback
  tuples, passed to this job's own ``dask.threaded.get`` (not dask's global registry, which another
  thread's computation swaps while it runs), count the ones of this job's graphs as they finish (``job.progress``, 0..1; ``job.stage``);
* cancel: ``job.cancel()`` from any thread; the next tile of this job raises
  :class:`MeasureCancelled` before it starts, which stops quantify (tiles already running finish,
  nothing is stored);
* montages (several acquisitions tiled into one sample, :mod:`napari_carspatial.model.montage`)
  get the columns :func:`~napari_carspatial.model.montage.montage` gives a table made of the
  acquisitions' own tables: ``acquisition``, ``source_cell_id`` (each cell's own id in its
  acquisition) and ``<acquisition>:<id>`` row names, so measuring the montage equals measuring
  every acquisition and tiling the tables (tested).

Only the graphs started from the thread that runs the job are counted or stopped, so other dask
work in the process (napari slicing a dask image, another quantify) is left alone.

``job.run()`` returns the table and does not touch the sample; :meth:`MeasureJob.store` puts it
in (as :func:`~napari_carspatial.io.measure.store_measured_table` does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import threading
import time

import numpy as np

from ..model import Sample, SampleError
from ._util import log
from .measure import MEASURED, measure_cells

__all__ = ["IdCheckJob", "MeasureCancelled", "MeasureJob", "check_table_ids", "defer_id_check", "needs_measuring",
           "table_id_problem"]

#: dask key prefix of quantify's tile tasks (``analysis.quantify._measure``)
_TILE_PREFIX = "measure-"
_BORDER_PREFIX = "measure-border-"


class MeasureCancelled(Exception):
    """The measuring was cancelled (``MeasureJob.cancel()``); nothing was stored."""


def needs_measuring(sample: Sample | None) -> bool:
    """True for a sample with an image and a mask but no cell table."""
    return sample is not None and sample.table is None and bool(sample.labels) and bool(sample.image)


def _tile_edge() -> int:
    from ..analysis import quantify as q

    return int(getattr(q, "DEFAULT_TILE", 1024))


class MeasureJob:
    """Measure ``sample``'s cells with progress and cancel (see the module docstring).

    Parameters
    ----------
    sample
        A sample with an image and a mask (not modified by :meth:`run`).
    solidity
        Also compute solidity (as ``measure_cells``).

    Attributes
    ----------
    progress
        Fraction of the tiles measured (0..1); 1.0 once :meth:`run` returned.
    stage
        ``"waiting"``, ``"measuring"``, ``"border cells"``, ``"done"``, ``"cancelled"`` or ``"failed"``.
    n_tiles
        Tiles of the level-0 mask quantify measures.
    seconds
        Wall time of :meth:`run`.
    """

    def __init__(self, sample: Sample, *, solidity: bool = True):
        if not sample.labels:
            raise SampleError("measuring cells needs a mask; this sample has none.", path=sample.paths.get("image"))
        if not sample.image:
            raise SampleError("measuring cells needs an image; this sample has only a mask.",
                              path=sample.paths.get("mask"))
        self.sample = sample
        self.solidity = solidity
        edge = _tile_edge()
        h, w = (int(v) for v in sample.labels[0].shape[-2:])
        self.n_tiles = int(np.ceil(h / edge) * np.ceil(w / edge))
        self._edge = edge
        self._done = 0
        self._cancel = threading.Event()
        self._graphs: set[int] = set()
        self._thread: int | None = None
        self.stage = "waiting"
        self.seconds: float | None = None
        self._result = None

    # ------------------------------------------------------------------ state
    @property
    def progress(self) -> float:
        if self.stage == "done":
            return 1.0
        return min(self._done / max(self.n_tiles, 1), 0.99)

    def cancel(self) -> None:
        """Ask the job to stop (thread-safe); :meth:`run` then raises :class:`MeasureCancelled`."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def message(self) -> str:
        """One line for a status label: what the job is doing and how far it is."""
        name = self.sample.name
        if self.stage == "measuring":
            return f"Measuring the cells of {name}: {int(100 * self.progress)} % of {self.n_tiles} tile(s)…"
        if self.stage == "border cells":
            return f"Measuring the cells of {name}: cells on tile borders…"
        if self.stage == "done" and self._result is not None:
            return f"Measured {self._result.n_obs:,} cells of {name} in {self.seconds:.1f} s."
        if self.stage == "cancelled":
            return f"Measuring {name} was cancelled; it has no cell table."
        if self.stage == "failed":
            return f"Measuring the cells of {name} failed."
        return f"Measuring the cells of {name}…"

    # ------------------------------------------------------------------ dask callbacks
    def _start(self, dsk) -> None:
        if threading.get_ident() == self._thread:
            self._graphs.add(id(dsk))

    def _pretask(self, key, dsk, state) -> None:
        if id(dsk) not in self._graphs:
            return
        if self._cancel.is_set():
            raise MeasureCancelled(f"measuring {self.sample.name} was cancelled")
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(_BORDER_PREFIX):
            self.stage = "border cells"

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        if id(dsk) not in self._graphs:
            return
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(_TILE_PREFIX) and not name.startswith(_BORDER_PREFIX):
            self._done += 1

    # ------------------------------------------------------------------ run
    def _tiled_view(self) -> Sample:
        """The sample with dask level-0 image and mask, so quantify runs tile by tile (progress,
        cancel) also for in-memory arrays; same pixels, nothing copied."""
        import dask.array as da

        img, lab = self.sample.image[0], self.sample.labels[0]
        e = self._edge
        if not hasattr(img, "dask"):
            img = da.from_array(img, chunks=(img.shape[0], e, e), name=False)
        if not hasattr(lab, "dask"):
            lab = da.from_array(lab, chunks=(e, e), name=False)
        return dataclasses.replace(self.sample, image=[img], labels=[lab], table=None)

    def run(self):
        """Measure (blocking; call it in a worker thread). Returns the table; raises
        :class:`MeasureCancelled` when cancelled."""
        import dask.threaded

        if self._cancel.is_set():
            self.stage = "cancelled"
            raise MeasureCancelled(f"measuring {self.sample.name} was cancelled")
        self._thread = threading.get_ident()
        self._done = 0
        self.stage = "measuring"
        t0 = time.perf_counter()
        try:
            # callbacks passed to this job's own scheduler calls, not registered globally: dask's
            # global registry is swapped per computation, so a dask computation in another thread
            # (napari slicing a dask image) could drop them: no progress, no cancel
            cb = (self._start, None, self._pretask, self._posttask, None)   # dask's callback tuple
            get = functools.partial(dask.threaded.get, callbacks=[cb])
            adata = measure_cells(self._tiled_view(), solidity=self.solidity, scheduler=get)
        except MeasureCancelled:
            self.stage = "cancelled"
            raise
        except BaseException:
            self.stage = "failed"
            raise
        finally:
            self._graphs.clear()
        if self._cancel.is_set():          # cancelled after the last tile: still nothing stored
            self.stage = "cancelled"
            raise MeasureCancelled(f"measuring {self.sample.name} was cancelled")
        if self.sample.metadata.get("tiles"):
            add_montage_columns(self.sample, adata)
        self.seconds = time.perf_counter() - t0
        self._result = adata
        self.stage = "done"
        log.info("%s: measured %d cells x %d channels in %.2f s", self.sample.name, adata.n_obs, adata.n_vars,
                 self.seconds)
        return adata

    def store(self, adata=None):
        """Put the measured table (``adata``, default the one :meth:`run` returned) into the
        sample: ``sample.table``, ``metadata["table_source"]``, no table path. Returns it."""
        adata = adata if adata is not None else self._result
        if adata is None:
            raise RuntimeError("nothing measured yet: call run() first")
        s = self.sample
        s.table = adata
        s.metadata["table_source"] = MEASURED
        s.paths.pop("table", None)
        s.validate(check_ids=False)     # ids come from this very mask
        return adata


def add_montage_columns(montage: Sample, adata) -> None:
    """Give a table measured on a montage's mask the columns of :func:`model.montage.montage`:
    ``acquisition`` (categorical, tile order), ``source_cell_id`` and ``<name>:<id>`` row names."""
    import pandas as pd

    from ..model.conventions import get_table_link
    from ..model.montage import ACQUISITION_KEY

    tiles = montage.metadata["tiles"]
    key = get_table_link(adata)["instance_key"]
    ids = adata.obs[key].to_numpy(np.int64)
    order = np.argsort([t["id_offset"] for t in tiles], kind="stable")
    offsets = np.array([tiles[i]["id_offset"] for i in order], dtype=np.int64)
    pos = np.searchsorted(offsets, ids, side="left") - 1        # ids of tile k are > its offset
    if (pos < 0).any():
        raise SampleError(f"{montage.name}: cell ids {ids[pos < 0][:5].tolist()} belong to no tile")
    tile_idx = order[pos]
    own = ids - offsets[pos]
    names = np.array([t["name"] for t in tiles], dtype=object)
    adata.obs["source_cell_id"] = own
    adata.obs[ACQUISITION_KEY] = pd.Categorical(names[tile_idx], categories=[t["name"] for t in tiles])
    adata.obs_names = [f"{n}:{i}" for n, i in zip(names[tile_idx], own, strict=True)]


# =========================================================================== table ids vs mask ids
#: a mask of more pixels than this has its full id check run after the first frame, in a worker
#: (reading every pixel of a 21836 x 21836 mask takes ~7 s on 2 cores); smaller masks are checked
#: while they are read, as before
DEFER_ID_CHECK_PIXELS = 64_000_000
#: a deferred check of a mask read from a file, of more pixels than this, reads the pixels in a
#: separate process (spawned; it opens the mask from its file itself): in a thread of the GUI's
#: process the pass held the GIL and slowed every interaction meanwhile (lasso 1.24 vs 0.36 s)
PROCESS_ID_CHECK_PIXELS = DEFER_ID_CHECK_PIXELS
#: how much the check's process lowers its own priority (``os.nice``): the GUI's process comes first
ID_CHECK_NICE = 10
#: the check's process sends its progress at most this often (s)
_PROGRESS_EVERY_S = 0.1


def _table_ids(sample: Sample) -> np.ndarray:
    from ..model.conventions import get_table_link

    key = get_table_link(sample.table)["instance_key"]
    ids = np.sort(sample.table.obs[key].to_numpy(np.int64))
    # sorted and deduplicated without np.unique: numpy 2's hash-based unique takes seconds at 10^6 ids
    return ids[np.r_[True, ids[1:] != ids[:-1]]] if ids.size else ids


def table_id_problem(sample: Sample, mask_ids: np.ndarray, table_ids: np.ndarray | None = None) -> str | None:
    """What is wrong between ``sample``'s table ids and ``mask_ids`` (the ids its mask holds), in
    :meth:`~napari_carspatial.model.Sample.validate`'s words, or None when every mask id has
    exactly one table row and vice versa.

    Parameters
    ----------
    sample
        A sample with a table (its instance-id column is read).
    mask_ids
        Sorted unique ids of the mask (:func:`napari_carspatial.model.mask_ids.mask_ids`).
    table_ids
        Sorted unique table ids, when already known.

    Returns
    -------
    str or None
        One line naming the counts and example ids, or None.
    """
    uniq = _table_ids(sample) if table_ids is None else table_ids
    if mask_ids.size and mask_ids[0] < 0:
        return (f"mask holds negative label ids (e.g. {mask_ids[mask_ids < 0][:3].tolist()}) or ids at or above "
                "2^63; labels are 0 (background) or positive cell ids.")
    not_in_mask = np.setdiff1d(uniq, mask_ids, assume_unique=True)
    not_in_table = np.setdiff1d(mask_ids, uniq, assume_unique=True)
    problems = []
    if not_in_mask.size:
        problems.append(f"{not_in_mask.size} of {uniq.size} table ids are not in the mask (e.g. {not_in_mask[:5].tolist()})")
    if not_in_table.size:
        problems.append(f"{not_in_table.size} of {mask_ids.size} mask ids have no table row "
                        f"(e.g. {not_in_table[:5].tolist()})")
    if not problems:
        return None
    where = sample.paths.get("mask") or sample.paths.get("folder") or "in memory"
    return "; ".join(problems) + f" [mask: {where}]."


def _raise_problem(sample: Sample, problem: str | None) -> None:
    if problem is not None:
        raise SampleError(problem, path=sample.paths.get("table") or sample.paths.get("folder"),
                          hint="Are the table and mask from the same image and segmentation?")


def check_table_ids(sample: Sample) -> None:
    """The full check :meth:`~napari_carspatial.model.Sample.validate` makes with ``check_ids=True``
    (every pixel of level 0; cached by the mask file's identity). Nothing to do without a table or
    a mask.

    Parameters
    ----------
    sample
        The sample to check.

    Raises
    ------
    SampleError
        Table ids and mask ids disagree (counts and examples), or the mask holds negative ids.
    """
    from ..model.mask_ids import mask_ids

    if sample.table is None or not sample.labels:
        return
    _raise_problem(sample, table_id_problem(sample, mask_ids(sample.labels[0], source=sample.paths.get("mask"))))


def _ids_cached(sample: Sample) -> bool:
    from ..model.file_identity import cached_array, file_identity, identity_key
    from ..model.mask_ids import CACHE_KIND

    lab = sample.labels[0]
    name = getattr(lab, "name", None) if hasattr(lab, "dask") else None
    source = sample.paths.get("mask")
    ident = file_identity(source) if (source and name) else None
    if ident is None:
        return False
    key = identity_key(CACHE_KIND, ident, [list(map(int, lab.shape)), str(lab.dtype), str(name)])
    return cached_array(CACHE_KIND, key) is not None


def defer_id_check(sample: Sample) -> bool:
    """True when ``sample``'s full id check is worth running after the first frame: it has a table
    and a lazy mask of more than :data:`DEFER_ID_CHECK_PIXELS` pixels whose ids are not cached."""
    if sample.table is None or not sample.labels or not hasattr(sample.labels[0], "dask"):
        return False
    h, w = (int(v) for v in sample.labels[0].shape[-2:])
    return h * w > DEFER_ID_CHECK_PIXELS and not _ids_cached(sample)


class IdCheckJob:
    """The full table-vs-mask id check of a sample, off the GUI thread (see :func:`check_table_ids`).

    Made on the GUI thread (it copies the table's ids there: the worker never reads the table,
    which an edit may change meanwhile); :meth:`quick` is the cheap part to run at once (the ids
    of the pyramid's smallest level must be table ids); :meth:`run` reads every mask pixel (in a
    worker) and returns the problem line or None.

    Parameters
    ----------
    sample
        A sample with a table and a mask.

    Attributes
    ----------
    progress
        Fraction of the mask's blocks read (0..1).
    stage
        ``"waiting"``, ``"checking"``, ``"done"``, ``"cancelled"`` or ``"failed"``.
    problem
        The problem line :meth:`run` found (None: the ids agree or not run yet).
    """

    def __init__(self, sample: Sample):
        if sample.table is None or not sample.labels:
            raise SampleError("the id check needs a table and a mask.", path=sample.paths.get("mask"))
        self.sample = sample
        self.table_ids = _table_ids(sample)
        self.progress = 0.0
        self.stage = "waiting"
        self.problem: str | None = None
        self._cancel = threading.Event()
        #: where the level-0 mask's pixels are when :meth:`run` reads them in a separate process
        #: (:func:`process_source`; None: in this thread)
        self.source = process_source(sample)
        self._proc = None

    @property
    def in_process(self) -> bool:
        """True when :meth:`run` reads the pixels in a separate process (a large mask read from a file)."""
        return self.source is not None

    def cancel(self) -> None:
        """Stop the check (thread-safe; the sample left the viewer): :meth:`run` raises
        :class:`MeasureCancelled` at the next block (or, in its own process, at once: the process
        is terminated) and caches nothing."""
        self._cancel.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.terminate()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def quick(self) -> None:
        """Ids visible in the smallest level must be table ids (a few ms).

        Raises
        ------
        SampleError
            Some of them are not (the table is not this mask's).
        """
        from ..model.mask_ids import small_level_ids

        small = small_level_ids(self.sample.labels)
        if small.size and small[0] < 0:
            _raise_problem(self.sample, table_id_problem(self.sample, small, self.table_ids))
        extra = np.setdiff1d(small, self.table_ids, assume_unique=True)
        if extra.size:
            where = self.sample.paths.get("mask") or "in memory"
            _raise_problem(self.sample, f"{extra.size} of {small.size} mask ids in the smallest pyramid level have no "
                                        f"table row (e.g. {extra[:5].tolist()}) [mask: {where}].")

    def message(self) -> str:
        name = self.sample.name
        if self.stage == "checking":
            return f"Checking the cell ids of {name} against its mask: {int(100 * self.progress)} %…"
        if self.stage == "done":
            return self.problem or f"The cell ids of {name} match its mask."
        if self.stage == "failed":
            return f"Checking the cell ids of {name} failed."
        return f"Checking the cell ids of {name} against its mask…"

    def _progress(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise MeasureCancelled(f"the id check of {self.sample.name} was cancelled")
        self.progress = done / max(total, 1)

    def run(self) -> str | None:
        """Read every mask pixel (cached by file identity) and compare. Blocking; call it in a
        worker. Returns the problem line, or None when the ids agree."""
        from ..model.mask_ids import mask_ids

        if self._cancel.is_set():
            self.stage = "cancelled"
            raise MeasureCancelled(f"the id check of {self.sample.name} was cancelled")
        self.stage = "checking"
        try:
            ids = mask_ids(self.sample.labels[0], source=self.sample.paths.get("mask"), progress=self._progress,
                           scan=self._scan_in_process if self.source is not None else None)
            self.problem = table_id_problem(self.sample, ids, self.table_ids)
        except MeasureCancelled:
            self.stage = "cancelled"
            raise
        except BaseException:
            self.stage = "failed"
            raise
        self.stage = "done"
        return self.problem

    def _scan_in_process(self, labels, *, progress) -> np.ndarray:
        """:func:`~napari_carspatial.model.mask_ids.scan_ids` of the zarr array :attr:`source`
        names, in a separate, lower-priority process (:func:`_scan_main`, started as
        ``python -c``: no ``__main__`` re-import as multiprocessing's spawn does, so any script or
        notebook can open a sample). It opens the array from its file itself, writes progress
        lines to its stdout and the ids to an ``.npy`` file (no pickle); this thread only waits
        on the pipe (no GIL held). Cancel terminates the process."""
        import shutil
        import subprocess
        import sys
        import tempfile

        env = dict(os.environ)
        # the same code and packages as this process (a worktree's src first, as here)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        tmp = tempfile.mkdtemp(prefix="carspatial-id-check-")
        out = os.path.join(tmp, "ids.npy")
        proc = subprocess.Popen([sys.executable, "-c", _CHILD_CODE, json.dumps(self.source), out, str(int(ID_CHECK_NICE))],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                close_fds=True, text=True)
        self._proc = proc
        try:
            if self._cancel.is_set():   # cancelled while it started: cancel() may have missed it
                raise MeasureCancelled(f"the id check of {self.sample.name} was cancelled")
            for line in proc.stdout:      # blocks without the GIL
                kind, _, rest = line.strip().partition(" ")
                if kind == "progress":
                    done, total = (int(v) for v in rest.split())
                    progress(done, total)     # raises MeasureCancelled once cancelled
                elif kind == "ids":
                    return np.load(out, allow_pickle=False).astype(np.int64, copy=False)
                elif kind == "error":
                    raise RuntimeError(f"the id check's process failed: {rest}")
            if self._cancel.is_set():
                raise MeasureCancelled(f"the id check of {self.sample.name} was cancelled")
            raise RuntimeError(f"the id check's process ended without an answer (exit code {proc.wait()})")
        finally:
            self._proc = None
            if proc.poll() is None:
                proc.terminate()
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
            with contextlib.suppress(Exception):
                proc.stdout.close()
            shutil.rmtree(tmp, ignore_errors=True)


def process_source(sample: Sample) -> dict | None:
    """Where ``sample``'s level-0 mask is, for its deferred id check in a separate process, or None
    (the in-thread path): a lazy mask of more than :data:`PROCESS_ID_CHECK_PIXELS` pixels that is
    exactly one zarr array in a local store (``dask.array.from_zarr``, what the SpatialData and
    OME-Zarr readers give), as ``{"root", "path", "chunks"}``. Masks in memory, rasterized shapes,
    resampled or edited masks keep the in-thread path."""
    lab = sample.labels[0] if sample.labels else None
    if lab is None or not hasattr(lab, "dask") or not sample.paths.get("mask"):
        return None
    h, w = (int(v) for v in lab.shape[-2:])
    if h * w <= PROCESS_ID_CHECK_PIXELS or lab.ndim != 2:
        return None
    try:
        import zarr

        layers = list(lab.dask.layers)
        if len(layers) != 2 or not all(n.split("-")[-1] == lab.name.split("-")[-1] for n in layers) \
                or not lab.name.startswith("from-zarr-"):
            return None          # more than a plain from_zarr (resampled, edited, computed)
        arrays = [getattr(v, "value", v) for v in lab.dask.layers[f"original-{lab.name}"].values()]
        arrays = [a for a in arrays if isinstance(a, zarr.Array)]
        if len(arrays) != 1:
            return None
        a = arrays[0]
        root = getattr(a.store, "root", None)           # zarr's LocalStore
        fs = getattr(a.store, "fs", None)               # an fsspec store on the local file system
        if root is None and fs is not None:
            proto = getattr(getattr(fs, "sync_fs", fs), "protocol", ())
            if "file" in ((proto,) if isinstance(proto, str) else tuple(proto)):
                root = getattr(a.store, "path", None)
        if root is None or not os.path.isdir(root) or tuple(a.shape) != tuple(lab.shape) or a.dtype != lab.dtype:
            return None
        return {"root": os.path.abspath(os.fspath(root)), "path": str(a.path),
                "chunks": [list(map(int, c)) for c in lab.chunks]}
    except Exception:  # noqa: BLE001 - anything unexpected: the in-thread path
        log.debug("%s: mask not described; id check in a thread", sample.name, exc_info=True)
        return None


#: what the id check's process runs (``python -c``; argv: the source as JSON, the ``.npy`` path, niceness)
_CHILD_CODE = "from napari_carspatial.io.measure_job import _scan_main; _scan_main()"


def _scan_main() -> None:
    """The id check's process: lower its priority, open the zarr array ``sys.argv[1]`` names
    (:func:`process_source`), read every block, write ``progress <done> <total>`` lines now and
    then to stdout, save the ids to ``sys.argv[2]`` (``.npy``) and write ``ids`` (``error <line>``
    on failure)."""
    import sys

    src, out, nice = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if nice:
        with contextlib.suppress(OSError, AttributeError):   # no os.nice on Windows
            os.nice(nice)
    lock = threading.Lock()     # dask's threads call progress(): one line at a time on the pipe

    def send(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    try:
        import dask.array as da
        import zarr

        from ..model.mask_ids import scan_ids

        arr = zarr.open_array(store=src["root"], path=src["path"], mode="r")
        labels = da.from_zarr(arr, chunks=tuple(tuple(c) for c in src["chunks"]))
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done == 1 or done == total or now - last[0] >= _PROGRESS_EVERY_S:
                last[0] = now
                send(f"progress {done} {total}")

        np.save(out, scan_ids(labels, progress=progress), allow_pickle=False)
        send("ids")
    except BaseException as err:  # noqa: BLE001 - reported to the GUI's process as one line
        with contextlib.suppress(Exception):
            send(f"error {type(err).__name__}: {err}".replace("\n", " "))
