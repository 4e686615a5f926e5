"""The Project dock's "Disagreements" section: step through the cells two reads differ on (the
camera follows, both calls shown) and, for the adjudicator, decide them one by one or in bulk,
and decide the region classes. Everything is the headless
:class:`~napari_carspatial._napari.DisagreementView`; decisions are audit rows of the
adjudication session."""

from __future__ import annotations

import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..._napari import notify
from ...model import SampleError

EXCLUDED_CALL = "(excluded)"


class DisagreementPanel(QGroupBox):
    """Pair filter, previous / next, the current cell's calls, decisions, region classes."""

    def __init__(self, dock):
        super().__init__("Disagreements")
        self.dock = dock
        self.view = None   # the current DisagreementView
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.pair_box = QComboBox()
        self.pair_box.setToolTip("Step through one pair of calls (read 1 → read 2), or all of them")
        self.undecided_box = QCheckBox("Undecided only")
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.next_button.setToolTip("Centre the slide on the next disagreeing cell")
        self.position = QLabel("–")
        self.cell_label = QLabel("Press Next to go to the first disagreement.")
        self.cell_label.setWordWrap(True)
        self.cell_label.setStyleSheet("font-size: 13px")

        # decisions (adjudicator)
        self.decide_box = QWidget()
        self.accept_a = QPushButton()
        self.accept_b = QPushButton()
        self.other_box = QComboBox()
        self.other_box.setEditable(True)
        self.other_box.setToolTip("Another call (a type, or (excluded))")
        self.decide_button = QPushButton("Decide")
        self.note = QLineEdit()
        self.note.setPlaceholderText("note for the audit trail (optional)")
        self.bulk_a = QPushButton()
        self.bulk_b = QPushButton()
        self.bulk_other = QPushButton("as picked")
        self.bulk_other.setToolTip("Decide every cell in the list as the call picked above")
        self.region_class = QComboBox()
        self.region_choice = QComboBox()
        self.region_button = QPushButton("Decide region")

        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.position, 1)
        nav.addWidget(self.next_button)
        filt = QHBoxLayout()
        filt.addWidget(self.pair_box, 1)
        filt.addWidget(self.undecided_box)
        self.pair_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.pair_box.setMinimumContentsLength(18)

        one = QHBoxLayout()
        one.addWidget(self.accept_a)
        one.addWidget(self.accept_b)
        other = QHBoxLayout()
        other.addWidget(self.other_box, 1)
        other.addWidget(self.decide_button)
        bulk = QHBoxLayout()
        bulk.addWidget(self.bulk_a)
        bulk.addWidget(self.bulk_b)
        bulk.addWidget(self.bulk_other)
        region = QHBoxLayout()
        region.addWidget(self.region_class, 2)
        region.addWidget(self.region_choice, 1)
        region.addWidget(self.region_button)
        form = QFormLayout(self.decide_box)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("this cell", one)
        form.addRow("or", other)
        form.addRow("note", self.note)
        form.addRow("all in list", bulk)
        form.addRow("regions", region)

        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addLayout(filt)
        lay.addLayout(nav)
        lay.addWidget(self.cell_label)
        lay.addWidget(self.decide_box)

        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.pair_box.currentIndexChanged.connect(self._on_filter)
        self.undecided_box.toggled.connect(self._on_filter)
        self.accept_a.clicked.connect(lambda: self.accept(0))
        self.accept_b.clicked.connect(lambda: self.accept(1))
        self.decide_button.clicked.connect(lambda: self.decide(self.other_box.currentText()))
        self.bulk_a.clicked.connect(lambda: self.accept(0, shown=True))
        self.bulk_b.clicked.connect(lambda: self.accept(1, shown=True))
        self.bulk_other.clicked.connect(lambda: self.decide(self.other_box.currentText(), shown=True))
        self.region_button.clicked.connect(self.decide_region)
        self.set_view(None)

    # ------------------------------------------------------------------ showing a view
    def set_view(self, view) -> None:
        """Show ``view`` (a DisagreementView, or None to hide the section)."""
        self.view = view
        self.setVisible(view is not None)
        if view is None:
            return
        r1, r2 = view.readers
        self.accept_a.setText(f"{r1}'s call")
        self.accept_b.setText(f"{r2}'s call")
        self.bulk_a.setText(f"{r1}'s calls")
        self.bulk_b.setText(f"{r2}'s calls")
        self.bulk_a.setToolTip(f"Take {r1}'s call for every cell in the list being stepped through")
        self.bulk_b.setToolTip(f"Take {r2}'s call for every cell in the list being stepped through")
        self.other_box.blockSignals(True)
        self.other_box.clear()
        self.other_box.addItems([*view.categories(), *([EXCLUDED_CALL] if EXCLUDED_CALL not in view.categories() else [])])
        self.other_box.blockSignals(False)
        self.region_choice.clear()
        self.region_choice.addItems([r1, r2, "union", "intersection", "none"])
        self.decide_box.setVisible(view.can_decide)
        self.undecided_box.setVisible(view.can_decide)
        self._fill_pairs()
        self.refresh()

    def _fill_pairs(self) -> None:
        v = self.view
        keep = self.pair_box.currentData()
        self.pair_box.blockSignals(True)
        self.pair_box.clear()
        self.pair_box.addItem(f"All pairs ({v.n_disagreements:,})", None)
        for r in v.pairs().itertuples(index=False):
            self.pair_box.addItem(f"{r.pair} ({r.n:,})", r.pair)
            if v.can_decide:
                self.pair_box.setItemData(self.pair_box.count() - 1, f"{r.n_undecided:,} of {r.n:,} undecided",
                                          Qt.ToolTipRole)
        i = self.pair_box.findData(keep)
        self.pair_box.setCurrentIndex(max(i, 0))
        self.pair_box.blockSignals(False)

    def refresh(self) -> None:
        v = self.view
        if v is None:
            return
        self.summary.setText(v.summary())
        st = v.current()
        n = len(v.rows)
        pos = f"{st.index + 1:,} of {n:,}" if st is not None else f"{n:,} in the list"
        if v.can_decide and n:
            und = int(pd.isna(v.decisions()[v.rows]).sum())
            pos += f" · {und:,} undecided"
        self.position.setText(pos)
        self.prev_button.setEnabled(n > 0)
        self.next_button.setEnabled(n > 0)
        if st is None:
            self.cell_label.setText("Press Next to go to the first disagreement." if n else "Nothing left in this list.")
        else:
            calls = "<br>".join(f"<b>{r}</b>: {c if c is not None else '(none)'}" for r, c in st.calls.items())
            dec = (f"<br>decision: <b>{st.decision}</b>" if st.decision is not None
                   else ("<br>decision: <i>undecided</i>" if v.can_decide else ""))
            self.cell_label.setText(f"cell <b>{st.cell_id}</b><br>{calls}{dec}")
        has = st is not None and v.can_decide
        for b in (self.accept_a, self.accept_b, self.decide_button):
            b.setEnabled(has)
        for b in (self.bulk_a, self.bulk_b, self.bulk_other):
            b.setEnabled(v.can_decide and n > 0)
        try:
            regs = v.region_disagreements()
        except (SampleError, KeyError, ValueError):
            regs = None
        self.region_class.clear()
        if regs is not None and len(regs):
            for r in regs.to_dict("records"):
                dice = "n/a" if r["dice"] != r["dice"] else f"{r['dice']:.2f}"
                dec = f" → {r['decision']}" if r.get("decision") else ""
                self.region_class.addItem(f"{r['class']} (Dice {dice}){dec}", r["class"])
            left = v.remaining()
            self.region_class.setToolTip(f"{len(left['regions'])} region class(es) undecided" if v.can_decide
                                         else "ROI classes whose regions differ")
        else:
            self.region_class.addItem("the readers' regions agree" if regs is not None else "", None)
        on = regs is not None and len(regs) > 0 and v.can_decide
        for w in (self.region_class, self.region_choice, self.region_button):
            w.setEnabled(on)

    # ------------------------------------------------------------------ actions
    def _on_filter(self, *_):
        if self.view is None:
            return
        self.view.set_filter(pair=self.pair_box.currentData(), undecided_only=self.undecided_box.isChecked())
        self.refresh()

    def step(self, direction: int):
        if self.view is None:
            return None
        st = self.view.step(direction)
        self.refresh()
        return st

    def _after_decision(self, n: int, what: str) -> None:
        self.note.clear()
        self._fill_pairs()
        self.refresh()
        self.dock.set_status(f"{n:,} cell(s) decided: {what}. {self.view.n_undecided():,} undecided.")
        self.dock.refresh()

    def accept(self, k: int, *, shown: bool = False):
        """Take reader ``k``'s call (0 = read 1, 1 = read 2) for the current cell or, with ``shown``,
        every cell in the list."""
        v = self.view
        if v is None:
            return None
        reader = v.readers[k]
        try:
            n = v.accept_shown(reader, note=self.note.text()) if shown else v.accept(reader, note=self.note.text())
        except SampleError as err:
            notify(str(err), "warning")
            return None
        self._after_decision(n, f"{reader}'s call")
        return n

    def decide(self, decision: str, *, shown: bool = False):
        """Decide the current cell (or every cell in the list) as ``decision``."""
        v = self.view
        if v is None:
            return None
        if not str(decision).strip():
            notify("Type or pick the call to decide first.", "warning")
            return None
        try:
            n = (v.decide_shown(decision, note=self.note.text()) if shown
                 else v.decide(decision, note=self.note.text()))
        except SampleError as err:
            notify(str(err), "warning")
            return None
        self._after_decision(n, decision)
        return n

    def decide_region(self):
        v = self.view
        cls = self.region_class.currentData()
        if v is None or cls is None:
            return None
        choice = self.region_choice.currentText()
        try:
            rois = v.decide_region(cls, choice, note=self.note.text())
        except SampleError as err:
            notify(str(err), "warning")
            return None
        self.note.clear()
        self.refresh()
        self.dock.set_status(f"{cls}: {choice} ({len(rois)} region(s)).")
        return rois
