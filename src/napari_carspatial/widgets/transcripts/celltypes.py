"""The Transcripts dock's "Cell types from genes" section: marker-gene scores or Leiden clusters
into a categorical column (the curation and the audit trail use it), computed in a worker."""

from __future__ import annotations

import logging

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ..._napari import notify
from ...editing.cell_typing import (
    compute_cell_types,
    default_key,
    format_markers,
    panel_markers,
    parse_markers,
    store_typing,
)

log = logging.getLogger(__name__)

#: (text, method) of the method box
METHOD_TEXT = (("marker genes (scores)", "markers"), ("Leiden clusters", "leiden"))


class CellTypesView(QGroupBox):
    """Type the cells of a gene panel: the highest marker score per cell, or Leiden clusters named
    by their top genes; written to a new column (never over an existing one)."""

    def __init__(self, dock):
        super().__init__("Cell types from genes")
        self.dock = dock
        self._worker = None
        self._run_id = 0
        self.last_outcome = None
        self.method_combo = QComboBox()
        for text, m in METHOD_TEXT:
            self.method_combo.addItem(text, m)
        self.markers_edit = QPlainTextEdit()
        self.markers_edit.setPlaceholderText("T cell: CD3D, CD3E\nB cell: MS4A1, CD79A")
        self.markers_edit.setToolTip("One type per line: 'type: gene, gene'. scanpy's score_genes per type; the "
                                     "highest score above the floor wins, else 'Unassigned'.")
        self.markers_edit.setFixedHeight(80)
        self.floor_spin = QDoubleSpinBox()
        self.floor_spin.setRange(-20.0, 20.0)
        self.floor_spin.setDecimals(2)
        self.floor_spin.setSingleStep(0.25)
        self.floor_spin.setValue(0.0)
        self.floor_spin.setToolTip("Cells whose best score is not above this are 'Unassigned'. Scores are relative "
                                   "to control genes of the same expression: on small panels a real type can score "
                                   "below 0, lower the floor then.")
        self.resolution_spin = QDoubleSpinBox()
        self.resolution_spin.setRange(0.05, 5.0)
        self.resolution_spin.setDecimals(2)
        self.resolution_spin.setSingleStep(0.1)
        self.resolution_spin.setValue(1.0)
        self.resolution_spin.setToolTip("Leiden resolution: higher gives more, smaller clusters")
        self.key_edit = QLineEdit()
        self.key_edit.setToolTip("Table column (obs) written; an existing column is never written over")
        self.run_button = QPushButton("Type cells")
        self.run_button.setStyleSheet("font-weight: bold;")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("method", self.method_combo)
        self.markers_label = QLabel("markers")
        form.addRow(self.markers_label, self.markers_edit)
        self.floor_label = QLabel("score floor")
        form.addRow(self.floor_label, self.floor_spin)
        self.resolution_label = QLabel("resolution")
        form.addRow(self.resolution_label, self.resolution_spin)
        form.addRow("column", self.key_edit)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.run_button, 1)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.result_label)
        self.method_combo.currentIndexChanged.connect(self._show_method)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self._show_method()

    @property
    def method(self) -> str:
        return self.method_combo.currentData()

    def _show_method(self, *_):
        markers = self.method == "markers"
        for w in (self.markers_label, self.markers_edit, self.floor_label, self.floor_spin):
            w.setVisible(markers)
        for w in (self.resolution_label, self.resolution_spin):
            w.setVisible(not markers)

    def fill(self, sample) -> None:
        """Markers of the sample's panel, and the column name to write."""
        from ...analysis.genes import is_count_table

        t = None if sample is None else sample.table
        ok = t is not None and is_count_table(t)
        self.setEnabled(ok)
        if not ok:
            self.result_label.setText("" if t is None else "This table is not a gene panel.")
            return
        if not self.markers_edit.toPlainText().strip() or getattr(self, "_filled_for", None) is not sample:
            self.markers_edit.setPlainText(format_markers(panel_markers(t)))
        self._filled_for = sample
        self.key_edit.setText(default_key(t))

    # ------------------------------------------------------------------ run
    def run(self, *, wait: bool = False):
        """Compute the cell types (in a worker unless ``wait``), then write them on the main thread."""
        d = self.dock
        sid, sample = d.sample_id, d.sample
        if sample is None or sample.table is None:
            notify("Choose a sample with a gene table first.", "warning")
            return None
        if d.session.busy(sid):
            notify(f"{sample.name} is busy ({d.session.busy(sid)}); type the cells when it is done.", "warning")
            return None
        try:
            kw = {"method": self.method, "resolution": float(self.resolution_spin.value())}
            if self.method == "markers":
                kw["markers"] = parse_markers(self.markers_edit.toPlainText())
                kw["min_score"] = float(self.floor_spin.value())
        except ValueError as err:
            self.result_label.setText(f"Markers: {err}")
            notify(f"Cell types: {err}", "warning")
            return None
        key = self.key_edit.text().strip() or default_key(sample.table)
        if key in sample.table.obs:
            self.result_label.setText(f"The table already has a column {key!r}: choose another name.")
            return None
        self._run_id += 1
        run_id = self._run_id
        if wait:
            try:
                res = compute_cell_types(sample, **kw)
            except (ValueError, KeyError) as err:
                self._failed(err)
                return None
            return self._store(sid, key, res, run_id)
        from napari.qt.threading import create_worker

        worker = create_worker(compute_cell_types, sample, **kw,
                               _progress={"desc": f"Typing the cells of {sample.name}", "total": 0})
        worker.returned.connect(lambda res: self._store(sid, key, res, run_id))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self._worker = worker
        self._busy(True)
        d.session.set_busy(sid, "typing cells from genes")
        self._busy_sid = sid
        worker.start()
        return worker

    def cancel(self) -> None:
        """Forget the running computation (its result is dropped; scanpy cannot be interrupted)."""
        self._run_id += 1
        self.result_label.setText("Cancelled.")
        self._finished()

    def _busy(self, on: bool) -> None:
        self.progress.setVisible(on)
        self.cancel_button.setVisible(on)
        self.run_button.setEnabled(not on)

    def _finished(self) -> None:
        self._worker = None
        self._busy(False)
        sid = getattr(self, "_busy_sid", None)
        if sid is not None:
            self._busy_sid = None
            self.dock.session.set_busy(sid, None)

    def _failed(self, err) -> None:
        log.error("cell typing failed: %s", err, exc_info=err if isinstance(err, BaseException) else None)
        msg = err.args[0] if isinstance(err, BaseException) and err.args else str(err)
        self.result_label.setText(f"Cell typing failed: {msg}")
        notify(f"Cell typing failed: {msg}", "error")

    def _store(self, sid: str, key: str, res, run_id: int):
        if run_id != self._run_id:
            return None    # cancelled, or an older run
        d = self.dock
        sample = d.session.sample(sid)
        if sample is None:
            return None
        try:
            out = store_typing(sample, res, key=key, reviewer=d.session.reviewer)
        except (ValueError, KeyError) as err:
            self._failed(err)
            return None
        self.last_outcome = out
        d.session.table_changed(sid, columns=[key], reason=f"cell typing ({out.method})")
        if sample.labels:
            try:
                d.session.coloring(sid).color_by_category(key)
            except (KeyError, ValueError) as err:   # display only
                log.warning("could not colour cells by %s: %s", key, err)
        lines = out.lines()
        text = f"{sample.name} → obs['{key}']:\n  " + "\n  ".join(lines)
        un = out.counts.get("Unassigned", 0)
        if un > 0.1 * max(sum(out.counts.values()), 1) and out.method != "leiden":
            text += f"\n{un:,} cells below the score floor are Unassigned; lower the floor to assign them."
        self.result_label.setText(text)
        self.key_edit.setText(default_key(sample.table))
        notify(f"Cell types of {sample.name} in obs['{key}']: " + ", ".join(f"{c} {k:,}" for c, k in out.counts.items()))
        return out
