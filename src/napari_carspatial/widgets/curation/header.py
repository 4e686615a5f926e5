"""The Curation dock's header: sample, reviewer, blinded review, case metadata, review progress."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)


class HeaderView(QWidget):
    """Sample chooser, reviewer, "Blinded review", the case line and the progress bar."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.sample_box = QComboBox()
        self.reviewer_label = QLabel()
        self.reviewer_button = QPushButton("Change…")
        self.reviewer_button.setToolTip("Name written in the audit trail for every action")
        self.blind_box = QCheckBox("Blinded review")
        self.blind_box.setToolTip("Hide the sample name and clinical metadata (timepoint, response) while reviewing")
        self.meta_label = QLabel()
        self.meta_label.setStyleSheet("color: gray")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setToolTip("Cells reviewed: re-annotated, excluded, confirmed, or in a region marked reviewed")
        self.progress_label = QLabel()
        self.progress_label.setStyleSheet("color: gray; font-size: 10px")
        rev_row = QHBoxLayout()
        rev_row.addWidget(self.reviewer_label, 1)
        rev_row.addWidget(self.reviewer_button)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("sample", self.sample_box)
        form.addRow("reviewer", rev_row)
        form.addRow("case", self.meta_label)
        form.addRow("", self.blind_box)
        form.addRow("reviewed", self.progress_bar)
        form.addRow("", self.progress_label)
        self.reviewer_button.clicked.connect(lambda: dock.ask_reviewer(force=True))
        self.blind_box.toggled.connect(dock.set_blinded)

    def show_blinded(self, on: bool) -> None:
        self.blind_box.blockSignals(True)
        self.blind_box.setChecked(on)
        self.blind_box.blockSignals(False)

    def refresh(self, core) -> None:
        """Reviewer, case line (hidden while blinded) and progress of ``core`` (None: empty)."""
        self.reviewer_label.setText(self.dock.reviewer)
        if core is None:
            self.meta_label.setText("")
            self.progress_bar.setValue(0)
            return
        meta = core.public_metadata()
        shown = [f"{k}: {meta[k]}" for k in ("patient", "timepoint", "response") if k in meta]
        self.meta_label.setText(" · ".join(shown) if not core.blinded else "name and clinical data hidden")
        self.meta_label.setToolTip("\n".join(f"{k}: {v}" for k, v in meta.items()))
        p = core.progress()
        if self.progress_bar.value() != round(1000 * p["fraction"]):   # setValue repaints at once
            self.progress_bar.setValue(round(1000 * p["fraction"]))
        self.progress_bar.setFormat(f"{p['n_reviewed']:,} of {p['n_cells']:,} cells ({100 * p['fraction']:.1f}%)")
        marked = int(p["rois"]["marked"].sum()) if len(p["rois"]) else 0
        self.progress_label.setText(f"{p['n_changed']:,} re-labelled · {p['n_excluded']:,} excluded · "
                                    f"{marked} of {len(p['rois'])} regions marked reviewed")
