"""One evented session per napari viewer: the samples it shows and everything kept about them. No Qt.

:func:`session_for` returns the :class:`ViewerSession` of a viewer (created on first use; napari's
public-API proxy and the viewer it wraps share one). The session owns, per sample:

* the :class:`~napari_carspatial.model.Sample` itself (layers carry only its id in
  ``layer.metadata[META_SAMPLE]``);
* its cell colouring (:meth:`ViewerSession.coloring`), its curation view with the cell selection
  (:meth:`ViewerSession.curation`) and a cache dict (:meth:`ViewerSession.cache`) that is emptied
  when the table changes and dropped with the sample;
* whether a worker is writing its table (:meth:`ViewerSession.set_busy`).

and, per viewer, the reviewer name (written in every audit row) and the key bindings shared by
the docks (:attr:`ViewerSession.keys`).

Events (``session.events.<name>.connect(callback)``; napari ``Event`` objects with these fields):

===================  ==============================================================================
``sample_added``     ``sid``, ``sample``: the first layer of a sample entered the viewer
``sample_removed``   ``sid``, ``sample``: its last layer left; colouring, caches and views are gone
``table_changed``    ``sid``, ``columns`` (tuple of ``obs``/``var`` names, or None = any),
                     ``rows`` (int array of table rows, or None = any), ``structure`` (rows were
                     added, removed or reordered, or the table was replaced), ``reason`` (text),
                     ``rows_added`` / ``rows_removed`` (None, or with ``structure``: the change
                     only dropped these rows of the old table, keeping the others' order, and
                     appended ``rows_added`` (their positions in the new table, at its end); a
                     dock that ignores them does a full refresh, as for any ``structure``)
``labels_changed``   ``sid``, ``box`` ((y0, x0, y1, x1) level-0 px, or None): the mask was edited
``selection_changed`` ``sid``, ``n``: the curation selection changed
``busy``             ``sid``, ``busy`` (bool), ``message``: a worker started / stopped writing the
                     sample's table; docks disable their edits on that sample meanwhile
``reviewer_changed`` ``reviewer``
``saved``            ``sid``, ``path``, ``kind`` (``"read"``, ``"adjudication"``, ``"table"``, ...):
                     a save of the sample's work landed on disk (emitted on the main thread by
                     :meth:`ViewerSession.announce_saved`; a project read's "Save read N" from the
                     Curation dock or the Project dock, the adjudication's save)
===================  ==============================================================================

Whoever changes a table calls :meth:`ViewerSession.table_changed` (the curation, gating and
segmentation cores do it through their docks); the session then refreshes the labels layers'
hover features and the colouring before the event reaches the docks.

Samples read by the npe2 reader (File > Open, drag-and-drop, File > Open Sample) are made
without a viewer: :func:`pending_entry` keeps them (a small bounded hand-off) until the session
of the viewer that shows their layers claims them.

One module (540 lines) because its state and its events are one object on purpose: the per-sample
entries, the pending hand-off from the reader, the colouring / curation / cache views and the events
that announce their changes share the session's private state, and the order in which
:meth:`ViewerSession.table_changed` refreshes layers and colouring before notifying the docks only
holds if they live together.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..model import Sample, default_reviewer

log = logging.getLogger(__name__)

#: key in ``layer.metadata`` holding the sample id (the only thing a layer carries about its sample)
META_SAMPLE = "carspatial_sample"
#: key in ``layer.metadata`` holding the layer's role: "image", "labels", ...
META_ROLE = "carspatial_role"
#: key in ``layer.metadata`` holding the channel name of an image layer
META_CHANNEL = "carspatial_channel"
#: roles of the layers made from a sample's own data
ROLE_IMAGE = "image"
ROLE_LABELS = "labels"

#: in a cache key ``("table", STRUCTURE, ...)``: dropped only when table rows change
STRUCTURE = "<rows>"
#: samples read without a viewer kept until a viewer claims them (oldest dropped beyond this)
MAX_PENDING = 64

_lock = threading.Lock()
_counter = itertools.count(1)


def new_sample_id(sample: Sample) -> str:
    """A process-unique id for ``sample`` (``"s<n>-<name>"``)."""
    return f"s{next(_counter)}-{sample.name}"


class SampleEntry:
    """One sample in a session (or waiting to be claimed by one).

    Attributes
    ----------
    sid
        The id the sample's layers carry.
    sample
        The sample.
    cache
        Per-sample cache (channel plan, marker values, cell index, ...). A key
        ``("table", dep, ...)`` is dropped when the table changes: ``dep`` is the column it
        depends on (dropped when that column changes), None (any change) or :data:`STRUCTURE`
        (only when rows are added, removed or reordered).
    busy
        Message of the worker writing the table, None when idle.
    from_reader
        Made by the npe2 reader (its layers get styled and fitted when they arrive).
    """

    __slots__ = ("sid", "sample", "cache", "busy", "from_reader", "coloring", "curation", "hover_stale",
                 "__weakref__")

    def __init__(self, sid: str, sample: Sample, *, from_reader: bool = False):
        self.sid = sid
        self.sample = sample
        self.cache: dict[Any, Any] = {}
        self.busy: str | None = None
        self.from_reader = from_reader
        self.coloring = None
        self.curation = None
        #: the labels layers' hover features predate a row append / removal (rebuilt by
        #: :meth:`ViewerSession.refresh_hover`, or by the next table change that touches them)
        self.hover_stale = False

    def __repr__(self) -> str:
        return f"SampleEntry({self.sid!r})"


_pending: OrderedDict[str, SampleEntry] = OrderedDict()


def pending_entry(sample: Sample) -> SampleEntry:
    """Entry for a sample made without a viewer (the npe2 reader); claimed by the viewer's session
    when its layers are added. The same sample gets the same entry."""
    with _lock:
        for e in _pending.values():
            if e.sample is sample:
                return e
        e = SampleEntry(new_sample_id(sample), sample, from_reader=True)
        _pending[e.sid] = e
        while len(_pending) > MAX_PENDING:
            sid, _old = _pending.popitem(last=False)
            log.warning("sample %s was read but never shown in a viewer; forgotten", sid)
        return e


def _claim(sid: str) -> SampleEntry | None:
    with _lock:
        return _pending.pop(sid, None)


def sample_id_of(layer) -> str | None:
    """The sample id a layer carries (None for layers that are not ours)."""
    return (getattr(layer, "metadata", None) or {}).get(META_SAMPLE)


def role_of(layer) -> str | None:
    """The role of one of our layers ("image", "labels", "rois", ...), None for others."""
    return (getattr(layer, "metadata", None) or {}).get(META_ROLE)


def _forget_checksums(sample: Sample) -> None:
    """Drop the cached checksums of the sample's files (io keeps them for fast re-saves)."""
    try:
        from ..io.write import forget_checksums
    except ImportError:  # pragma: no cover - older io
        return
    forget_checksums(p for p in (sample.paths or {}).values() if p)


