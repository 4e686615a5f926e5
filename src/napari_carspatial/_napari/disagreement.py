"""The disagreement layer: cells coloured by which way two reads of a sample differ, stepping
through them, and the adjudicator's decisions. No Qt; public napari API only.

:class:`DisagreementView` works on a sample shown in a viewer whose table holds both reads' call
columns (``<type>_read_<reader>``: a :class:`~napari_carspatial.review.ReadPair` table, or an
adjudication table). It

* adds one categorical column, ``disagreement <read 1> → <read 2>``, whose value is
  ``"<call of read 1> → <call of read 2>"`` for every cell the reads differ on and missing for
  the others, and colours the cells by it through the sample's
  :class:`~napari_carspatial._napari.CellColoring` (so the Legend dock shows the pairs, their
  counts and colours; agreeing cells stay uncoloured);
* steps through the disagreements (:meth:`~DisagreementView.step`, optionally only one pair of
  calls or only the undecided ones): the camera centres on the cell, a ring marks it, and
  :meth:`~DisagreementView.current` gives both calls and the decision;
* for the adjudicator (with an :class:`~napari_carspatial.review.AdjudicationSession`): decide the
  current cell, the cells shown, or a whole pair of calls, take one reader's calls, decide region
  classes. Every decision is the adjudication session's (one audit row each); the view copies the
  adjudicated column back into the shown table and tells the session (``table_changed``).

The pure part (:func:`disagreement_calls`) needs no viewer.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model import SampleError, colors_key, instance_ids
from ..model.palette import DEFAULT_PALETTE
from .session import STRUCTURE

log = logging.getLogger(__name__)

ARROW = " → "
#: edge colours of read 1's and read 2's regions
READER_COLORS = ("#ffffff", "#ff9f1c")
#: the field of view (µm) the first step zooms to
FIELD_UM = 150.0
#: ``layer.metadata`` role of the readers' region layers
ROLE_READER_ROIS = "reader_rois"


def disagreement_key(readers) -> str:
    """Name of the disagreement column: ``"disagreement alice → bob"`` (read 1 → read 2)."""
    r1, r2 = readers
    return f"disagreement {r1}{ARROW}{r2}"


def pair_label(call_a, call_b) -> str:
    """``"Tumor → Macrophage"``; a missing call is ``"(none)"``."""
    a = "(none)" if call_a is None else str(call_a)
    b = "(none)" if call_b is None else str(call_b)
    return f"{a}{ARROW}{b}"


def _calls(table, key: str) -> np.ndarray:
    s = table.obs[key]
    return s.astype(object).where(s.notna(), None).to_numpy()


def _codes(table, key: str) -> tuple[np.ndarray, list[str]]:
    """Per-row category codes (-1 = missing) and the categories as text of ``obs[key]``."""
    s = table.obs[key]
    c = s.array if isinstance(s.dtype, pd.CategoricalDtype) else pd.Categorical(s.astype(object).where(s.notna(), None))
    return np.asarray(c.codes, dtype=np.int64), [str(x) for x in c.categories]


def _value(v):
    """One call as text (None when missing)."""
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def disagreement_calls(table, key_a: str, key_b: str) -> pd.Categorical:
    """Per cell ``"<call a> → <call b>"`` where the two call columns differ, missing where they agree.

    Two missing calls agree (as in the adjudication). Categories are ordered by count (most
    first), then by name. Vectorised: one pass over the cells' category codes.
    """
    ca, la = _codes(table, key_a)
    cb, lb = _codes(table, key_b)
    union = list(dict.fromkeys([*la, *lb]))
    pos = {c: i for i, c in enumerate(union)}
    ia = np.array([pos[c] for c in la] + [-1], dtype=np.int64)   # index -1 (a missing call) -> -1
    ib = np.array([pos[c] for c in lb] + [-1], dtype=np.int64)
    ua, ub = ia[ca], ib[cb]
    differ = ua != ub
    k = len(union) + 1
    pair = (ua + 1) * k + (ub + 1)
    uniq, inv, counts = np.unique(pair[differ], return_inverse=True, return_counts=True)
    names = [pair_label(None if a < 0 else union[a], None if b < 0 else union[b])
             for a, b in zip((uniq // k - 1).tolist(), (uniq % k - 1).tolist(), strict=True)]
    order = sorted(range(len(uniq)), key=lambda j: (-int(counts[j]), names[j]))
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    codes = np.full(len(pair), -1, dtype=np.int64)
    codes[differ] = rank[np.asarray(inv).ravel()]
    return pd.Categorical.from_codes(codes, categories=[names[j] for j in order])


def pair_colors(n: int) -> list[str]:
    """``n`` distinct colours for the pairs (the default palette in order, then spaced hues)."""
    import colorsys

    from matplotlib.colors import to_hex

    out = list(DEFAULT_PALETTE[:n])
    k = 0
    while len(out) < n:
        h = (0.13 + 0.618033988749895 * k) % 1.0
        out.append(to_hex(colorsys.hsv_to_rgb(h, 0.65, 0.95)))
        k += 1
    return out


@dataclass
class Step:
    """One disagreeing cell as the stepping shows it."""

    index: int            # position in the current list (0-based)
    n: int                # length of the current list
    row: int              # table row
    cell_id: int
    calls: dict           # {reader: call}
    decision: str | None  # the adjudicated call (None: undecided or no adjudication)
    x: float
    y: float

    def describe(self) -> str:
        calls = " · ".join(f"{r}: {c if c is not None else '(none)'}" for r, c in self.calls.items())
        dec = f" · decision: {self.decision}" if self.decision is not None else ""
        return f"cell {self.cell_id}: {calls}{dec}"


def visible_centroid(labels, cell_id: int, xy, *, area_px=None) -> tuple[float, float]:
    """Where a cell is on the slide: the centroid of its mask pixels near the table's centroid
    ``xy`` (x, y level-0 pixels). A cell cut by the image border has its table centroid off the
    image (the table measured the whole cell); the ring and the view go to its visible part. Only a
    small window of the mask is read (lazy masks stay lazy)."""
    try:
        data = labels.data[0] if getattr(labels, "multiscale", False) else labels.data
        h, w = int(data.shape[-2]), int(data.shape[-1])
    except (AttributeError, IndexError, TypeError):
        return float(xy[0]), float(xy[1])
    x = float(np.clip(xy[0], 0, w - 1))
    y = float(np.clip(xy[1], 0, h - 1))
    r = int(np.ceil(2 * np.sqrt(max(float(area_px or 100.0), 1.0)))) + 2
    y0, y1, x0, x1 = max(0, int(y) - r), min(h, int(y) + r + 1), max(0, int(x) - r), min(w, int(x) + r + 1)
    try:
        win = np.asarray(data[..., y0:y1, x0:x1]).reshape(y1 - y0, x1 - x0)
    except (ValueError, TypeError):
        return x, y
    yy, xx = np.nonzero(win == int(cell_id))
    if yy.size == 0:
        return x, y
    return float(xx.mean() + x0), float(yy.mean() + y0)


class DisagreementView:
    """Disagreements of one sample shown in a viewer (see the module docstring).

    Parameters
    ----------
    session
        The viewer's :class:`~napari_carspatial._napari.ViewerSession`.
    sid
        The sample (its table holds ``call_keys``' columns).
    readers
        (read 1, read 2) reviewer ids.
    call_keys
        ``{reader: call column}``.
    adjudication
        The open :class:`~napari_carspatial.review.AdjudicationSession` whose table has the same
        rows as the shown one (the adjudicator decides), or None (look only).
    reader_rois
        ``{reader: [ROI, ...]}`` to show as one Shapes layer per reader (optional).
    """

    def __init__(self, session, sid: str, *, readers, call_keys: dict, adjudication=None, reader_rois=None):
        self.session = session
        self.sid = sid
        self.readers = tuple(readers)
        self.call_keys = dict(call_keys)
        self.adjudication = adjudication
        self.reader_rois = dict(reader_rois or {})
        self.key = disagreement_key(self.readers)
        t = self.table
        if adjudication is not None and not np.array_equal(instance_ids(adjudication.table), instance_ids(t)):
            raise SampleError("the shown table and the adjudication hold different cells.", path=adjudication.path)
        r1, r2 = self.readers
        col = disagreement_calls(t, self.call_keys[r1], self.call_keys[r2])
        t.obs[self.key] = col
        t.uns[colors_key(self.key)] = np.array(pair_colors(len(col.categories)), dtype=object)
        self._disagree = np.asarray(pd.notna(col), dtype=bool)
        self.ids = instance_ids(t)
        self.pair: tuple[str, str] | None = None
        self.undecided_only = False
        self.rows = np.flatnonzero(self._disagree)
        self.position = -1
        self._zoomed = False
        session.table_changed(sid, columns=(self.key,), reason="disagreement column")

    # ------------------------------------------------------------------ state
    @property
    def sample(self):
        s = self.session.sample(self.sid)
        if s is None:
            raise SampleError(f"sample {self.sid!r} is no longer open.")
        return s

    @property
    def table(self):
        return self.sample.table

    @property
    def can_decide(self) -> bool:
        """An open adjudication: decisions are possible."""
        return self.adjudication is not None and not self.adjudication.closed

    @property
    def decided_key(self) -> str | None:
        return None if self.adjudication is None else self.adjudication.adjudicated_key

    def decisions(self) -> np.ndarray:
        """The adjudicated call per row (None where undecided or without an adjudication)."""
        if self.decided_key is None or self.decided_key not in self.table.obs:
            return np.full(self.table.n_obs, None, dtype=object)
        return _calls(self.table, self.decided_key)

    @property
    def n_disagreements(self) -> int:
        return int(self._disagree.sum())

    def n_undecided(self) -> int:
        return int((self._disagree & pd.isna(self.decisions())).sum())

    def pairs(self) -> pd.DataFrame:
        """``pair, <read 1>, <read 2>, n, n_undecided`` per pair of calls (most first)."""
        r1, r2 = self.readers
        col = self.table.obs[self.key]
        a, b = _calls(self.table, self.call_keys[r1]), _calls(self.table, self.call_keys[r2])
        und = pd.isna(self.decisions())
        rows = []
        for cat in col.cat.categories:
            m = (col == cat).to_numpy()
            i = int(np.flatnonzero(m)[0])
            rows.append({"pair": str(cat), r1: a[i], r2: b[i], "n": int(m.sum()), "n_undecided": int((m & und).sum())})
        return pd.DataFrame(rows, columns=["pair", r1, r2, "n", "n_undecided"])

    def summary(self) -> str:
        """``"37 disagreeing cells in 5 pairs; 12 undecided"`` (or "the reads agree on every cell")."""
        n = self.n_disagreements
        if n == 0:
            return "the reads agree on every cell"
        n_pairs = len(self.table.obs[self.key].cat.categories)
        text = f"{n:,} disagreeing cell{'s' if n != 1 else ''} in {n_pairs} pair{'s' if n_pairs != 1 else ''} of calls"
        if self.adjudication is not None:
            text += f"; {self.n_undecided():,} undecided"
        return text

    # ------------------------------------------------------------------ display
    def show(self, *, mode: str = "filled"):
        """Colour the cells by the disagreement column (agreeing cells uncoloured); returns the layer."""
        layer = self.session.coloring(self.sid).color_by_category(self.key, mode=mode)
        self.show_reader_rois()
        return layer

    def show_reader_rois(self) -> list:
        """One Shapes layer per reader with their regions: read 1 white, read 2 orange (the two
        outlines of one class must be told apart), each region labelled ``<reader>: <name>``."""
        from .session import META_ROLE, META_SAMPLE

        viewer = self.session.viewer
        scale, translate, units = self.session.geometry(self.sid)
        out = []
        for r, color in zip(self.readers, READER_COLORS, strict=False):
            rois = self.reader_rois.get(r) or []
            if not rois:
                continue
            name = f"{self.sample.name}: regions of {r}"
            old = [lyr for lyr in self.session.layers_of(self.sid, ROLE_READER_ROIS) if lyr.name == name]
            for lyr in old:
                viewer.layers.remove(lyr)
            feats = pd.DataFrame({"name": [x.name for x in rois], "cls": [x.cls for x in rois]})
            layer = viewer.add_shapes(
                [np.asarray(x.polygon_yx, float) for x in rois], shape_type="polygon",
                edge_color=color, face_color="transparent",
                edge_width=max(1.0, (self.sample.shape_yx or (600,))[0] / 500), features=feats,
                text={"string": f"{r}: {{name}} ({{cls}})", "color": color, "size": 10, "anchor": "upper_left"},
                name=name, scale=scale, translate=translate, units=units,
                metadata={META_SAMPLE: self.sid, META_ROLE: ROLE_READER_ROIS})
            out.append(layer)
        return out

    # ------------------------------------------------------------------ the list to step through
    def set_filter(self, *, pair: tuple[str, str] | str | None = None, undecided_only: bool = False) -> int:
        """Step through one pair of calls only (``(call a, call b)`` or its label; None: all) and/or
        only the undecided cells. Returns the length of the list (the position restarts)."""
        if isinstance(pair, str):
            if pair not in list(self.table.obs[self.key].cat.categories):
                raise SampleError(f"no disagreement {pair!r} in {self.sample.name}.")
            self.pair = pair
        elif pair is not None:
            self.pair = pair_label(*pair)
        else:
            self.pair = None
        self.undecided_only = bool(undecided_only)
        self.rows = self._current_rows()
        self.position = -1
        return len(self.rows)

    def _current_rows(self) -> np.ndarray:
        m = self._disagree.copy()
        if self.pair is not None:
            m &= (self.table.obs[self.key] == self.pair).to_numpy()
        if self.undecided_only:
            m &= pd.isna(self.decisions())
        return np.flatnonzero(m)

    def _refresh_rows(self) -> None:
        """After decisions: recompute the list, staying at the same place (the next cell when the
        current one left the list)."""
        cur = int(self.rows[self.position]) if 0 <= self.position < len(self.rows) else None
        self.rows = self._current_rows()
        if cur is None or not len(self.rows):
            self.position = -1 if not len(self.rows) else min(max(self.position, -1), len(self.rows) - 1)
            return
        k = int(np.searchsorted(self.rows, cur))
        if k < len(self.rows) and self.rows[k] == cur:
            self.position = k
        else:   # the current cell left the list: the next one is at k; step() moves from k - 1
            self.position = k - 1

    def step(self, direction: int = 1, *, center: bool = True) -> Step | None:
        """Go to the next (``+1``) or previous (``-1``) disagreement (wrapping around); centres the
        camera on it. None when the list is empty."""
        n = len(self.rows)
        if n == 0:
            self.position = -1
            return None
        self.position = (self.position + (1 if direction >= 0 else -1)) % n
        return self.go(self.position, center=center)

    def go(self, index: int, *, center: bool = True) -> Step | None:
        """Go to entry ``index`` of the current list."""
        if not len(self.rows):
            return None
        self.position = int(index) % len(self.rows)
        st = self.current()
        if center and st is not None:
            self._center(st)
        return st

    def current(self) -> Step | None:
        """The current disagreement (None before the first step or when the list is empty)."""
        if not (0 <= self.position < len(self.rows)):
            return None
        row = int(self.rows[self.position])
        t = self.table
        calls = {r: _value(t.obs[self.call_keys[r]].iloc[row]) for r in self.readers}
        key = self.decided_key
        dec = _value(t.obs[key].iloc[row]) if key is not None and key in t.obs else None
        xy = np.asarray(t.obsm["spatial"], float)[row] if "spatial" in t.obsm else (np.nan, np.nan)
        return Step(index=self.position, n=len(self.rows), row=row, cell_id=int(self.ids[row]), calls=calls,
                    decision=dec, x=float(xy[0]), y=float(xy[1]))

    def _center(self, st: Step) -> None:
        from .inspect import CellIndex, cell_info, cell_zoom, center_on, ring_marker_layer

        labels = self.session.labels_layer(self.sid)
        if labels is None or not np.isfinite([st.x, st.y]).all():
            return
        viewer = self.session.viewer
        try:
            canvas = min(int(v) for v in viewer.canvas.size)
        except (AttributeError, TypeError, ValueError):
            canvas = 800
        # the first step zooms to a field of ~150 µm around the cell; later steps keep the reviewer's zoom
        zoom = None if self._zoomed else cell_zoom(self.sample, field_um=FIELD_UM, canvas_px=canvas)
        index = self.session.cached(self.sid, ("table", STRUCTURE, "review_cell_index"), lambda: CellIndex(self.sample))
        info = cell_info(index, st.cell_id)
        xy = visible_centroid(labels, st.cell_id, (st.x, st.y), area_px=getattr(info, "area_px", None))
        center_on(viewer, labels, xy, zoom=zoom)
        self._zoomed = True
        if info is not None:
            info = dataclasses.replace(info, centroid_px=xy)
            active = viewer.layers.selection.active
            ring_marker_layer(viewer, labels, self.sid, info)
            if active is not None and active in viewer.layers:
                viewer.layers.selection.active = active

    # ------------------------------------------------------------------ decisions (adjudicator)
    def _adj(self):
        if not self.can_decide:
            raise SampleError(f"{self.sample.name}: decisions need an open adjudication (you are not its "
                              "adjudicator, or it is closed).")
        return self.adjudication

    def _ids_of(self, rows) -> np.ndarray:
        if rows is None:
            st = self.current()
            if st is None:
                raise SampleError("no disagreement is selected: step to one first.")
            rows = [st.row]
        return self.ids[np.asarray(rows, dtype=np.int64)]

    def _sync(self, reason: str) -> None:
        adj = self.adjudication
        key = adj.adjudicated_key
        self.table.obs[key] = adj.table.obs[key].copy()
        self._refresh_rows()
        self.session.table_changed(self.sid, columns=(key,), reason=reason)

    def decide(self, decision: str, *, note: str = "", rows=None) -> int:
        """Decide the current cell (or table ``rows``) as ``decision`` (a type or ``"(excluded)"``)."""
        n = self._adj().decide(self._ids_of(rows), decision, note=note)
        self._sync(f"adjudicated {n} cell(s) as {decision}")
        return n

    def accept(self, reader: str, *, note: str = "", rows=None) -> int:
        """Take ``reader``'s call for the current cell (or ``rows``)."""
        n = self._adj().accept(self._ids_of(rows), reader, note=note)
        self._sync(f"adjudicated {n} cell(s): {reader}'s call")
        return n

    def decide_shown(self, decision: str, *, note: str = "") -> int:
        """Decide every cell of the current list (a pair of calls, the undecided ones, ...) in bulk."""
        if not len(self.rows):
            raise SampleError("no disagreements in the current list.")
        return self.decide(decision, note=note, rows=self.rows.copy())

    def accept_shown(self, reader: str, *, note: str = "") -> int:
        """Take ``reader``'s calls for every cell of the current list."""
        if not len(self.rows):
            raise SampleError("no disagreements in the current list.")
        return self.accept(reader, note=note, rows=self.rows.copy())

    def decide_pair(self, call_a: str, call_b: str, decision: str, *, note: str = "") -> int:
        """Decide every cell where read 1 said ``call_a`` and read 2 ``call_b``."""
        n = self._adj().decide_pair(call_a, call_b, decision, note=note)
        self._sync(f"adjudicated {pair_label(call_a, call_b)} as {decision}")
        return n

    def region_disagreements(self) -> pd.DataFrame:
        """ROI classes whose regions differ (``class, dice, iou, area_a, area_b, decision, note``)."""
        if self.adjudication is None:
            from ..review import region_agreement

            r1, r2 = self.readers
            ra = region_agreement(self.reader_rois.get(r1, []), self.reader_rois.get(r2, []),
                                  pixel_size_um=self.sample.pixel_size_um, reader_a=r1, reader_b=r2)
            pc = ra.per_class.loc[ra.disagreeing_classes]
            out = pc[["dice", "iou", "area_a", "area_b", "note"]].copy()
            out["decision"] = None
            return out.reset_index()
        return self.adjudication.region_disagreements()

    def decide_region(self, cls: str, choice: str, *, note: str = "") -> list:
        """Decide the regions of one ROI class: a reader's id, ``union``, ``intersection`` or ``none``."""
        return self._adj().decide_region(cls, choice, note=note)

    def remaining(self) -> dict:
        """``{"cells": undecided cells, "regions": undecided region classes}`` (adjudication only)."""
        if self.adjudication is None:
            return {"cells": self.n_disagreements, "regions": list(self.region_disagreements()["class"])}
        return self.adjudication.remaining()

    def categories(self) -> list[str]:
        """Calls a decision can pick: both reads' calls (and ``"(excluded)"``), in the readers' order."""
        out: list[str] = []
        for r in self.readers:
            s = self.table.obs[self.call_keys[r]]
            cats = s.cat.categories if isinstance(s.dtype, pd.CategoricalDtype) else pd.unique(s.dropna())
            out.extend(str(c) for c in cats)
        return list(dict.fromkeys(out))


__all__ = ["ARROW", "ROLE_READER_ROIS", "DisagreementView", "Step", "disagreement_calls", "disagreement_key",
           "pair_colors", "pair_label"]
