"""The "Gating" dock: per-marker thresholds over a histogram, live preview on the slide, ordered
phenotype rules, export/import, and applying the same gating to another sample.

All computation goes through :mod:`napari_carspatial.analysis.gating`; this widget only collects
parameters and shows results.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QCompleter,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._napari import META_ROLE, META_SAMPLE, ROLE_LABELS, notify, session_for
from ..analysis.gating import (
    DEFAULT_KEY,
    TRANSFORMS,
    Gate,
    GatingScheme,
    PhenotypeRule,
    export_gating,
    gate_mask,
    histogram,
    import_gating,
    inverse_transform,
    load_gating,
    marker_values,
    parse_conditions,
    store_gating,
    suggest_threshold,
    transform_values,
)
from ..model import SampleError, spatial_to_yx
from ..model.conventions import SPATIAL_KEY
from ._common import BusyNotice, refill_sample_combo, theme_colors

log = logging.getLogger(__name__)

#: name of the live-preview highlight (layer "<sample>: gate preview")
PREVIEW_NAME = "gate preview"
#: colour of positive cells, on the slide and in the histogram
POSITIVE_COLOR = "#ffd400"
#: ``layer.metadata`` role of the fallback Points preview layer
ROLE_PREVIEW_POINTS = "gate_preview_points"
#: opacity of the preview layer
PREVIEW_OPACITY = 0.9
DEBOUNCE_MS = 100
HIST_BINS = 128


# --------------------------------------------------------------------------- slide preview
class _PointsPreview:
    """Preview for a sample without a cell mask: a Points layer at positive cells' centroids."""

    def __init__(self, session, sid: str):
        self.session = session
        self.viewer = session.viewer
        self.sid = sid

    def layer(self):
        found = self.session.layers_of(self.sid, ROLE_PREVIEW_POINTS)
        return found[0] if found else None

    def show(self, mask: np.ndarray, *, outline: bool = False):
        sample = self.session.sample(self.sid)
        t = sample.table
        yx = spatial_to_yx(np.asarray(t.obsm[SPATIAL_KEY], dtype=float))[np.asarray(mask, bool)]
        scale, translate, units = self.session.geometry(self.sid)
        size = max(3.0, 8.0 / float(scale[0]))  # ~8 µm dots, in data (pixel) units
        layer = self.layer()
        if layer is None:
            layer = self.viewer.add_points(
                yx, name=f"{sample.name}: {PREVIEW_NAME}", scale=scale, translate=translate, size=size, units=units,
                face_color=POSITIVE_COLOR, border_width=0, opacity=PREVIEW_OPACITY, blending="translucent",
                metadata={META_SAMPLE: self.sid, META_ROLE: ROLE_PREVIEW_POINTS})
        else:
            layer.data = yx
            layer.size = size
            layer.face_color = POSITIVE_COLOR
            layer.visible = True
        # outline: hollow rings, so the stain inside each positive cell stays visible
        layer.face_color = "transparent" if outline else POSITIVE_COLOR
        layer.border_color = POSITIVE_COLOR
        layer.border_width = 0.25 if outline else 0
        layer.border_width_is_relative = True
        return layer

    def clear(self):
        layer = self.layer()
        if layer is not None:
            self.viewer.layers.remove(layer)


class _ColoringPreview:
    """Preview through the sample's colouring (a lazy lookup-table Labels layer: fast at 1M cells)."""

    def __init__(self, session, sid: str):
        self.col = session.coloring(sid)

    def layer(self):
        return self.col.highlight_layer(PREVIEW_NAME)

    def show(self, mask: np.ndarray, *, outline: bool = False):
        return self.col.highlight(np.asarray(mask, bool), color=POSITIVE_COLOR, name=PREVIEW_NAME,
                                  mode="outline" if outline else "filled", opacity=PREVIEW_OPACITY)

    def clear(self):
        self.col.clear_highlight(PREVIEW_NAME)


def make_preview(session, sid: str):
    """The slide preview for ``sid``: positive cells filled / outlined through the colouring when
    the sample has a cell mask shown, else dots at their centroids."""
    sample = session.sample(sid)
    if sample is not None and sample.labels and session.layers_of(sid, ROLE_LABELS):
        return _ColoringPreview(session, sid)
    return _PointsPreview(session, sid)