# =========================================================================== the session
class ViewerSession:
    """Everything the plugin keeps about one viewer (see the module docstring).

    Use :func:`session_for`; do not construct it directly.
    """

    def __init__(self, viewer):
        from napari.utils.events import EmitterGroup

        self.viewer = viewer
        self.events = EmitterGroup(
            source=self, sample_added=None, sample_removed=None, table_changed=None,
            labels_changed=None, selection_changed=None, busy=None, reviewer_changed=None, saved=None,
        )
        self._entries: dict[str, SampleEntry] = {}
        self._shown: set[str] = set()          # sids with a layer in the viewer
        self._styled: set[int] = set()         # hash of labels layers already styled
        self._reviewer: str | None = None
        self.reviewer_confirmed = False
        from .keys import KeyBindings

        #: the viewer's key bindings shared by the docks (see :mod:`._napari.keys`)
        self.keys = KeyBindings(viewer)

        # Plain functions (not bound methods) so the viewer's emitters keep this session alive
        # exactly as long as the viewer (napari holds bound methods weakly).
        def _on_inserted(event, _self=self):
            _self._on_inserted(event)

        def _on_removed(event, _self=self):
            _self._sync()

        viewer.layers.events.inserted.connect(_on_inserted)
        viewer.layers.events.removed.connect(_on_removed)
        self._sync()

    # ------------------------------------------------------------------ samples
    def register(self, sample: Sample) -> str:
        """Add ``sample`` to this session (no layers yet) and return its id (the same id when
        registered again)."""
        for sid, e in self._entries.items():
            if e.sample is sample:
                return sid
        with _lock:
            claimed = next((sid for sid, e in _pending.items() if e.sample is sample), None)
        e = _claim(claimed) if claimed else None
        if e is None:
            e = SampleEntry(new_sample_id(sample), sample)
        self._entries[e.sid] = e
        return e.sid

    def entry(self, sid: str | None) -> SampleEntry | None:
        if sid is None:
            return None
        e = self._entries.get(sid)
        if e is None:
            e = _claim(sid)
            if e is not None:
                self._entries[sid] = e
        return e

    def sample(self, sid: str | None) -> Sample | None:
        """The sample with id ``sid`` (None when it is not in this viewer)."""
        e = self.entry(sid)
        return None if e is None else e.sample

    def sid_of(self, sample_or_layer) -> str | None:
        """The id of a sample of this session, or the sample id a layer carries."""
        if isinstance(sample_or_layer, Sample):
            return next((sid for sid, e in self._entries.items() if e.sample is sample_or_layer), None)
        return sample_id_of(sample_or_layer)

    def sample_of(self, layer) -> Sample | None:
        """The sample a layer belongs to (None for other layers)."""
        return self.sample(sample_id_of(layer))

    def samples(self, where: Callable[[Sample], bool] | None = None) -> dict[str, Sample]:
        """Samples with at least one layer in the viewer, in layer order (optionally filtered)."""
        out: dict[str, Sample] = {}
        for layer in self.viewer.layers:
            sid = sample_id_of(layer)
            if sid and sid not in out:
                s = self.sample(sid)
                if s is not None and (where is None or where(s)):
                    out[sid] = s
        return out

    def layers_of(self, sid: str | None, role: str | None = None) -> list:
        """The viewer's layers of sample ``sid`` (optionally only those with ``role``)."""
        if sid is None:
            return []
        return [lyr for lyr in self.viewer.layers
                if sample_id_of(lyr) == sid and (role is None or role_of(lyr) == role)]

    def labels_layer(self, sid: str | None):
        """The sample's cell-mask (labels) layer, or None."""
        found = self.layers_of(sid, ROLE_LABELS)
        return found[0] if found else None

    def geometry(self, sid: str) -> tuple[tuple[float, float], tuple[float, float], tuple[str, str]]:
        """(scale, translate, units) of the sample's level-0 pixels in world coordinates
        (world = px * scale + translate), from its labels layer (or its pixel size)."""
        lyr = self.labels_layer(sid) or next(iter(self.layers_of(sid, ROLE_IMAGE)), None)
        if lyr is not None:
            return (tuple(float(v) for v in lyr.scale[-2:]), tuple(float(v) for v in lyr.translate[-2:]),
                    tuple(str(u) for u in lyr.units[-2:]))
        s = self.sample(sid)
        px = s.pixel_size_um if s is not None else None
        return ((px, px) if px else (1.0, 1.0)), (0.0, 0.0), (("um", "um") if px else ("pixel", "pixel"))

    def cache(self, sid: str) -> dict:
        """The per-sample cache dict (dropped with the sample; see :class:`SampleEntry` for the
        ``("table", dep, ...)`` keys dropped when the table changes)."""
        e = self.entry(sid)
        if e is None:
            raise KeyError(f"no sample {sid!r} in this viewer")
        return e.cache

    def cached(self, sid: str, key: tuple, make: Callable[[], Any]) -> Any:
        """``cache(sid)[key]``, made with ``make()`` the first time."""
        c = self.cache(sid)
        if key not in c:
            c[key] = make()
        return c[key]

    # ------------------------------------------------------------------ per-sample state
    def coloring(self, sid: str):
        """The :class:`~._napari.coloring.CellColoring` of sample ``sid`` (one per sample)."""
        e = self.entry(sid)
        if e is None:
            raise KeyError(f"no sample registered under id {sid!r}")
        if e.coloring is None:
            from .coloring import CellColoring

            e.coloring = CellColoring(self, sid)
        return e.coloring

    def has_coloring(self, sid: str) -> bool:
        e = self.entry(sid)
        return e is not None and e.coloring is not None

    def curation(self, sid: str, **kw):
        """The curation view (:class:`~._napari.selection.CurationView`) of sample ``sid``: the
        headless curation session of its table plus the selection and ROI layers. A new one is
        made when the sample's table was replaced (a recovered table)."""
        e = self.entry(sid)
        if e is None or e.sample.table is None:
            raise KeyError(f"no sample with a cell table registered under {sid!r}")
        cur = e.curation
        if cur is None or cur.core.curation.adata is not e.sample.table:
            from .selection import CurationView

            kw.setdefault("reviewer", self.reviewer)
            if cur is not None:
                cur.detach()
            e.curation = cur = CurationView(self, sid, **kw)
        return cur

    def has_curation(self, sid: str) -> bool:
        e = self.entry(sid)
        return e is not None and e.curation is not None

    # ------------------------------------------------------------------ reviewer
    @property
    def reviewer(self) -> str:
        """Name written in the audit trail (default ``$CARSPATIAL_REVIEWER`` or the OS user)."""
        return self._reviewer or os.environ.get("CARSPATIAL_REVIEWER") or default_reviewer()

    def set_reviewer(self, name: str, *, confirmed: bool = True) -> str:
        """Set the reviewer of this viewer (every open curation writes it from now on)."""
        name = str(name).strip() or default_reviewer()
        self._reviewer = name
        self.reviewer_confirmed = self.reviewer_confirmed or confirmed
        for e in self._entries.values():
            if e.curation is not None:
                e.curation.core.reviewer = name
        self.events.reviewer_changed(reviewer=name)
        return name

    # ------------------------------------------------------------------ changes
    def table_changed(self, sid: str, *, columns: Iterable[str] | None = None, rows=None,
                      structure: bool = False, reason: str = "", rows_added=None, rows_removed=None) -> None:
        """Tell everyone that sample ``sid``'s table changed.

        Parameters
        ----------
        columns
            The ``obs`` columns (or markers) whose values changed; None = any column.
        rows
            Table rows whose values changed; None = any row.
        structure
            Rows were added, removed or reordered, or the table object was replaced.
        reason
            What happened (for logs and docks).
        rows_added
            A row append (a segmentation commit): positions in the new table of the rows
            appended at its end. Given (or ``rows_removed``), ``structure`` is implied, and the
            colouring and hover follow incrementally; docks that ignore it refresh fully.
        rows_removed
            Positions in the old table of the rows dropped (the others keep their order).
        """
        e = self.entry(sid)
        if e is None:
            return
        incremental = rows_added is not None or rows_removed is not None
        if incremental:
            structure = True
            rows_added = np.asarray([] if rows_added is None else rows_added, dtype=np.int64).ravel()
            rows_removed = np.asarray([] if rows_removed is None else rows_removed, dtype=np.int64).ravel()
        cols = None if columns is None else tuple(str(c) for c in columns)
        rows = None if rows is None else np.asarray(rows, dtype=np.int64).ravel()
        for k in [k for k in e.cache if isinstance(k, tuple) and k and k[0] == "table"]:
            dep = k[1] if len(k) > 1 else None
            if structure or dep is None or (dep != STRUCTURE and (cols is None or dep in cols)):
                del e.cache[k]
        if structure and e.curation is not None and e.curation.core.curation.adata is not e.sample.table:
            # a segmentation commit replaced the table: the curation session follows it (its edits
            # went to the old table object, its selection had the old length); the undo stack of
            # row edits starts over, as with a new curation view
            e.curation.core.follow_table(rows_added=rows_added if incremental else None,
                                         rows_removed=rows_removed if incremental else None)
        if incremental:
            # napari rebuilds a labels layer's {label: row} index (a Python dict of 10^6 ints,
            # 0.1-0.4 s) whenever its features are set: after an append only the new cells
            # lack hover text, and the features wait for :meth:`refresh_hover` (the Segmentation
            # dock calls it when the region closes) or the next change that touches them
            e.hover_stale = True
        else:
            self._refresh_hover(sid, cols, structure)
        if e.coloring is not None and e.coloring.key is not None and (
                structure or cols is None or e.coloring.key in cols):
            try:
                if incremental:
                    e.coloring.refresh(rows_added=rows_added, rows_removed=rows_removed, rows=rows)
                else:   # named columns without a structure change: values only, no cell moved
                    e.coloring.refresh(moved=structure or cols is None)
            except (KeyError, ValueError) as err:
                log.warning("colouring of %s not refreshed: %s", sid, err)
        self.events.table_changed(sid=sid, columns=cols, rows=rows, structure=bool(structure), reason=reason,
                                  rows_added=rows_added if incremental else None,
                                  rows_removed=rows_removed if incremental else None)

    def hover_stale(self, sid: str) -> bool:
        """The labels layers' hover features wait for :meth:`refresh_hover` (after a row append)."""
        e = self.entry(sid)
        return bool(e is not None and e.hover_stale)

    def refresh_hover(self, sid: str) -> bool:
        """Rebuild the labels layers' hover features now if a row append left them behind
        (True when it did)."""
        e = self.entry(sid)
        if e is None or not e.hover_stale:
            return False
        self._refresh_hover(sid, None, True)
        return True

    def replace_table(self, sid: str, adata, *, reason: str = "table replaced") -> None:
        """Put ``adata`` in place of the sample's table (a recovered or re-read table)."""
        from ..model.curation import ROI_UNS_KEY, rois_from_frame

        e = self.entry(sid)
        if e is None:
            raise KeyError(f"no sample {sid!r} in this viewer")
        e.sample.table = adata
        e.sample.rois[:] = rois_from_frame(adata.uns.get(ROI_UNS_KEY))
        self.table_changed(sid, structure=True, reason=reason)

    def labels_changed(self, sid: str, box=None) -> None:
        """The sample's mask pyramid was edited: show it again in its labels layers."""
        s = self.sample(sid)
        if s is None or not s.labels:
            return
        pyr = s.labels
        for lyr in self.layers_of(sid, ROLE_LABELS):
            lyr.data = pyr if len(pyr) > 1 else pyr[0]
        self.events.labels_changed(sid=sid, box=None if box is None else tuple(int(v) for v in box))

    def _refresh_hover(self, sid: str, cols, structure: bool) -> None:
        from ..model.cell_types import find_cell_type_key
        from .layers import hover_features

        s = self.sample(sid)
        e = self.entry(sid)
        if s is None or s.table is None or e is None:
            return
        if e.hover_stale:      # rows were appended / dropped since the features were made
            structure, e.hover_stale = True, False
        key = find_cell_type_key(s.table)
        if not structure and cols is not None and key not in cols:
            return
        feats = hover_features(s, type_key=key)
        if feats is None:
            return
        for lyr in self.layers_of(sid, ROLE_LABELS):
            try:
                cur = lyr.features
                if not structure and len(cur) == len(feats) and "index" in cur.columns:
                    # same rows: only the values are new (setting ``features`` rebuilds napari's
                    # label index, ~1 s at 10^6 cells)
                    for c in feats.columns:
                        if c != "index":
                            cur[c] = feats[c].array
                    continue
                lyr.features = feats
            except (ValueError, TypeError) as err:   # pragma: no cover
                log.warning("hover features of %s not refreshed: %s", lyr.name, err)

    def announce_saved(self, sid: str, path, *, kind: str = "table") -> None:
        """Tell everyone that a save of sample ``sid``'s work landed at ``path`` (the ``saved``
        event; call it on the main thread, after the file is written)."""
        if self.entry(sid) is None:
            return
        self.events.saved(sid=sid, path=os.fspath(path), kind=str(kind))

    # ------------------------------------------------------------------ busy
    def set_busy(self, sid: str, message: str | None) -> None:
        """Mark sample ``sid`` busy (a worker writes its table) with ``message``, or idle (None)."""
        e = self.entry(sid)
        if e is None:
            return
        e.busy = message or None
        self.events.busy(sid=sid, busy=e.busy is not None, message=e.busy or "")

    def busy(self, sid: str | None) -> str | None:
        """What keeps sample ``sid`` busy, or None when it is idle."""
        e = self.entry(sid)
        return None if e is None else e.busy

    @contextlib.contextmanager
    def busy_while(self, sid: str, message: str):
        """``with session.busy_while(sid, "saving"):`` marks the sample busy inside the block."""
        self.set_busy(sid, message)
        try:
            yield
        finally:
            self.set_busy(sid, None)

    # ------------------------------------------------------------------ layers coming and going
    def _on_inserted(self, event) -> None:
        layer = event.value
        sid = sample_id_of(layer)
        if sid is None:
            return
        e = self.entry(sid)
        if e is None:
            return
        if role_of(layer) == ROLE_LABELS and hash(layer) not in self._styled:
            self._style(layer, e)
        elif role_of(layer) == ROLE_IMAGE:
            self._below_cells(layer, sid)
        self._sync()

    def _below_cells(self, layer, sid: str) -> None:
        """Move an image layer of sample ``sid`` inserted above the sample's cell layers (outlines,
        class colours, values, ...) under the lowest of them: File > Open appends the channels one
        by one, and a dock colouring the cells as soon as the first layer arrived put the class
        layer below the later channels (additive stains tinted the class colours). The tiles of a
        montage stay below the images on purpose (:func:`.reader.tiles_first`)."""
        layers = self.viewer.layers
        i = layers.index(layer)
        cells = [j for j, lyr in enumerate(layers)
                 if j < i and sample_id_of(lyr) == sid and role_of(lyr) not in (ROLE_IMAGE, "tiles", None)]
        if cells:
            layers.move(i, min(cells))

    def mark_styled(self, layer) -> None:
        """``layer`` got its style where it was made (the API path): leave it as it is."""
        self._styled.add(hash(layer))

    def _style(self, layer, e: SampleEntry) -> None:
        from .layers import show_scale_bar, style_labels

        self._styled.add(hash(layer))
        style_labels(layer)
        if e.from_reader:   # File > Open: fit everything opened (a montage of acquisitions included)
            self.viewer.reset_view()
            if e.sample.pixel_size_um:
                show_scale_bar(self.viewer)

    def _sync(self) -> None:
        """Claim pending samples shown here, style their labels, emit added / removed."""
        alive: list[str] = []
        for layer in self.viewer.layers:
            sid = sample_id_of(layer)
            if sid is None:
                continue
            e = self.entry(sid)
            if e is None:
                continue
            if sid not in alive:
                alive.append(sid)
            if role_of(layer) == ROLE_LABELS and hash(layer) not in self._styled:
                self._style(layer, e)
        for sid in alive:
            if sid not in self._shown:
                self._shown.add(sid)
                self.events.sample_added(sid=sid, sample=self._entries[sid].sample)
        for sid in [s for s in self._shown if s not in alive]:
            self._shown.discard(sid)
            e = self._entries.pop(sid, None)
            if e is not None:
                self._drop(e)
                self.events.sample_removed(sid=sid, sample=e.sample)
        live = {hash(lyr) for lyr in self.viewer.layers}
        self._styled &= live

    def _drop(self, e: SampleEntry) -> None:
        if e.curation is not None:
            e.curation.detach()
        e.coloring = None
        e.curation = None
        e.cache.clear()
        _forget_checksums(e.sample)


_sessions: weakref.WeakValueDictionary[int, ViewerSession] = weakref.WeakValueDictionary()


def session_for(viewer) -> ViewerSession:
    """The :class:`ViewerSession` of ``viewer`` (made on first use).

    napari viewers hash by identity and napari's public-API proxy forwards ``hash``, so every
    proxy of one viewer (each dock gets its own) finds the same session. The session lives as
    long as the viewer: the viewer's layer-list events hold it.
    """
    key = hash(viewer)
    s = _sessions.get(key)
    if s is None:
        s = ViewerSession(viewer)
        _sessions[key] = s
    return s
