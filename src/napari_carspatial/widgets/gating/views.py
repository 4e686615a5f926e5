"""The sections of the Gating dock: each a thin view of the dock's headless
:class:`~napari_carspatial.editing.gating.GatingSession` (``dock.model``).

* :class:`GateView`: marker, scale, direction, histogram, threshold, count, preview, "Add gate";
* :class:`GatesView`: the gates kept;
* :class:`RulesView`: the ordered phenotype rules as typed, "otherwise", the column, "Apply";
* :class:`ShareView`: export / import, apply to another sample.

A view writes what the user does into the model and redraws itself when the dock tells it the
model changed; it never computes anything itself.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QCompleter,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...analysis.gating import DEFAULT_KEY, TRANSFORMS, inverse_transform, transform_values
from .histogram import HistogramCanvas

#: debounce of the slide preview after a threshold change, ms
DEBOUNCE_MS = 100


class GateView(QGroupBox):
    """Gate one marker: the threshold over its histogram, the count of positive cells."""

    def __init__(self, dock, theme: dict):
        super().__init__("Gate a marker")
        self.dock = dock
        self.marker_combo = QComboBox()
        self.marker_combo.setEditable(True)
        self.marker_combo.setInsertPolicy(QComboBox.NoInsert)
        self.marker_combo.setToolTip("Type to search the markers")
        comp = self.marker_combo.completer()
        if comp is not None:
            comp.setFilterMode(Qt.MatchContains)
            comp.setCompletionMode(QCompleter.PopupCompletion)
            comp.setCaseSensitivity(Qt.CaseInsensitive)
        self.transform_combo = QComboBox()
        self.transform_combo.addItems(list(TRANSFORMS))
        self.transform_combo.setCurrentText("asinh")
        self.transform_combo.setToolTip("Scale of the histogram: linear, asinh(x / cofactor) or log(1 + x / cofactor)")
        self.cofactor_spin = QDoubleSpinBox()
        self.cofactor_spin.setRange(1e-4, 1e6)
        self.cofactor_spin.setDecimals(3)
        self.cofactor_spin.setValue(5.0)
        self.cofactor_spin.setToolTip("Cofactor of the asinh / log transform (about the noise level of the marker)")
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(["above", "below"])
        self.direction_combo.setToolTip("Cells are positive when their value (mean intensity, or counts of a gene) is "
                                        "above (or below) the threshold")
        self.log_counts = QCheckBox("log counts")
        self.log_counts.setToolTip("Logarithmic cell-count axis: shows a small positive population next to a large negative one")
        form = QFormLayout()
        form.addRow("marker", self.marker_combo)
        row = QHBoxLayout()
        row.addWidget(self.transform_combo, 1)
        row.addWidget(QLabel("cofactor"))
        row.addWidget(self.cofactor_spin, 1)
        form.addRow("scale", row)
        row = QHBoxLayout()
        row.addWidget(self.direction_combo, 1)
        row.addWidget(self.log_counts)
        form.addRow("positive", row)

        self.hist = HistogramCanvas(theme)
        self.hist.on_threshold = self._on_hist_threshold
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setRange(-1e12, 1e12)
        self.threshold_spin.setToolTip("Threshold in raw units (mean intensity per cell; counts for a gene panel). "
                                       "Click or drag on the histogram to set it.")
        self.method_combo = QComboBox()
        self.method_combo.addItems(["Otsu", "GMM"])
        self.method_combo.setToolTip("Otsu: maximises between-class variance. GMM: where a 2-Gaussian mixture's posterior crosses 0.5.\nBoth on the chosen scale.")
        self.suggest_button = QPushButton("Suggest")
        self.suggest_button.setToolTip("Suggest a threshold from the distribution (on the chosen scale)")
        thr_row = QHBoxLayout()
        thr_row.addWidget(QLabel("threshold"))
        thr_row.addWidget(self.threshold_spin, 2)
        thr_row.addWidget(self.method_combo, 1)
        thr_row.addWidget(self.suggest_button, 1)
        self.count_label = QLabel("")
        self.count_label.setStyleSheet("font-weight: bold;")
        self.count_label.setWordWrap(True)     # never cut off in a narrow dock (issue 14, item 9)
        self.count_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.preview_check = QCheckBox("preview on slide")
        self.preview_check.setChecked(True)
        self.preview_check.setToolTip(f"Show the cells above the threshold in yellow on the slide (updates {DEBOUNCE_MS} ms after a change)")
        self.outline_check = QCheckBox("outlines")
        self.outline_check.setToolTip("Outline positive cells instead of filling them, to see the stain inside")
        self.add_gate_button = QPushButton("Add gate")
        self.add_gate_button.setToolTip("Keep this threshold as the gate for this marker (replaces an earlier one)")
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.hist)
        lay.addLayout(thr_row)
        lay.addWidget(self.count_label)
        row = QHBoxLayout()
        row.addWidget(self.preview_check, 1)
        row.addWidget(self.outline_check)
        row.addWidget(self.add_gate_button)
        lay.addLayout(row)

        self.marker_combo.currentIndexChanged.connect(self._on_marker)
        self.transform_combo.currentIndexChanged.connect(self._on_scale)
        self.cofactor_spin.valueChanged.connect(self._on_scale)
        self.direction_combo.currentIndexChanged.connect(self._on_direction)
        self.log_counts.toggled.connect(lambda _=None: self.redraw())
        self.threshold_spin.valueChanged.connect(self._on_threshold)
        self.suggest_button.clicked.connect(dock.suggest)
        self.add_gate_button.clicked.connect(dock.add_gate)

    @property
    def model(self):
        return self.dock.model

    # ------------------------------------------------------------------ user -> model
    def _on_marker(self, *_):
        m = self.marker_combo.currentText().strip()
        if self.dock.syncing or m not in self.model.markers():
            return
        try:
            self.model.set_marker(m)
        except KeyError as err:
            self.dock.error(str(err.args[0]))

    def _on_scale(self, *_):
        self.cofactor_spin.setEnabled(self.transform_combo.currentText() != "linear")
        if not self.dock.syncing:
            self.model.set_scale(self.transform_combo.currentText(), float(self.cofactor_spin.value()))

    def _on_direction(self, *_):
        if not self.dock.syncing:
            self.model.set_direction(self.direction_combo.currentText())

    def _on_threshold(self, *_):
        if not self.dock.syncing:
            self.model.set_threshold(float(self.threshold_spin.value()))

    def _on_hist_threshold(self, display_x: float):
        m = self.model
        self.threshold_spin.setValue(float(inverse_transform(np.array([display_x]), m.transform, m.cofactor)[0]))

    # ------------------------------------------------------------------ model -> view
    def fill_markers(self) -> None:
        """The marker list of the sample (the choice kept when it has the marker)."""
        old = self.marker_combo.currentText()
        with self.dock.sync():
            self.marker_combo.clear()
            self.marker_combo.addItems(self.model.markers())
            idx = self.marker_combo.findText(old)
            self.marker_combo.setCurrentIndex(idx if idx >= 0 else (0 if self.marker_combo.count() else -1))

    def show_marker(self) -> None:
        """Ranges and settings of the model's marker (its gate's, when it has one)."""
        m = self.model
        with self.dock.sync():
            if m.marker is not None and self.marker_combo.currentText() != m.marker:
                self.marker_combo.setCurrentIndex(self.marker_combo.findText(m.marker))
            lo, hi = m.value_range()
            span = max(hi - lo, 1e-9)
            self.threshold_spin.setRange(lo - 0.05 * span, hi + 0.05 * span)
            self.threshold_spin.setSingleStep(10 ** np.floor(np.log10(span / 100)) if span > 0 else 0.01)
            self.threshold_spin.setDecimals(int(np.clip(3 - np.floor(np.log10(span)), 1, 6)))
            self.show_settings()

    def show_settings(self) -> None:
        m = self.model
        with self.dock.sync():
            self.transform_combo.setCurrentText(m.transform)
            self.cofactor_spin.setValue(m.cofactor)
            self.cofactor_spin.setEnabled(m.transform != "linear")
            self.direction_combo.setCurrentText(m.direction)
            self.threshold_spin.setValue(m.threshold)

    def redraw(self) -> None:
        """The histogram of the current marker with the threshold line."""
        m = self.model
        got = m.histogram()
        if got is None:
            self.hist.fig.clear()
            self.hist.canvas.draw_idle()
            return
        h, thr_x, n_beyond = got
        tr, cf, name = m.transform, m.cofactor, m.marker
        unit = m.unit()
        if tr == "linear":
            xlabel, secondary, raw_label = f"{name} {unit}", None, ""
        else:
            xlabel = f"asinh({name} / {cf:g})" if tr == "asinh" else f"log(1 + {name} / {cf:g})"
            secondary = (lambda y: inverse_transform(y, tr, cf), lambda x: transform_values(x, tr, cf))
            raw_label = f"{name} {unit}"
        title = m.threshold_text() if unit == "counts" else f"{name}: threshold {m.threshold:.4g}"
        if n_beyond:
            title += f"   ({n_beyond:,} {'higher' if unit == 'counts' else 'brighter'} cells off the axis)"
        self.hist.plot(h.counts, h.edges, threshold_x=thr_x, above=m.direction == "above", xlabel=xlabel,
                       title=title, log_counts=self.log_counts.isChecked(), secondary=secondary,
                       raw_label=raw_label)


class GatesView(QGroupBox):
    """The gates kept (one per marker); click one to edit it above."""

    def __init__(self, dock):
        super().__init__("Gates")
        self.dock = dock
        self.gate_list = QListWidget()
        self.gate_list.setMaximumHeight(90)
        self.gate_list.setToolTip("Click a gate to edit it above")
        self.remove_gate_button = QPushButton("Remove gate")
        lay = QVBoxLayout(self)
        lay.addWidget(self.gate_list)
        lay.addWidget(self.remove_gate_button, 0, Qt.AlignRight)
        self.gate_list.currentRowChanged.connect(self._on_selected)
        self.remove_gate_button.clicked.connect(self._remove)

    def refresh(self, select: str | None = None) -> None:
        self.gate_list.blockSignals(True)
        self.gate_list.clear()
        for m, g in self.dock.model.gates.items():
            sign = ">" if g.direction == "above" else "<"
            scale = g.transform if g.transform == "linear" else f"{g.transform}, cofactor {g.cofactor:g}"
            it = QListWidgetItem(f"{m} {sign} {g.threshold:.4g}   ({scale}; {g.created_by})")
            it.setData(Qt.UserRole, m)
            self.gate_list.addItem(it)
            if m == select:
                self.gate_list.setCurrentItem(it)
        self.gate_list.blockSignals(False)

    def _on_selected(self, row: int):
        item = self.gate_list.item(row)
        if item is not None and item.data(Qt.UserRole) != self.dock.model.marker:
            try:
                self.dock.set_marker(item.data(Qt.UserRole))
            except KeyError as err:
                self.dock.error(str(err.args[0]))

    def _remove(self):
        item = self.gate_list.currentItem()
        if item is not None:
            self.dock.model.remove_gate(item.data(Qt.UserRole))


class RulesView(QGroupBox):
    """Phenotype rules in order (first match wins), as typed; "otherwise"; the column; Apply."""

    def __init__(self, dock):
        super().__init__("Phenotype rules (first match wins)")
        self.dock = dock
        self.rules_table = QTableWidget(0, 2)
        self.rules_table.setHorizontalHeaderLabels(["phenotype", "conditions"])
        self.rules_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Interactive)
        self.rules_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.rules_table.setColumnWidth(0, 140)
        self.rules_table.verticalHeader().setVisible(True)
        self.rules_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.rules_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.rules_table.setMinimumHeight(110)
        self.rules_table.setMaximumHeight(170)
        self.rules_table.setToolTip("Conditions: markers with + or -, e.g. 'CD3+ CAR+' or 'PanCK+ MSLN-'; "
                                    "quote a name with a space: '\"Cytokeratin 5\"+'")
        self.add_rule_button = QPushButton("Add")
        self.remove_rule_button = QPushButton("Remove")
        self.up_button = QPushButton("Up")
        self.down_button = QPushButton("Down")
        self.default_edit = QLineEdit("Other")
        self.default_edit.setToolTip("Phenotype of cells that match no rule")
        self.key_edit = QLineEdit(DEFAULT_KEY)
        self.key_edit.setToolTip("Table column (obs) the phenotypes are written to; the original cell types are kept")
        self.apply_button = QPushButton("Apply rules")
        self.apply_button.setStyleSheet("font-weight: bold;")
        self.apply_button.setToolTip("Write the phenotypes of the rules to the column, colour the cells by them")
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.addWidget(self.rules_table)
        row = QHBoxLayout()
        for b in (self.add_rule_button, self.remove_rule_button, self.up_button, self.down_button):
            row.addWidget(b)
        lay.addLayout(row)
        f2 = QFormLayout()
        f2.addRow("otherwise", self.default_edit)
        lay.addLayout(f2)
        # column + Apply + result: a footer the dock keeps below its scroll area, so "Apply rules"
        # is always on screen (issue 14, item 10)
        self.footer = QWidget()
        fl = QVBoxLayout(self.footer)
        fl.setContentsMargins(6, 4, 6, 4)
        arow = QHBoxLayout()
        arow.addWidget(QLabel("column"))
        arow.addWidget(self.key_edit, 1)
        arow.addWidget(self.apply_button)
        fl.addLayout(arow)
        fl.addWidget(self.result_label)

        self.rules_table.itemChanged.connect(self._on_item)
        self.add_rule_button.clicked.connect(lambda: self.dock.add_rule())
        self.remove_rule_button.clicked.connect(self._remove)
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(+1))
        self.default_edit.textChanged.connect(lambda t: setattr(self.dock.model, "default", t))
        self.key_edit.textChanged.connect(lambda t: setattr(self.dock.model, "key", t))
        self.apply_button.clicked.connect(self.dock.apply_rules)

    def refresh(self, select: int | None = None) -> None:
        m = self.dock.model
        self.rules_table.blockSignals(True)
        self.rules_table.setRowCount(0)
        for i, (name, cond) in enumerate(m.rows):
            self.rules_table.insertRow(i)
            self.rules_table.setItem(i, 0, QTableWidgetItem(name))
            self.rules_table.setItem(i, 1, QTableWidgetItem(cond))
        self.rules_table.blockSignals(False)
        if select is not None and 0 <= select < self.rules_table.rowCount():
            self.rules_table.selectRow(select)
        if self.default_edit.text() != m.default:
            self.default_edit.setText(m.default)

    def _on_item(self, item):
        r = item.row()
        cells = [self.rules_table.item(r, c) for c in (0, 1)]
        name, cond = ("" if it is None else it.text() for it in cells)
        with self.dock.sync():
            self.dock.model.set_rule(r, name, cond)

    def _remove(self):
        r = self.rules_table.currentRow()
        if r >= 0:
            self.dock.model.remove_rule(r)
            self.refresh(select=min(r, len(self.dock.model.rows) - 1))

    def _move(self, step: int):
        r = self.rules_table.currentRow()
        if r >= 0:
            self.refresh(select=self.dock.model.move_rule(r, step))


class ShareView(QGroupBox):
    """Export / import the gating, apply it to another loaded sample."""

    def __init__(self, dock):
        super().__init__("Share the gating")
        self.dock = dock
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save gates and rules to a JSON or YAML file")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Load gates and rules from a JSON or YAML file")
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("Another loaded sample to apply the same gates and rules to")
        self.apply_to_button = QPushButton("Apply to sample")
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.import_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.target_combo, 1)
        row.addWidget(self.apply_to_button)
        lay.addLayout(row)
        self.export_button.clicked.connect(lambda: self.dock.export_gating())
        self.import_button.clicked.connect(lambda: self.dock.import_gating())
        self.apply_to_button.clicked.connect(lambda: self.dock.apply_to_sample())

    def refresh_targets(self, samples: dict, current: str | None) -> None:
        keep = self.target_combo.currentData()
        self.target_combo.clear()
        for sid, s in samples.items():
            if s.table is not None and sid != current:
                self.target_combo.addItem(s.name, sid)
        idx = self.target_combo.findData(keep)
        if idx >= 0:
            self.target_combo.setCurrentIndex(idx)
        self.apply_to_button.setEnabled(self.target_combo.count() > 0)