# --------------------------------------------------------------------------- histogram canvas
class _HistogramCanvas(QWidget):
    """Matplotlib histogram on the transformed scale with a draggable threshold line."""

    def __init__(self, theme: dict, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.theme = theme
        self.fig = Figure(figsize=(4.2, 2.7), dpi=100, facecolor=theme["bg"], layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.fig)
        self.canvas.setFixedHeight(260)  # a steady plot: it does not jump when the dock relayouts
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.ax = self.fig.add_subplot(111)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)
        self.on_threshold = None  # callback(display_x)
        self._dragging = False
        self.line = None
        self.canvas.mpl_connect("button_press_event", self._press)
        self.canvas.mpl_connect("motion_notify_event", self._motion)
        self.canvas.mpl_connect("button_release_event", self._release)
        self._data = None

    def _style(self, ax):
        from ..analysis.plotting import _style

        _style(ax, self.theme)

    def plot(self, counts, edges, *, threshold_x: float, above: bool, xlabel: str, title: str,
             log_counts: bool, secondary=None, raw_label: str = ""):
        """Draw the histogram; bins on the positive side of ``threshold_x`` in the positive colour."""
        self._data = {"counts": counts, "edges": edges, "above": above, "xlabel": xlabel, "title": title,
                          "log_counts": log_counts, "secondary": secondary, "raw_label": raw_label}
        self.fig.clear()
        ax = self.ax = self.fig.add_subplot(111)
        self._style(ax)
        centers = 0.5 * (edges[:-1] + edges[1:])
        pos = centers > threshold_x if above else centers < threshold_x
        neg_counts = np.where(pos, 0, counts)
        pos_counts = np.where(pos, counts, 0)
        ax.stairs(neg_counts, edges, fill=True, color=self.theme["neg"], alpha=0.95)
        ax.stairs(pos_counts, edges, fill=True, color=POSITIVE_COLOR, alpha=0.95)
        if log_counts:
            ax.set_yscale("symlog", linthresh=1.0)
        lo, hi = float(edges[0]), float(edges[-1])
        pad = 0.02 * (hi - lo)
        ax.set_xlim(min(lo, threshold_x) - pad, max(hi, threshold_x) + pad)
        ax.set_ylim(bottom=0)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("cells", fontsize=9)
        ax.set_title(title, fontsize=9, loc="left")
        if secondary is not None:
            sec = ax.secondary_xaxis("top", functions=secondary)
            sec.set_xticks(_raw_ticks(secondary, ax.get_xlim()))
            sec.tick_params(colors=self.theme["text"], labelsize=7)
            sec.set_xlabel(raw_label, fontsize=8, color=self.theme["text"])
            for s in sec.spines.values():
                s.set_color(self.theme["fg"])
        self.line = ax.axvline(threshold_x, color="#ff4040", lw=2.0)
        self.canvas.draw_idle()

    # -- interaction: click or drag sets the threshold
    def _press(self, event):
        if event.inaxes is not self.ax or event.xdata is None or event.button != 1:
            return
        self._dragging = True
        self._emit(event.xdata)

    def _motion(self, event):
        if self._dragging and event.inaxes is self.ax and event.xdata is not None:
            self._emit(event.xdata)

    def _release(self, event):
        self._dragging = False

    def _emit(self, x):
        if self.on_threshold is not None:
            self.on_threshold(float(x))


def _raw_ticks(functions, xlim, *, min_gap: float = 0.12, max_ticks: int = 7) -> list[float]:
    """Round raw values (1, 2, 5 x 10^k, and 0) spread evenly on the transformed axis.

    On an asinh/log axis, evenly spaced raw ticks pile up at the bright end; these keep at least
    ``min_gap`` of the axis width between labels.
    """
    inverse, forward = functions
    lo, hi = (float(v) for v in xlim)
    width = hi - lo
    if not width > 0:
        return []
    rlo, rhi = float(inverse(np.array([lo]))[0]), float(inverse(np.array([hi]))[0])
    top = max(abs(rlo), abs(rhi), 1e-12)
    k = np.arange(np.floor(np.log10(top)) - 6, np.floor(np.log10(top)) + 1)
    cands = np.unique(np.r_[0.0, (np.array([1.0, 2.0, 5.0])[:, None] * 10.0 ** k[None, :]).ravel()])
    cands = np.r_[-cands[::-1], cands]
    cands = cands[(cands >= rlo) & (cands <= rhi)]
    pos = forward(cands)
    out, last = [], -np.inf
    for c, x in sorted(zip(cands, pos, strict=False), key=lambda t: t[1]):
        if x - last >= min_gap * width:
            out.append(float(c))
            last = x
    if len(out) > max_ticks:
        out = out[:: int(np.ceil(len(out) / max_ticks))]
    return out


