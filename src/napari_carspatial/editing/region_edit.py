"""One open segmentation edit region with its own undo stack, headless.

:class:`RegionEdit` is what the Segmentation dock drives (and what a script uses the same way)::

    from napari_carspatial.editing import RegionEdit, SegmentationEditor

    ed = SegmentationEditor(sample)
    edit = RegionEdit(ed, ed.region(0, 512, 0, 512))
    edit.merge([12, 13])            # crop pixels change, one undo step
    edit.split_by_line([[10, 5], [10, 40]])
    edit.undo()                     # the exact pixels come back
    result = edit.commit()          # written to the mask store, cells re-measured, table updated

``data`` is the crop being edited: the GUI hands it to a napari Labels layer that paints into it;
:meth:`record_paint` turns pixels painted since the last step into one undo step (the dock calls
it after each napari paint stroke, on the layer's public ``paint`` event). Steps keep only the
bounding box of what changed (old and new pixels), so undo / redo restore exactly and cheaply.
No napari, no Qt.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from .seg_ops import (
    delete_cells,
    draw_cell,
    grow_cell,
    merge_cells,
    shrink_cell,
    split_cell_by_line,
    split_cell_by_seeds,
)
from .segmentation import CommitResult, EditRegion, SegmentationEditor

log = logging.getLogger(__name__)

#: undo steps kept per region
MAX_UNDO = 50


@dataclass
class Step:
    """One undoable change of the crop: the pixels of a box before and after."""

    name: str
    y0: int
    y1: int
    x0: int
    x1: int
    old: np.ndarray
    new: np.ndarray


class RegionEdit:
    """An edit region of a sample with undo / redo, a cell selection and the edit operations.

    Parameters
    ----------
    editor
        The sample's :class:`~napari_carspatial.editing.SegmentationEditor`.
    region
        The crop (:meth:`SegmentationEditor.region`).
    max_undo
        Undo steps kept (older ones are dropped).
    """

    def __init__(self, editor: SegmentationEditor, region: EditRegion, *, max_undo: int = MAX_UNDO):
        self.editor = editor
        self.region = region
        self.max_undo = int(max_undo)
        self.undo_stack: list[Step] = []
        self.redo_stack: list[Step] = []
        #: operations since the last commit (named in the commit's audit row)
        self.pending: list[str] = []
        #: selected cell ids (operations without explicit ids act on them)
        self.selection: list[int] = []
        self._shadow = region.data.copy()
        #: the last change made here (an operation, undo or redo; not napari's own painting, which
        #: napari has drawn already) as ``(y0, y1, x0, x1, old, new)`` crop pixels: a view shows it
        #: by redrawing only that box
        self.last_change: tuple | None = None
        #: ids in the crop (kept up to date by :meth:`ids_after_commit`; None until counted)
        self.present: np.ndarray | None = None

    # ------------------------------------------------------------------ state
    @property
    def data(self) -> np.ndarray:
        """The crop being edited (level-0 pixels of :attr:`bbox`)."""
        return self.region.data

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return self.region.bbox

    @property
    def dirty(self) -> bool:
        """Pixels differ from what was last committed."""
        return bool((self.region.data != self.region.base).any())

    @property
    def can_undo(self) -> bool:
        return bool(self.undo_stack) or bool((self.region.data != self._shadow).any())

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    @property
    def undo_name(self) -> str | None:
        return self.undo_stack[-1].name if self.undo_stack else None

    @property
    def redo_name(self) -> str | None:
        return self.redo_stack[-1].name if self.redo_stack else None

    def n_cells(self) -> int:
        """Cells in the crop (counted once, then followed through commits)."""
        if self.present is None:
            ids = np.unique(self.region.data)
            self.present = ids[ids > 0].astype(np.int64)
        return int(self.present.size)

    def ids_after_commit(self, result) -> np.ndarray:
        """The crop's ids after ``result`` (a :class:`CommitResult`): added ones in, removed ones
        out (a cell edited out of the crop but still outside it may stay listed: a superset)."""
        if self.present is None:
            self.n_cells()
        ids = np.setdiff1d(self.present, np.asarray(result.removed, dtype=np.int64))
        self.present = np.union1d(ids, np.asarray(result.added, dtype=np.int64))
        return self.present

    # ------------------------------------------------------------------ steps
    def record_paint(self, name: str = "paint") -> bool:
        """Pixels changed since the last step (napari painting) become one step ``name``."""
        return self._push(name)

    def _push(self, name: str) -> bool:
        d, s = self.region.data, self._shadow
        diff = d != s
        if not diff.any():
            return False
        rows = np.flatnonzero(diff.any(axis=1))
        cols = np.flatnonzero(diff.any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        step = Step(name, y0, y1, x0, x1, s[y0:y1, x0:x1].copy(), d[y0:y1, x0:x1].copy())
        self.undo_stack.append(step)
        self.last_change = (y0, y1, x0, x1, step.old, step.new)
        s[y0:y1, x0:x1] = d[y0:y1, x0:x1]
        del self.undo_stack[:-self.max_undo]
        self.redo_stack.clear()
        self.pending.append(name)
        return True

    def _restore(self, step: Step, *, before: bool) -> None:
        block = step.old if before else step.new
        self.last_change = (step.y0, step.y1, step.x0, step.x1,
                            np.array(self.region.data[step.y0:step.y1, step.x0:step.x1]), block)
        self.region.data[step.y0:step.y1, step.x0:step.x1] = block
        self._shadow[step.y0:step.y1, step.x0:step.x1] = block

    def undo(self) -> str | None:
        """Undo the last step (paint since the last step counts as one); returns its name."""
        self.record_paint()
        if not self.undo_stack:
            return None
        step = self.undo_stack.pop()
        self._restore(step, before=True)
        self.redo_stack.append(step)
        self.pending.append(f"undo {step.name}")
        self._drop_missing_from_selection()
        return step.name

    def redo(self) -> str | None:
        """Redo the last undone step; returns its name (None when there is none)."""
        if not self.redo_stack:
            return None
        step = self.redo_stack.pop()
        self._restore(step, before=False)
        self.undo_stack.append(step)
        self.pending.append(f"redo {step.name}")
        self._drop_missing_from_selection()
        return step.name

    # ------------------------------------------------------------------ selection
    def select(self, ids) -> list[int]:
        """Replace the selection by the ``ids`` present in the crop."""
        self.selection = [int(i) for i in ids if int(i) > 0]
        self._drop_missing_from_selection()
        return list(self.selection)

    def toggle(self, cell: int) -> list[int]:
        """Add ``cell`` to the selection, or remove it when it is selected."""
        if cell in self.selection:
            self.selection.remove(cell)
        else:
            self.selection.append(int(cell))
        self._drop_missing_from_selection()
        return list(self.selection)

    def clear_selection(self) -> None:
        self.selection = []

    def _drop_missing_from_selection(self) -> None:
        if self.selection:
            present = set(np.unique(self.region.data[np.isin(self.region.data, self.selection)]).tolist())
            self.selection = [c for c in self.selection if c in present]

    def cell_at(self, y: int, x: int) -> int | None:
        """The cell id at crop pixel (y, x), None on background or outside."""
        d = self.region.data
        if 0 <= y < d.shape[0] and 0 <= x < d.shape[1] and d[y, x]:
            return int(d[y, x])
        return None

    def cell_under(self, yx) -> int | None:
        """The cell most of the crop points ``yx`` (an (n, 2) array) fall in, or None."""
        d = self.region.data
        yx = np.round(np.asarray(yx, float)).astype(int).reshape(-1, 2)
        ok = (yx[:, 0] >= 0) & (yx[:, 0] < d.shape[0]) & (yx[:, 1] >= 0) & (yx[:, 1] < d.shape[1])
        v = d[yx[ok, 0], yx[ok, 1]]
        v = v[v > 0]
        if not v.size:
            return None
        vals, counts = np.unique(v, return_counts=True)
        return int(vals[np.argmax(counts)])

    def _ids(self, ids, at_least: int) -> list[int]:
        ids = list(self.selection if ids is None else ids)
        if len(ids) < at_least:
            raise ValueError(f"select {'at least ' + str(at_least) + ' cells' if at_least > 1 else 'a cell'} first")
        return [int(i) for i in ids]

    # ------------------------------------------------------------------ operations
    def apply(self, name: str, fn, *args, **kw) -> list[int] | None:
        """Run ``fn(data, *args, **kw)`` (an operation of :mod:`.seg_ops`) as one undo step.

        Returns the affected ids, or None when nothing changed. Raises ``ValueError`` /
        ``IndexError`` from the operation (nothing changed then).
        """
        self.record_paint()
        affected = fn(self.region.data, *args, **kw)
        if not affected or not self._push(name):
            return None
        self._drop_missing_from_selection()
        return sorted(int(a) for a in affected)

    def merge(self, ids=None) -> list[int] | None:
        """Merge ``ids`` (default: the selection, at least two) into one cell."""
        out = self.apply("merge_cells", merge_cells, self._ids(ids, 2))
        self.clear_selection()
        return out

    def delete(self, ids=None) -> list[int] | None:
        """Delete ``ids`` (default: the selection)."""
        out = self.apply("delete_cells", delete_cells, self._ids(ids, 1))
        self.clear_selection()
        return out

    def _resize(self, fn, name: str, ids, n: int):
        cells = self._ids(ids, 1)

        def many(lab, cells, k):
            out = set()
            for c in cells:
                out |= fn(lab, int(c), k)
            return out

        return self.apply(name, many, cells, int(n))

    def grow(self, ids=None, n: int = 2) -> list[int] | None:
        """Grow ``ids`` (default: the selection) by ``n`` px into the background."""
        return self._resize(grow_cell, "grow_cell", ids, n)

    def shrink(self, ids=None, n: int = 2) -> list[int] | None:
        """Shrink ``ids`` (default: the selection) by ``n`` px."""
        return self._resize(shrink_cell, "shrink_cell", ids, n)

    def split_by_line(self, line_yx, cell: int | None = None) -> list[int] | None:
        """Cut a cell along a polyline (crop (y, x) vertices). The cell is ``cell``, the single
        selected cell, or the cell the line crosses most. Raises ``ValueError`` when the line
        crosses no cell."""
        from skimage.draw import line as draw_line

        p = np.round(np.asarray(line_yx, float)).astype(int)
        if cell is None and len(self.selection) == 1:
            cell = self.selection[0]
        if cell is None:
            pts = [np.stack(draw_line(*a, *b), axis=1) for a, b in itertools.pairwise(p)]
            cell = self.cell_under(np.concatenate(pts)) if pts else None
        if cell is None or int(cell) <= 0:
            raise ValueError("the line crosses no cell")
        out = self.apply("split_cell_by_line", split_cell_by_line, int(cell), line_yx, self.editor.new_id)
        self.clear_selection()
        return out

    def split_by_seeds(self, seeds_yx, cell: int | None = None, *, intensity=None) -> list[int] | None:
        """Split a cell by a watershed from ``seeds_yx`` (one per new cell) on ``intensity`` (the
        nuclear channel crop; the distance to the border when None)."""
        seeds_yx = np.asarray(seeds_yx, float)
        if cell is None:
            cell = self.selection[0] if len(self.selection) == 1 else self.cell_under(seeds_yx)
        if cell is None or int(cell) <= 0:
            raise ValueError("the seeds are not in a cell")
        out = self.apply("split_cell_by_seeds", split_cell_by_seeds, int(cell), seeds_yx, self.editor.new_id,
                         intensity=intensity)
        self.clear_selection()
        return out

    def draw(self, polygons, *, overwrite: bool = False) -> list[int] | None:
        """Each polygon (crop (y, x) vertices) becomes a new cell (over neighbours with ``overwrite``)."""
        ed = self.editor

        def draw_many(lab, polys):
            out = set()
            for poly in polys:
                out |= draw_cell(lab, poly, ed.new_id(), overwrite=overwrite)
            return out

        return self.apply("draw_cell", draw_many, [np.asarray(p, float) for p in polygons])

    # ------------------------------------------------------------------ commit
    def commit_action(self, action: str | None = None) -> tuple[str, str]:
        """(audit action, note) naming the pending operations; they are no longer pending."""
        self.record_paint()
        ops, self.pending = list(self.pending), []
        if action is None:
            plain = [o for o in ops if " " not in o]
            action = f"segmentation.{plain[0]}" if len(set(plain)) == 1 and len(plain) == len(ops) else "segmentation.edit"
        return action, ("operations: " + ", ".join(ops) if ops else "")

    def commit(self, *, action: str | None = None) -> CommitResult | None:
        """Write the pending edits back (:meth:`SegmentationEditor.commit`); None when nothing
        changed since the last commit."""
        self.record_paint()
        if not self.dirty:
            self.pending = []
            return None
        action, note = self.commit_action(action)
        return self.editor.commit(self.region, action=action, note=note)
