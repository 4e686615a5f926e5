"""The Transcripts dock's display section: density or points, the cap, the quality filter, and
the note of what is on the slide now."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
)

from ..._napari import MAX_POINTS

#: the choices of the mode box, in order (text shown, mode)
MODE_TEXT = (("auto: density, points when zoomed in", "auto"), ("density only", "density"),
             ("points (capped)", "points"))


class DisplayView(QGroupBox):
    """How the transcripts are drawn, and a line saying what is drawn (density, all points, or a
    capped random subset)."""

    def __init__(self, dock):
        super().__init__("Transcripts on the slide")
        self.dock = dock
        self._filling = False
        self.mode_combo = QComboBox()
        for text, mode in MODE_TEXT:
            self.mode_combo.addItem(text, mode)
        self.mode_combo.setToolTip("auto: the density image while too many transcripts are in view, the molecules "
                                   "themselves once few enough are")
        self.cap_spin = QSpinBox()
        self.cap_spin.setRange(1_000, 1_000_000)
        self.cap_spin.setSingleStep(10_000)
        self.cap_spin.setValue(MAX_POINTS)
        self.cap_spin.setGroupSeparatorShown(True)
        self.cap_spin.setToolTip("At most this many molecules are drawn at once (beyond it: the density, or a random "
                                 "subset in 'points' mode)")
        self.quality_check = QCheckBox("quality ≥")
        self.quality_spin = QDoubleSpinBox()
        self.quality_spin.setRange(0.0, 1000.0)
        self.quality_spin.setDecimals(1)
        self.quality_spin.setValue(20.0)
        self.size_spin = QDoubleSpinBox()
        self.size_spin.setRange(0.1, 20.0)
        self.size_spin.setDecimals(1)
        self.size_spin.setSingleStep(0.2)
        self.size_spin.setSuffix(" µm")
        self.size_spin.setToolTip("Diameter of a molecule's dot (2 to 12 screen pixels whatever the zoom)")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("font-weight: bold;")
        form = QFormLayout()
        form.addRow("show", self.mode_combo)
        form.addRow("at most", self.cap_spin)
        q = QHBoxLayout()
        q.addWidget(self.quality_check)
        q.addWidget(self.quality_spin, 1)
        form.addRow("filter", q)
        form.addRow("dot size", self.size_spin)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.note)
        self.mode_combo.currentIndexChanged.connect(self._on_mode)
        self.cap_spin.editingFinished.connect(self._on_cap)
        self.quality_check.toggled.connect(self._on_quality)
        self.quality_spin.editingFinished.connect(self._on_quality)
        self.size_spin.valueChanged.connect(self._on_size)

    def fill(self, view) -> None:
        self._filling = True
        try:
            self.setEnabled(view is not None)
            if view is None:
                self.note.setText("")
                return
            self.mode_combo.setCurrentIndex([m for _, m in MODE_TEXT].index(view.mode))
            self.cap_spin.setValue(int(view.max_points))
            self.size_spin.setValue(view.point_size_um if view.sample.pixel_size_um else 8.0)
            self.size_spin.setSuffix(" µm" if view.sample.pixel_size_um else " px")
            qname = view.points.quality_name
            has_q = qname is not None
            self.quality_check.setEnabled(has_q)
            self.quality_spin.setEnabled(has_q)
            self.quality_check.setText(f"{qname} ≥" if has_q else "quality")
            tip = (f"Keep transcripts whose {qname} is at least this (Xenium: Phred-scaled, 20 = 1 % error)"
                   if has_q else f"{view.sample.name}'s platform gives no per-molecule quality")
            self.quality_check.setToolTip(tip)
            self.quality_spin.setToolTip(tip)
            self.quality_check.setChecked(view.flt.min_quality is not None)
            if view.flt.min_quality is not None:
                self.quality_spin.setValue(view.flt.min_quality)
        finally:
            self._filling = False

    def _on_mode(self, *_):
        if not self._filling:
            self.dock.set_mode(self.mode_combo.currentData())

    def _on_cap(self):
        if not self._filling:
            self.dock.set_max_points(self.cap_spin.value())

    def _on_quality(self, *_):
        if not self._filling:
            self.dock.set_quality(float(self.quality_spin.value()) if self.quality_check.isChecked() else None)

    def _on_size(self, value: float):
        if not self._filling:
            self.dock.set_point_size(value)

    # ------------------------------------------------------------------ the note
    def show_state(self, state, scale: str = "") -> None:
        """The note of ``state``; ``scale`` (the density's unit and range) when density is shown."""
        self.note.setStyleSheet("font-weight: bold;" + (" color: #e0a000;" if state.capped else ""))
        self.note.setText(state.note() + (f"<br><span style='font-weight: normal;'>{scale}</span>"
                                          if scale and state.mode == "density" else ""))

    def show_reading(self, text: str) -> None:
        self.note.setStyleSheet("font-weight: bold;")
        self.note.setText(f"⏳ {text}")

    def show_error(self, text: str) -> None:
        self.note.setStyleSheet("font-weight: bold; color: #ff6060;")
        self.note.setText(text)
