"""The Analysis dock's "Setup" tab: regions (the whole sample, ROIs, Shapes layers), the graph,
the roles, seed and number of niches."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHeaderView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..._napari import shapes_region
from ...analysis.regions import DEFAULT_ROLES, Region, regions_from_rois

WHOLE_LABEL = "Whole sample"
ROLE_NAMES = ["tumor", "antigen_neg", "car_t", "myeloid", "pdl1_macrophage"]


class SetupTab(QWidget):
    """What to compute on: regions, graph parameters, roles, seed, niches."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        sl = QVBoxLayout(self)
        rg = QGroupBox("Regions (centroid in polygon)")
        rgl = QVBoxLayout(rg)
        self.region_list = QListWidget()
        self.region_list.setMaximumHeight(110)
        rgl.addWidget(self.region_list)
        self.refresh_btn = QPushButton("Refresh regions (ROIs and Shapes layers)")
        rgl.addWidget(self.refresh_btn)
        sl.addWidget(rg)

        gg = QGroupBox("Graph")
        gf = QFormLayout(gg)
        from qtpy.QtWidgets import QComboBox

        self.graph_combo = QComboBox()
        self.graph_combo.addItems(["delaunay", "radius", "knn", "contact"])
        self.maxd_spin = QDoubleSpinBox(suffix=" µm", minimum=1, maximum=1000, value=30, decimals=1)
        self.radius_spin = QDoubleSpinBox(suffix=" µm", minimum=1, maximum=1000, value=20, decimals=1)
        self.k_spin = QSpinBox(minimum=1, maximum=100, value=6)
        self.expand_spin = QSpinBox(suffix=" px", minimum=0, maximum=20, value=2)
        gf.addRow("Method", self.graph_combo)
        gf.addRow("Delaunay max edge", self.maxd_spin)
        gf.addRow("Radius", self.radius_spin)
        gf.addRow("k (kNN)", self.k_spin)
        gf.addRow("Contact expansion", self.expand_spin)
        sl.addWidget(gg)

        rog = QGroupBox("Roles (cell types, comma-separated; empty PD-L1+ = derived from myeloid + PD-L1)")
        rol = QVBoxLayout(rog)
        self.roles_table = QTableWidget(len(ROLE_NAMES), 2)
        self.roles_table.setHorizontalHeaderLabels(["role", "cell types"])
        self.roles_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.roles_table.verticalHeader().setVisible(False)
        for i, r in enumerate(ROLE_NAMES):
            it = QTableWidgetItem(r)
            it.setFlags(it.flags() & ~Qt.ItemIsEditable)
            self.roles_table.setItem(i, 0, it)
            v = DEFAULT_ROLES.get(r)
            self.roles_table.setItem(i, 1, QTableWidgetItem("" if v is None else ", ".join(v)))
        self.roles_table.setMaximumHeight(170)
        rol.addWidget(self.roles_table)
        sl.addWidget(rog)
        opt = QFormLayout()
        self.seed_spin = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.niches_spin = QSpinBox(minimum=2, maximum=20, value=8)
        opt.addRow("Seed", self.seed_spin)
        opt.addRow("Niches (k-means)", self.niches_spin)
        sl.addLayout(opt)
        sl.addStretch(1)
        self.refresh_btn.clicked.connect(self.refresh_regions)

    def set_units(self, pixel_size_um) -> None:
        """Distances are typed in µm; without a pixel size they can only be pixels: say so."""
        unit = " µm" if pixel_size_um else " px"
        for spin in (self.maxd_spin, self.radius_spin):
            spin.setSuffix(unit)

    # ------------------------------------------------------------------ regions
    def _shapes_layers(self):
        from napari.layers import Shapes

        return [lyr for lyr in self.dock.viewer.layers if isinstance(lyr, Shapes) and len(lyr.data)]

    def refresh_regions(self):
        checked = self.checked_region_names()
        self.region_list.clear()
        s = self.dock.sample
        if s is None:
            return
        names = [WHOLE_LABEL] + [f"ROI: {r.name}" for r in s.rois] + [f"Shapes: {lyr.name}" for lyr in self._shapes_layers()]
        for n in names:
            it = QListWidgetItem(n)
            it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
            it.setCheckState(Qt.Checked if (n in checked or (not checked and n == WHOLE_LABEL)) else Qt.Unchecked)
            self.region_list.addItem(it)

    def checked_region_names(self) -> list[str]:
        return [self.region_list.item(i).text() for i in range(self.region_list.count())
                if self.region_list.item(i).checkState() == Qt.Checked]

    def set_checked_regions(self, names: list[str]) -> None:
        for i in range(self.region_list.count()):
            it = self.region_list.item(i)
            it.setCheckState(Qt.Checked if it.text() in names else Qt.Unchecked)

    def selected_regions(self) -> dict[str, Region]:
        """The ticked regions (cells by centroid in polygon; Shapes layers even-odd, in level-0 px)."""
        d = self.dock
        s = d.sample
        adata = s.table
        out: dict[str, Region] = {}
        rois = {f"ROI: {k}": v for k, v in regions_from_rois(adata, s.rois).items()}
        shapes = {f"Shapes: {lyr.name}": lyr for lyr in self._shapes_layers()}
        for name in self.checked_region_names():
            if name == WHOLE_LABEL:
                out["whole"] = Region("whole", np.ones(adata.n_obs, bool))
            elif name in rois:
                out[rois[name].name] = rois[name]
            elif name in shapes:
                r = shapes_region(d.session, d.sample_id, shapes[name])
                out[r.name] = r
        return out

    def roles(self) -> dict:
        out = {}
        for i in range(self.roles_table.rowCount()):
            role = self.roles_table.item(i, 0).text()
            txt = (self.roles_table.item(i, 1).text() if self.roles_table.item(i, 1) else "").strip()
            types = [t.strip() for t in txt.split(",") if t.strip()]
            out[role] = types if types or role != "pdl1_macrophage" else None
        return out

    def graph_params(self) -> dict:
        return {"method": self.graph_combo.currentText(), "max_distance_um": self.maxd_spin.value(),
                "radius_um": self.radius_spin.value(), "n_neighs": self.k_spin.value(),
                "expand_px": self.expand_spin.value()}
