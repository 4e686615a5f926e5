"""The Curation dock's header: sample, reviewer, blinded review, case metadata, review progress.

The reviewer is a field, set once and never asked in a dialog: it starts with the name typed last
time (remembered in the user config, :mod:`napari_carspatial.model.user_settings`), else
``$CARSPATIAL_REVIEWER``, else the OS user; every audit row carries it.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QWidget,
)

from ...model.user_settings import remember_reviewer
from .._common import ElidedLabel, StableText


class HeaderView(QWidget):
    """Sample chooser, reviewer, "Blinded review", the case line and the progress bar."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.sample_box = QComboBox()
        self.reviewer_edit = QLineEdit()
        self.reviewer_edit.setToolTip("Your name, written in the audit trail for every action (remembered for "
                                      "next time). Edit it here at any time; nothing asks for it mid-edit.")
        self.reviewer_edit.setPlaceholderText("your name for the audit trail")
        self.blind_box = QCheckBox("Blinded review")
        self.blind_box.setToolTip("Hide the sample name and clinical metadata (timepoint, response) while reviewing")
        self.meta_label = ElidedLabel()   # one line, cut to the column (full text in its tooltip)
        self.meta_label.setStyleSheet("color: gray")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setToolTip("Cells reviewed: re-annotated, excluded, confirmed, or in a region marked reviewed")
        self.progress_label = StableText(lines=1)   # rewritten on every edit: re-lays nothing
        self.progress_label.setStyleSheet("color: gray; font-size: 10px")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("sample", self.sample_box)
        form.addRow("reviewer", self.reviewer_edit)
        case = QHBoxLayout()   # case line and "Blinded review" on one row: the Cells tab keeps the height
        case.addWidget(self.meta_label, 1)
        case.addWidget(self.blind_box)
        form.addRow("case", case)
        form.addRow("reviewed", self.progress_bar)
        form.addRow("", self.progress_label)
        self.reviewer_edit.editingFinished.connect(self._reviewer_typed)
        self.blind_box.toggled.connect(dock.set_blinded)

    def _reviewer_typed(self) -> None:
        name = self.reviewer_edit.text().strip()
        if not name or name == self.dock.reviewer and self.dock.session.reviewer_confirmed:
            self.reviewer_edit.setText(self.dock.reviewer)
            return
        self.dock.set_reviewer(name)
        remember_reviewer(self.dock.reviewer)

    def show_reviewer(self, name: str) -> None:
        if not self.reviewer_edit.hasFocus() and self.reviewer_edit.text() != name:
            self.reviewer_edit.setText(name)

    def show_blinded(self, on: bool) -> None:
        self.blind_box.blockSignals(True)
        self.blind_box.setChecked(on)
        self.blind_box.blockSignals(False)

    def refresh(self, core) -> None:
        """Reviewer, case line (hidden while blinded) and progress of ``core`` (None: empty)."""
        self.show_reviewer(self.dock.reviewer)
        if core is None:   # no sample: nothing of the last one stays (its progress, its case)
            self.meta_label.setText("")
            self.meta_label.setToolTip("")
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("")
            self.progress_label.setText("")
            return
        meta = core.public_metadata()
        shown = [f"{k}: {meta[k]}" for k in ("patient", "timepoint", "response") if k in meta]
        self.meta_label.setText(" · ".join(shown) if not core.blinded else "name and clinical data hidden")
        self.meta_label.setToolTip("\n".join(f"{k}: {v}" for k, v in meta.items()))
        p = core.progress()
        # QProgressBar.setValue repaints at once, and under a GL canvas a repaint redraws the whole
        # window (0.35 s per edit at 10^6 cells): update with repaints off, then schedule one paint
        bar = self.progress_bar
        bar.setUpdatesEnabled(False)
        try:
            if bar.value() != round(1000 * p["fraction"]):
                bar.setValue(round(1000 * p["fraction"]))
            bar.setFormat(f"{p['n_reviewed']:,} of {p['n_cells']:,} cells ({100 * p['fraction']:.1f}%)")
        finally:
            bar.setUpdatesEnabled(True)   # schedules one update with the next paint
        marked = int(p["rois"]["marked"].sum()) if len(p["rois"]) else 0
        self.progress_label.setText(f"{p['n_changed']:,} re-labelled · {p['n_excluded']:,} excluded · "
                                    f"{marked} of {len(p['rois'])} regions marked reviewed")