def _notify_error(message: str) -> None:
    notify(message, "error")


def _notify_info(message: str) -> None:
    notify(message, "info")


# --------------------------------------------------------------------------- the widget
class GatingWidget(QWidget):
    """Gate markers on a histogram with live preview, combine gates into phenotype rules."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.gates: dict[str, Gate] = {}
        self.preview_mask: np.ndarray | None = None
        self._previews: dict[str, object] = {}
        self._updating = False
        self._last_result: dict | None = None

        # ---- marker and threshold
        marker_box = QGroupBox("Gate a marker")
        self.sample_combo = QComboBox()
        self.sample_combo.setToolTip("Sample to gate (samples loaded in this viewer)")
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
        self.direction_combo.setToolTip("Cells are positive when their mean intensity is above (or below) the threshold")
        self.log_counts = QCheckBox("log counts")
        self.log_counts.setToolTip("Logarithmic cell-count axis: shows a small positive population next to a large negative one")

        form = QFormLayout()
        form.addRow("sample", self.sample_combo)
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

        self.hist = _HistogramCanvas(theme_colors(self.viewer))
        self.hist.on_threshold = self._on_hist_threshold

        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setRange(-1e12, 1e12)
        self.threshold_spin.setToolTip("Threshold in raw marker units (mean intensity per cell). Click or drag on the histogram to set it.")
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
        self.preview_check = QCheckBox("preview on slide")
        self.preview_check.setChecked(True)
        self.preview_check.setToolTip(f"Show the cells above the threshold in yellow on the slide (updates {DEBOUNCE_MS} ms after a change)")
        self.outline_check = QCheckBox("outlines")
        self.outline_check.setToolTip("Outline positive cells instead of filling them, to see the stain inside")
        self.add_gate_button = QPushButton("Add gate")
        self.add_gate_button.setToolTip("Keep this threshold as the gate for this marker (replaces an earlier one)")

        ml = QVBoxLayout(marker_box)
        ml.addLayout(form)
        ml.addWidget(self.hist)
        ml.addLayout(thr_row)
        ml.addWidget(self.count_label)
        row = QHBoxLayout()
        row.addWidget(self.preview_check, 1)
        row.addWidget(self.outline_check)
        row.addWidget(self.add_gate_button)
        ml.addLayout(row)

        # ---- gates
        gates_box = QGroupBox("Gates")
        self.gate_list = QListWidget()
        self.gate_list.setMaximumHeight(90)
        self.gate_list.setToolTip("Click a gate to edit it above")
        self.remove_gate_button = QPushButton("Remove gate")
        gl = QVBoxLayout(gates_box)
        gl.addWidget(self.gate_list)
        gl.addWidget(self.remove_gate_button, 0, Qt.AlignRight)

        # ---- rules
        rules_box = QGroupBox("Phenotype rules (first match wins)")
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
        self.rules_table.setToolTip("Conditions: markers with + or -, e.g. 'CD3+ CAR+' or 'PanCK+ MSLN-'")
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
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextSelectableByMouse)

        rl = QVBoxLayout(rules_box)
        rl.addWidget(self.rules_table)
        row = QHBoxLayout()
        for b in (self.add_rule_button, self.remove_rule_button, self.up_button, self.down_button):
            row.addWidget(b)
        rl.addLayout(row)
        f2 = QFormLayout()
        f2.addRow("otherwise", self.default_edit)
        f2.addRow("column", self.key_edit)
        rl.addLayout(f2)
        rl.addWidget(self.apply_button)
        rl.addWidget(self.result_label)

        # ---- share
        share_box = QGroupBox("Share the gating")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save gates and rules to a JSON or YAML file")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Load gates and rules from a JSON or YAML file")
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("Another loaded sample to apply the same gates and rules to")
        self.apply_to_button = QPushButton("Apply to sample")
        sl = QVBoxLayout(share_box)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.import_button)
        sl.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.target_combo, 1)
        row.addWidget(self.apply_to_button)
        sl.addLayout(row)

        self.busy_notice = BusyNotice(self.session, lambda: self.sample_id, on_change=self._on_busy)
        inner = QWidget()
        il = QVBoxLayout(inner)
        il.setContentsMargins(4, 4, 4, 4)
        il.addWidget(self.busy_notice)
        il.addWidget(marker_box)
        il.addWidget(gates_box)
        il.addWidget(rules_box)
        il.addWidget(share_box)
        il.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        inner.setMinimumWidth(420)
        self.setMinimumWidth(450)

        # ---- debounce for the slide preview
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_preview)

        # ---- signals
        self.sample_combo.currentIndexChanged.connect(self._on_sample_changed)
        self.marker_combo.currentIndexChanged.connect(self._on_marker_changed)
        self.transform_combo.currentIndexChanged.connect(self._on_scale_changed)
        self.cofactor_spin.valueChanged.connect(self._on_scale_changed)
        self.direction_combo.currentIndexChanged.connect(self._on_threshold_changed)
        self.log_counts.toggled.connect(lambda _=None: self._redraw())
        self.threshold_spin.valueChanged.connect(self._on_threshold_changed)
        self.suggest_button.clicked.connect(self.suggest)
        self.preview_check.toggled.connect(self._on_preview_toggled)
        self.outline_check.toggled.connect(lambda _=None: self.update_preview())
        self.add_gate_button.clicked.connect(self.add_gate)
        self.gate_list.currentRowChanged.connect(self._on_gate_selected)
        self.remove_gate_button.clicked.connect(self.remove_gate)
        self.add_rule_button.clicked.connect(lambda: self.add_rule())
        self.remove_rule_button.clicked.connect(self.remove_rule)
        self.up_button.clicked.connect(lambda: self.move_rule(-1))
        self.down_button.clicked.connect(lambda: self.move_rule(+1))
        self.apply_button.clicked.connect(self.apply_rules)
        self.export_button.clicked.connect(lambda: self.export_gating())
        self.import_button.clicked.connect(lambda: self.import_gating())
        self.apply_to_button.clicked.connect(lambda: self.apply_to_sample())
        self.session.events.sample_added.connect(self.refresh_samples)
        self.session.events.sample_removed.connect(self.refresh_samples)
        self.session.events.table_changed.connect(self._on_table_changed)
        self.refresh_samples()

    # ================================================================== state helpers
    @property
    def sample_id(self) -> str | None:
        sid = self.sample_combo.currentData()
        return sid if sid and self.session.sample(sid) is not None else None

    @property
    def sample(self):
        return self.session.sample(self.sample_id)

    def _on_busy(self, busy: bool) -> None:
        for b in (self.apply_button, self.apply_to_button):
            b.setEnabled(not busy)

    def _on_table_changed(self, event) -> None:
        """Values re-measured in place (segmentation commit) or a new table: redraw from the new
        values (the session dropped the cached ones)."""
        if event.sid == self.sample_id and (event.structure or event.columns is None or self.marker in event.columns):
            self._on_threshold_changed()
    @property
    def marker(self) -> str | None:
        m = self.marker_combo.currentText().strip()
        t = self._table()
        if not m or t is None or (m not in t.var_names and m not in t.obs.columns):
            return None
        return m

    @property
    def transform(self) -> str:
        return self.transform_combo.currentText()

    @property
    def cofactor(self) -> float:
        return float(self.cofactor_spin.value())

    @property
    def direction(self) -> str:
        return self.direction_combo.currentText()

    @property
    def threshold(self) -> float:
        return float(self.threshold_spin.value())

    def _table(self, sid: str | None = None):
        s = self.session.sample(sid) if sid else self.sample
        return None if s is None else s.table

    def values(self, marker: str | None = None, sid: str | None = None) -> np.ndarray | None:
        """Raw per-cell values of ``marker`` in sample ``sid`` (cached in the session until the
        marker's values change: re-measured cells, a new table)."""
        sid = sid or self.sample_id
        marker = marker or self.marker
        t = self._table(sid)
        if t is None or marker is None:
            return None
        return self.session.cached(sid, ("table", marker, "gating_values"), lambda: marker_values(t, marker))

    def current_gate(self) -> Gate | None:
        m = self.marker
        if m is None:
            return None
        return Gate(m, self.threshold, transform=self.transform, cofactor=self.cofactor, direction=self.direction)

    # ================================================================== samples and markers
    def refresh_samples(self, event=None):
        current = self.sample_combo.currentData()
        target = self.target_combo.currentData()
        _, samples = refill_sample_combo(self.sample_combo, self.session, where=lambda s: s.table is not None,
                                         label=lambda s: f"{s.name}  ({s.n_cells:,} cells)")
        for sid in list(self._previews):
            if sid not in samples:
                self._previews.pop(sid)
        self._refresh_targets(target)
        if self.sample_combo.currentData() != current:
            self._on_sample_changed()

    def _refresh_targets(self, keep=None):
        self.target_combo.clear()
        for sid, s in self.session.samples().items():
            if s.table is not None and sid != self.sample_id:
                self.target_combo.addItem(s.name, sid)
        idx = self.target_combo.findData(keep)
        if idx >= 0:
            self.target_combo.setCurrentIndex(idx)
        self.apply_to_button.setEnabled(self.target_combo.count() > 0)

    def _on_sample_changed(self, *_):
        self.busy_notice.update_state()
        t = self._table()
        old = self.marker_combo.currentText()
        self.marker_combo.blockSignals(True)
        self.marker_combo.clear()
        if t is not None:
            self.marker_combo.addItems([str(v) for v in t.var_names])
        idx = self.marker_combo.findText(old)
        self.marker_combo.setCurrentIndex(idx if idx >= 0 else (0 if self.marker_combo.count() else -1))
        self.marker_combo.blockSignals(False)
        self._refresh_targets(self.target_combo.currentData())
        if t is not None and not self.gates and self.rules_table.rowCount() == 0:
            try:
                stored = load_gating(t)
            except Exception:  # noqa: BLE001 - a damaged stored scheme must not block the widget
                log.warning("could not read the gating stored in %s", self.sample.name, exc_info=True)
                stored = None
            if stored is not None:
                self.set_scheme(stored)
        self._on_marker_changed()

    def set_marker(self, marker: str) -> None:
        """Choose the marker to gate (as a user picking it from the list)."""
        idx = self.marker_combo.findText(marker)
        if idx < 0:
            raise KeyError(f"no marker {marker!r} in {self.sample.name if self.sample else 'the sample'}")
        if idx == self.marker_combo.currentIndex():
            self._on_marker_changed()
        else:
            self.marker_combo.setCurrentIndex(idx)

    def _on_marker_changed(self, *_):
        v = self.values()
        if v is None:
            self.count_label.setText("")
            self._redraw()
            return
        finite = v[np.isfinite(v)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        span = max(hi - lo, 1e-9)
        self._updating = True
        try:
            self.threshold_spin.setRange(lo - 0.05 * span, hi + 0.05 * span)
            self.threshold_spin.setSingleStep(10 ** np.floor(np.log10(span / 100)) if span > 0 else 0.01)
            self.threshold_spin.setDecimals(int(np.clip(3 - np.floor(np.log10(span)), 1, 6)))
            g = self.gates.get(self.marker)
            if g is not None:  # editing an existing gate: show its settings
                self.transform_combo.setCurrentText(g.transform)
                self.cofactor_spin.setValue(g.cofactor)
                self.direction_combo.setCurrentText(g.direction)
                self.threshold_spin.setValue(g.threshold)
            else:
                self.threshold_spin.setValue(self._default_threshold(finite))
        finally:
            self._updating = False
        self._on_threshold_changed()

    def _default_threshold(self, finite: np.ndarray) -> float:
        if finite.size < 2 or np.ptp(finite) == 0:
            return float(finite[0]) if finite.size else 0.0
        try:
            return suggest_threshold(finite, method="otsu", transform=self.transform, cofactor=self.cofactor)
        except ValueError:
            return float(np.median(finite))

    def _on_scale_changed(self, *_):
        self.cofactor_spin.setEnabled(self.transform != "linear")
        if not self._updating:
            self._redraw()

    # ================================================================== threshold and preview
    def set_threshold(self, value: float) -> None:
        """Set the threshold in raw units (as typing it in the spin box)."""
        self.threshold_spin.setValue(float(value))

    def _on_hist_threshold(self, display_x: float):
        raw = float(inverse_transform(np.array([display_x]), self.transform, self.cofactor)[0])
        self.threshold_spin.setValue(raw)

    def _on_threshold_changed(self, *_):
        if self._updating:
            return
        v = self.values()
        if v is None:
            self.preview_mask = None
            return
        gate = self.current_gate()
        self.preview_mask = gate_mask(v, gate)
        n_pos, n = int(self.preview_mask.sum()), int(v.size)
        pct = 100.0 * n_pos / n if n else 0.0
        self.count_label.setText(f"{n_pos:,} positive / {n:,} cells ({pct:.1f}%)")
        self._redraw()
        if self.preview_check.isChecked() and self.on_screen():
            self._timer.start()

    def _redraw(self):
        v = self.values()
        if v is None:
            self.hist.fig.clear()
            self.hist.canvas.draw_idle()
            return
        tr, cf = self.transform, self.cofactor
        h = histogram(v, transform=tr, cofactor=cf, bins=HIST_BINS, clip_percentile=99.9)
        thr_x = float(transform_values(np.array([self.threshold]), tr, cf)[0])
        m = self.marker
        if tr == "linear":
            xlabel, secondary, raw_label = f"{m} mean intensity", None, ""
        else:
            xlabel = f"asinh({m} / {cf:g})" if tr == "asinh" else f"log(1 + {m} / {cf:g})"
            secondary = (lambda y: inverse_transform(y, tr, cf), lambda x: transform_values(x, tr, cf))
            raw_label = f"{m} mean intensity"
        n_beyond = int(np.sum(transform_values(v, tr, cf) > h.edges[-1]))
        title = f"{m}: threshold {self.threshold:.4g}"
        if n_beyond:
            title += f"   ({n_beyond:,} brighter cells off the axis)"
        self.hist.plot(h.counts, h.edges, threshold_x=thr_x, above=self.direction == "above", xlabel=xlabel,
                       title=title, log_counts=self.log_counts.isChecked(), secondary=secondary,
                       raw_label=raw_label)

    def _preview(self, sid: str):
        p = self._previews.get(sid)
        if p is None:
            p = self._previews[sid] = make_preview(self.session, sid)
        return p

    def update_preview(self):
        """Show the positive cells of the current threshold on the slide (runs debounced)."""
        self._timer.stop()
        sid = self.sample_id
        if sid is None or self.preview_mask is None or not self.preview_check.isChecked():
            return None
        if not self.on_screen():   # e.g. the Gating tab was hidden before the debounce fired
            return None
        try:
            return self._preview(sid).show(self.preview_mask, outline=self.outline_check.isChecked())
        except Exception as err:  # noqa: BLE001 - show it, keep the widget alive
            log.exception("preview failed")
            _notify_error(f"Could not show the preview: {type(err).__name__}: {err}")
            return None

    def preview_layer(self):
        sid = self.sample_id
        return None if sid is None else self._preview(sid).layer()

    def on_screen(self) -> bool:
        """Shown to the user: visible and not behind another tab of a tabbed dock.

        Qt reports widgets in background tabs of tabified docks as visible; their visible region
        is empty.
        """
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def showEvent(self, event):  # noqa: N802 - Qt API
        """The preview is on the slide only while the gating panel is on screen."""
        super().showEvent(event)
        self._watch_dock()
        if self.preview_check.isChecked():
            self._timer.start()

    def hideEvent(self, event):  # noqa: N802 - Qt API
        super().hideEvent(event)
        self._hide_previews()

    def _watch_dock(self):
        from qtpy.QtWidgets import QDockWidget

        if getattr(self, "_dock_watched", False):
            return
        parent = self.parent()
        while parent is not None and not isinstance(parent, QDockWidget):
            parent = parent.parent()
        if parent is not None:   # tab switches in a tabbed dock area
            parent.visibilityChanged.connect(self._on_dock_visibility)
            self._dock_watched = True

    def _on_dock_visibility(self, visible: bool):
        if visible and self.preview_check.isChecked():
            self._timer.start()
        elif not visible:
            self._hide_previews()

    def _hide_previews(self):
        self._timer.stop()
        for sid in list(self._previews):
            try:
                self._previews[sid].clear()
            except Exception:  # noqa: BLE001 - layer may already be gone
                log.debug("could not clear preview", exc_info=True)

    def _on_preview_toggled(self, on: bool):
        if on:
            self.update_preview()
        else:
            self._timer.stop()
            sid = self.sample_id
            if sid is not None:
                self._preview(sid).clear()

    def suggest(self):
        """Set the threshold to the Otsu / GMM suggestion on the chosen scale."""
        v = self.values()
        if v is None:
            _notify_error("Choose a sample and a marker first.")
            return None
        method = self.method_combo.currentText().lower()
        try:
            thr = suggest_threshold(v, method=method, transform=self.transform, cofactor=self.cofactor)
        except ValueError as err:
            _notify_error(f"Cannot suggest a threshold for {self.marker}: {err}")
            return None
        self.threshold_spin.setValue(thr)
        return thr

    # ================================================================== gates
    def add_gate(self) -> Gate | None:
        """Keep the current threshold as the gate of the current marker."""
        try:
            gate = self.current_gate()
        except ValueError as err:
            _notify_error(str(err))
            return None
        if gate is None:
            _notify_error("Choose a marker from the list first.")
            return None
        self.gates[gate.marker] = gate
        self._refresh_gate_list(select=gate.marker)
        return gate

    def remove_gate(self):
        item = self.gate_list.currentItem()
        if item is None:
            return
        self.gates.pop(item.data(Qt.UserRole), None)
        self._refresh_gate_list()

    def _refresh_gate_list(self, select: str | None = None):
        self.gate_list.blockSignals(True)
        self.gate_list.clear()
        for m, g in self.gates.items():
            sign = ">" if g.direction == "above" else "<"
            scale = g.transform if g.transform == "linear" else f"{g.transform}, cofactor {g.cofactor:g}"
            it = QListWidgetItem(f"{m} {sign} {g.threshold:.4g}   ({scale}; {g.created_by})")
            it.setData(Qt.UserRole, m)
            self.gate_list.addItem(it)
            if m == select:
                self.gate_list.setCurrentItem(it)
        self.gate_list.blockSignals(False)

    def _on_gate_selected(self, row: int):
        item = self.gate_list.item(row)
        if item is not None and item.data(Qt.UserRole) != self.marker:
            try:
                self.set_marker(item.data(Qt.UserRole))
            except KeyError as err:
                _notify_error(str(err.args[0]))

    # ================================================================== rules
    def add_rule(self, name: str | None = None, conditions: str | None = None) -> int:
        """Append a rule row (name, conditions text); returns its row."""
        r = self.rules_table.rowCount()
        if name is None:
            name = f"phenotype {r + 1}"
        if conditions is None:
            conditions = " ".join(f"{m}+" for m in self.gates)
        self.rules_table.insertRow(r)
        self.rules_table.setItem(r, 0, QTableWidgetItem(name))
        self.rules_table.setItem(r, 1, QTableWidgetItem(conditions))
        self.rules_table.selectRow(r)
        return r

    def remove_rule(self):
        r = self.rules_table.currentRow()
        if r >= 0:
            self.rules_table.removeRow(r)

    def move_rule(self, step: int):
        r = self.rules_table.currentRow()
        t = r + step
        if r < 0 or not (0 <= t < self.rules_table.rowCount()):
            return
        rows = self._rule_rows()
        rows[r], rows[t] = rows[t], rows[r]
        self._set_rule_rows(rows)
        self.rules_table.selectRow(t)

    def _rule_rows(self) -> list[tuple[str, str]]:
        out = []
        for r in range(self.rules_table.rowCount()):
            cells = [self.rules_table.item(r, c) for c in (0, 1)]
            out.append(tuple("" if it is None else it.text() for it in cells))
        return out

    def _set_rule_rows(self, rows):
        self.rules_table.setRowCount(0)
        for name, cond in rows:
            self.add_rule(name, cond)

    def rules(self) -> list[PhenotypeRule]:
        """The rules as typed, in table order (raises ValueError naming the bad row)."""
        out = []
        for i, (name, cond) in enumerate(self._rule_rows()):
            if not name.strip() and not cond.strip():
                continue
            try:
                out.append(PhenotypeRule(name, parse_conditions(cond), order=i))
            except ValueError as err:
                raise ValueError(f"rule {i + 1} ({name or 'no name'}): {err}") from None
        return out

    def scheme(self) -> GatingScheme:
        """Gates and rules as currently shown."""
        return GatingScheme(gates=dict(self.gates), rules=self.rules(), default=self.default_edit.text().strip() or "Other")

    def set_scheme(self, scheme: GatingScheme) -> None:
        """Show ``scheme`` (after an import, or the one stored in a sample)."""
        self.gates = dict(scheme.gates)
        self._refresh_gate_list()
        self._set_rule_rows([(r.name, r.text) for r in scheme.ordered_rules()])
        self.default_edit.setText(scheme.default)
        if self.marker in self.gates:
            self._on_marker_changed()

    # ================================================================== apply
    def _apply(self, sid: str) -> dict | None:
        sample = self.session.sample(sid)
        if sample is None or sample.table is None:
            _notify_error("That sample is no longer loaded.")
            return None
        if self.session.busy(sid):
            _notify_error(f"{sample.name} is busy ({self.session.busy(sid)}); apply the rules when it is done.")
            return None
        try:
            scheme = self.scheme()
            if not scheme.rules:
                raise ValueError("add at least one phenotype rule (for example CAR T = 'CD3+ CAR+')")
            key = self.key_edit.text().strip() or DEFAULT_KEY
            pheno = store_gating(sample.table, scheme, key=key, reviewer=self.session.reviewer)
        except (ValueError, KeyError) as err:
            msg = err.args[0] if err.args else str(err)
            _notify_error(f"Gating {sample.name}: {msg}")
            return None
        codes = np.asarray(pheno.codes)
        counts = np.bincount(codes[codes >= 0], minlength=len(pheno.categories))
        n = max(int(codes.size), 1)
        result = {"sample": sample.name, "key": key,
                  "counts": {str(c): int(k) for c, k in zip(pheno.categories, counts, strict=False)}}
        lines = [f"{sample.name} → obs['{key}']:"]
        lines += [f"  {c}: {k:,} ({100.0 * k / n:.1f}%)" for c, k in result["counts"].items()]
        self.result_label.setText("\n".join(lines))
        self.session.table_changed(sid, columns=[key], reason="gating")
        self._show_result(sid, key, scheme.default)
        self._last_result = result
        _notify_info(f"Gating applied to {sample.name}: " + ", ".join(f"{c} {k:,}" for c, k in result["counts"].items()))
        return result

    def _show_result(self, sid: str, key: str, default: str):
        """Colour the cells by the new phenotypes (the called ones only: the default is hidden, so
        the stain shows through), and put the gate preview away (it reappears on the next change)."""
        if sid in self._previews:
            layer = self._previews[sid].layer()
            if layer is not None:
                layer.visible = False
        if not isinstance(self._preview(sid), _ColoringPreview):
            return
        try:
            col = self.session.coloring(sid)
            col.color_by_category(key)
            if default in col.categories and len(col.categories) > 1:
                col.set_category_visible(default, False)
        except Exception:  # noqa: BLE001 - display only
            log.warning("could not colour cells by %s", key, exc_info=True)

    def apply_rules(self) -> dict | None:
        """Apply gates and rules to the current sample; returns counts per phenotype."""
        sid = self.sample_id
        if sid is None:
            _notify_error("Load a sample with a cell table first.")
            return None
        return self._apply(sid)

    def apply_to_sample(self, sid: str | None = None) -> dict | None:
        """Apply the same gates and rules to another loaded sample (default: the chosen target)."""
        sid = sid or self.target_combo.currentData()
        if not sid:
            _notify_error("Load another sample to apply the gating to.")
            return None
        return self._apply(sid)

    # ================================================================== files
    def export_gating(self, path: str | None = None) -> Path | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export gating", "gating.yaml",
                                                  "Gating (*.yaml *.yml *.json)")
            if not path:
                return None
        try:
            return export_gating(self.scheme(), path)
        except (SampleError, ValueError, OSError) as err:
            _notify_error(f"Could not export the gating: {err}")
            return None

    def import_gating(self, path: str | None = None) -> GatingScheme | None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import gating", "", "Gating (*.yaml *.yml *.json)")
            if not path:
                return None
        try:
            scheme = import_gating(path)
        except SampleError as err:
            _notify_error(str(err))
            return None
        t = self._table()
        if t is not None:
            missing = [m for m in scheme.gates if m not in t.var_names and m not in t.obs.columns]
            if missing:
                _notify_error(f"{Path(path).name}: markers {', '.join(missing)} are not in {self.sample.name}; "
                              "those gates cannot be applied here.")
        self.set_scheme(scheme)
        return scheme
