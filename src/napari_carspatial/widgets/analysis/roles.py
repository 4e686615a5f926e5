"""The Analysis dock's "Roles" tab: which cell types the CAR T measures count as tumour, CAR T,
myeloid, ... (inferred from the type names, editable, saved with the sample in ``uns``).

All logic is headless: :func:`~napari_carspatial.analysis.roles.resolve_roles` (stored edits over
the names), :func:`~napari_carspatial.analysis.results.edit_role`,
:func:`~napari_carspatial.analysis.results.role_table` and
:func:`~napari_carspatial.analysis.roles.store_roles`; this view only shows them and collects clicks.
"""

from __future__ import annotations

import logging

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWidgetAction,
)

from ..._napari import notify
from ...analysis.results import edit_role, role_table
from ...analysis.roles import ROLE_TITLES, resolve_roles, store_roles
from ...model import SampleError

log = logging.getLogger(__name__)

#: roles whose cells can be a marker rule instead of types
RULE_ROLES = ("car_t", "tumor", "antigen_neg", "myeloid", "macrophage", "mdsc", "cd8_t", "cd4_t", "t_cell", "b",
              "stroma", "endothelium", "pdl1_macrophage")


class RolesTab(QWidget):
    """The role mapping of the dock's sample and cell-type column, editable.

    Attributes
    ----------
    mapping
        The current :class:`~napari_carspatial.analysis.roles.RoleMapping` (what a run uses).
    """

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.mapping = None
        lay = QVBoxLayout(self)
        self.header = QLabel("")
        self.header.setWordWrap(True)
        lay.addWidget(self.header)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Role", "Cell types (click to change)", "Cells", "From"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.Stretch)
        hh.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(3, QHeaderView.ResizeToContents)
        self.table.setWordWrap(True)
        lay.addWidget(self.table, 1)
        self.unmapped = QLabel("")
        self.unmapped.setWordWrap(True)
        lay.addWidget(self.unmapped)
        row = QHBoxLayout()
        self.reinfer_btn = QPushButton("Re-infer all from the type names")
        row.addWidget(self.reinfer_btn)
        row.addStretch(1)
        lay.addLayout(row)
        self.saved = QLabel("")
        self.saved.setWordWrap(True)
        self.saved.setStyleSheet("color: #9aa1a9")
        lay.addWidget(self.saved)
        self.table.cellClicked.connect(self._on_click)
        self.reinfer_btn.clicked.connect(self.reinfer)

    # ------------------------------------------------------------------ state
    def _table(self):
        s = self.dock.sample
        return None if s is None else s.table

    def refresh(self) -> None:
        """Resolve the mapping of the current column (stored edits over the names) and show it."""
        adata, key = self._table(), self.dock.cell_type_key
        self.table.setRowCount(0)
        if adata is None or not key:
            self.mapping = None
            self.header.setText("No cell-type column: roles need cell types (see the message above).")
            self.unmapped.setText("")
            return
        try:
            self.mapping = resolve_roles(adata, cell_type_key=key)
        except SampleError as err:
            self.mapping = None
            self.header.setText(str(err))
            return
        self._show()

    def _show(self) -> None:
        adata, m = self._table(), self.mapping
        df = role_table(adata, m)
        self.header.setText(f"What the CAR T measures count as each role, from the types in obs[{m.cell_type_key!r}]. "
                            "A measure whose roles have no types is n/a with the reason, never 0.")
        self.table.setRowCount(len(df))
        muted = QColor("#9aa1a9")
        warn = QColor("#e0a000")
        for i, r in enumerate(df.itertuples(index=False)):
            it = QTableWidgetItem(r.title)
            it.setData(Qt.UserRole, r.role)
            self.table.setItem(i, 0, it)
            if r.rule:
                txt = f"marker rule: {r.rule}"
            elif r.types:
                txt = ", ".join(r.types)
            elif r.source == "derived":
                txt = "derived: myeloid cells above a PD-L1 threshold"
            else:
                txt = "not mapped"
            ti = QTableWidgetItem(txt + (f"  (absent: {', '.join(r.missing)})" if r.missing else ""))
            if not r.mapped:
                ti.setForeground(muted)
            if r.missing:
                ti.setForeground(warn)
            ti.setToolTip("click: choose the types, or a marker rule")
            self.table.setItem(i, 1, ti)
            n = "" if r.n_cells != r.n_cells else f"{int(r.n_cells):,}"
            ni = QTableWidgetItem(n if r.mapped or r.source == "derived" else "—")
            ni.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
            if r.rule or r.source == "derived":
                ni.setText("at run")
                ni.setToolTip("counted when a statistic runs (thresholds are computed then)")
            self.table.setItem(i, 2, ni)
            self.table.setItem(i, 3, QTableWidgetItem({"given": "edited", "stored": "saved edit"}.get(r.source,
                                                                                                       r.source)))
        self.table.resizeRowsToContents()
        self.unmapped.setText(f"Types with no role: {', '.join(m.unmapped)}" if m.unmapped else
                              "Every type has a role.")
        stored = "roles" in (adata.uns.get("carspatial", {}) or {})
        self.saved.setText("Edits are saved with the sample (uns['carspatial']['roles']) and used by every run"
                           + (" — this sample has saved edits." if stored and any(
                               v != "inferred" for v in m.source.values()) else "."))

    # ------------------------------------------------------------------ edits (headless underneath)
    def _commit(self, mapping, what: str) -> None:
        adata = self._table()
        store_roles(adata, mapping)
        self.mapping = resolve_roles(adata, cell_type_key=mapping.cell_type_key)
        self.dock.session.table_changed(self.dock.sample_id, columns=(), reason=f"roles: {what}")
        self._show()

    def set_types(self, role: str, types: list[str]) -> None:
        """Map ``role`` to these types (``[]`` unmaps it); saved with the sample."""
        if self.mapping is None:
            return
        self._commit(edit_role(self.mapping, role, types=list(types)), f"{role} = {', '.join(types) or 'none'}")

    def set_rule(self, role: str, rule: str) -> None:
        """Make ``role`` a marker rule (``"CD3+ CAR+"``; thresholds: Otsu when the run starts)."""
        if self.mapping is None:
            return
        try:
            new = edit_role(self.mapping, role, rule=rule, adata=self._table())
        except (ValueError, SampleError) as err:
            notify(f"{ROLE_TITLES.get(role, role)} rule {rule!r}: {err}", "error")
            return
        self._commit(new, f"{role} = rule {rule}")

    def reinfer(self) -> None:
        """Forget the edits: every role inferred from the type names again."""
        adata = self._table()
        if adata is None or self.mapping is None:
            return
        self._commit(resolve_roles(adata, cell_type_key=self.mapping.cell_type_key, use_stored=False),
                     "re-inferred from the names")

    # ------------------------------------------------------------------ the types menu
    def types_menu(self, role: str) -> QMenu:
        """A menu of the column's types (checked = in the role) and a marker-rule field."""
        adata, m = self._table(), self.mapping
        col = adata.obs[m.cell_type_key]
        cats = [str(c) for c in (col.cat.categories if hasattr(col, "cat") else sorted(col.astype(str).unique()))]
        menu = QMenu(self)
        current = set(m.types.get(role, [])) if role not in m.rules else set()
        for c in cats:
            a = menu.addAction(c)
            a.setCheckable(True)
            a.setChecked(c in current)
            a.toggled.connect(lambda on, c=c: self._toggle(role, c, on))
        menu.addSeparator()
        none = menu.addAction("None (not mapped)")
        none.triggered.connect(lambda: self.set_types(role, []))
        if role in RULE_ROLES:
            edit = QLineEdit(m.rules[role].text if role in m.rules else "")
            edit.setPlaceholderText("marker rule, e.g. CD3+ CAR+  (Enter)")
            wa = QWidgetAction(menu)
            wa.setDefaultWidget(edit)
            menu.addAction(wa)
            edit.returnPressed.connect(lambda: (self.set_rule(role, edit.text().strip()), menu.close()))
        return menu

    def _toggle(self, role: str, typ: str, on: bool) -> None:
        types = [] if role in self.mapping.rules else list(self.mapping.types.get(role, []))
        if on and typ not in types:
            types.append(typ)
        if not on and typ in types:
            types.remove(typ)
        self.set_types(role, types)

    def _on_click(self, row: int, col: int) -> None:
        if col != 1 or self.mapping is None:
            return
        role = self.table.item(row, 0).data(Qt.UserRole)
        menu = self.types_menu(role)
        rect = self.table.visualItemRect(self.table.item(row, 1))
        menu.popup(self.table.viewport().mapToGlobal(rect.bottomLeft()))
