"""The Analysis dock's "Setup" tab: regions (the whole sample, ROIs, Shapes layers), the pixel
size, the graph and contact definition, the interval and ligand-receptor options."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..._napari import layer_polygons_px, role_of
from ...analysis.contact import CONTACT_PRESETS, DEFAULT_CONTACT
from ...analysis.regions import Region, cells_in_polygon, polygon_area_px
from ...model.pixel_size import PixelSize, pixel_size_info
from .._common import vertical_scroll

WHOLE_LABEL = "Whole sample"
#: ligand-receptor pair lists offered (key passed to ``analysis.ligrec``, label)
PAIR_LISTS = {"cart": "CAR T preset (IL18, IFNG, PD-L1/PD-1, CD47-SIRPA, ...)", "consensus": "liana consensus",
              "cellphonedb": "CellPhoneDB", "cellchatdb": "CellChatDB", "mouseconsensus": "liana mouse consensus"}
#: ligand-receptor tests offered
LIGREC_TESTS = {"spatial": "between neighbouring cells (exact null)", "cluster": "between cell types (squidpy)",
                "both": "both"}


def roi_region_names(rois) -> list[str]:
    """The ROIs' region names as :func:`~napari_carspatial.analysis.regions.regions_from_rois`
    makes them (a repeated name gets a suffix), without computing any cell mask."""
    out: list[str] = []
    for roi in rois:
        name, k = roi.name, 2
        while name in out:
            name = f"{roi.name} ({k})"
            k += 1
        out.append(name)
    return out


def build_regions(adata, specs) -> dict[str, Region]:
    """Cell masks of region specs (:meth:`SetupTab.selected_region_specs`): cells by centroid in
    polygon, a Shapes layer's polygons combined even-odd (a polygon inside another cuts a hole);
    names made unique. Headless and Qt-free in effect: the dock runs it in its worker (one
    polygon over a million cells takes ~1 s)."""
    from matplotlib.path import Path as MPath

    out: dict[str, Region] = {}
    for name0, kind, polys, cls in specs:
        if kind == "whole":
            r = Region("whole", np.ones(adata.n_obs, bool))
        elif kind == "roi":
            r = Region(name0, cells_in_polygon(adata, polys[0]), np.asarray(polys[0], float), cls)
        else:
            mask = np.zeros(adata.n_obs, bool)
            area = 0.0
            for i, p in enumerate(polys):
                mask ^= cells_in_polygon(adata, p)
                depth = sum(MPath(q[:, ::-1]).contains_point(p[0][::-1]) for j, q in enumerate(polys) if j != i)
                area += polygon_area_px(p) * (1 if depth % 2 == 0 else -1)
            r = Region(name0, mask, None, "shapes")
            r.area_px = area
        name, k = r.name, 2
        while name in out:
            name = f"{r.name} ({k})"
            k += 1
        r.name = name
        out[name] = r
    return out


class SetupTab(QWidget):
    """What to compute on: regions, pixel size, graph / contact, intervals, niches, ligand-receptor."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        body = QWidget()
        outer.addWidget(vertical_scroll(body, frame=True))
        sl = QVBoxLayout(body)

        rg = QGroupBox("Regions (cells by centroid in polygon)")
        rgl = QVBoxLayout(rg)
        self.region_list = QListWidget()
        self.region_list.setMaximumHeight(120)
        rgl.addWidget(self.region_list)
        self.refresh_btn = QPushButton("Refresh regions (ROIs and Shapes layers)")
        rgl.addWidget(self.refresh_btn)
        sl.addWidget(rg)

        pg = QGroupBox("Pixel size")
        pf = QFormLayout(pg)
        self.px_override = QCheckBox("override the file's value (every distance and area)")
        self.px_spin = QDoubleSpinBox(suffix=" µm / px", minimum=0.001, maximum=1000.0, value=1.0, decimals=4)
        self.px_spin.setEnabled(False)
        self.px_info = QLabel("")
        self.px_info.setWordWrap(True)
        pf.addRow("µm per pixel", self.px_spin)
        pf.addRow(self.px_override)
        pf.addRow(self.px_info)
        sl.addWidget(pg)

        gg = QGroupBox("Neighbour graph")
        gf = QFormLayout(gg)
        self.graph_combo = QComboBox()
        for k, t in (("delaunay", "Delaunay (max edge)"), ("radius", "radius"), ("knn", "k nearest"),
                     ("contact", "touching masks (contact)")):
            self.graph_combo.addItem(t, k)
        self.maxd_spin = QDoubleSpinBox(suffix=" µm", minimum=1, maximum=1000, value=30, decimals=1)
        self.radius_spin = QDoubleSpinBox(suffix=" µm", minimum=1, maximum=1000, value=20, decimals=1)
        self.k_spin = QSpinBox(minimum=1, maximum=100, value=6)
        self.contact_combo = QComboBox()
        for k, v in CONTACT_PRESETS.items():
            self.contact_combo.addItem(k, k)
            self.contact_combo.setItemData(self.contact_combo.count() - 1, v["reference"], Qt.ToolTipRole)
        self.contact_combo.setCurrentIndex(list(CONTACT_PRESETS).index(DEFAULT_CONTACT))
        self.membrane_spin = QSpinBox(suffix=" px", minimum=1, maximum=2, value=1)
        self.expand_spin = QSpinBox(suffix=" px", minimum=0, maximum=20, value=4)
        self.contact_ref = QLabel("")
        self.contact_ref.setWordWrap(True)
        self.contact_ref.setStyleSheet("color: #9aa1a9")
        gf.addRow("Method", self.graph_combo)
        gf.addRow("Delaunay max edge", self.maxd_spin)
        gf.addRow("Radius", self.radius_spin)
        gf.addRow("k", self.k_spin)
        gf.addRow("Contact definition", self.contact_combo)
        gf.addRow("Membrane width", self.membrane_spin)
        gf.addRow("Mask expansion", self.expand_spin)
        gf.addRow(self.contact_ref)
        self._graph_form = gf
        sl.addWidget(gg)

        og = QGroupBox("Statistics")
        of = QFormLayout(og)
        self.seed_spin = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.niches_spin = QSpinBox(minimum=2, maximum=20, value=8)
        self.tile_spin = QDoubleSpinBox(suffix=" µm", minimum=10, maximum=2000, value=100, decimals=0)
        self.tile_spin.setToolTip("side of the tiles the block bootstrap resamples (densities, log2 O/E): larger "
                                  "than the clusters of cells, small enough for many tiles per region")
        self.boot_spin = QSpinBox(minimum=100, maximum=20000, value=1000, singleStep=500)
        of.addRow("Seed", self.seed_spin)
        of.addRow("Niches (k-means)", self.niches_spin)
        of.addRow("Bootstrap tiles", self.tile_spin)
        of.addRow("Bootstrap resamples", self.boot_spin)
        sl.addWidget(og)

        lg = QGroupBox("Ligand-receptor")
        lf = QFormLayout(lg)
        self.pairs_combo = QComboBox()
        for k, t in PAIR_LISTS.items():
            self.pairs_combo.addItem(t, k)
        self.test_combo = QComboBox()
        for k, t in LIGREC_TESTS.items():
            self.test_combo.addItem(t, k)
        self.perms_spin = QSpinBox(minimum=10, maximum=100000, value=1000, singleStep=500)
        self.min_edges_spin = QSpinBox(minimum=1, maximum=1000, value=5)
        lf.addRow("Pairs", self.pairs_combo)
        lf.addRow("Test", self.test_combo)
        lf.addRow("Permutations (cluster test)", self.perms_spin)
        lf.addRow("Min. neighbour pairs", self.min_edges_spin)
        sl.addWidget(lg)
        sl.addStretch(1)

        self.refresh_btn.clicked.connect(self.refresh_regions)
        self.px_override.toggled.connect(self._on_px_override)
        self.px_spin.valueChanged.connect(lambda *_: self._show_px())
        self.graph_combo.currentIndexChanged.connect(self._graph_rows)
        self.contact_combo.currentIndexChanged.connect(self._preset_defaults)
        self.contact_combo.currentIndexChanged.connect(self._graph_rows)
        self._graph_rows()

    # ------------------------------------------------------------------ pixel size
    def pixel_size(self) -> PixelSize:
        """The pixel size every distance and area of a run uses, and where it came from."""
        s = self.dock.sample
        override = self.px_spin.value() if self.px_override.isChecked() else None
        return pixel_size_info(s, override=override) if s is not None else PixelSize(override, "user" if override
                                                                                        else "unknown")

    def set_sample(self, sample) -> None:
        """Show the sample's own pixel size and its source (the override is off)."""
        info = pixel_size_info(sample) if sample is not None else PixelSize(None, "unknown")
        self.px_override.blockSignals(True)
        self.px_override.setChecked(False)
        self.px_override.blockSignals(False)
        self.px_spin.setEnabled(False)
        if info.value:
            self.px_spin.blockSignals(True)
            self.px_spin.setValue(float(info.value))
            self.px_spin.blockSignals(False)
        self._show_px()

    def _on_px_override(self, on: bool) -> None:
        self.px_spin.setEnabled(on)
        if not on and self.dock.sample is not None:
            info = pixel_size_info(self.dock.sample)
            if info.value:
                self.px_spin.setValue(float(info.value))
        self._show_px()

    def _show_px(self) -> None:
        info = self.pixel_size()
        if info.value is None:
            self.px_info.setText("⚠ unknown: distances are in pixels and densities per pixel². Tick "
                                 "'use this value' to give the µm per pixel.")
            self.px_info.setStyleSheet("color: #e0a000")
        else:
            self.px_info.setText(f"{info.value:g} µm per pixel, from: {info.source}")
            self.px_info.setStyleSheet("")
        self.set_units(info.value)

    def set_units(self, pixel_size_um) -> None:
        """Distances are typed in µm; without a pixel size they can only be pixels: say so."""
        unit = " µm" if pixel_size_um else " px"
        for spin in (self.maxd_spin, self.radius_spin, self.tile_spin):
            spin.setSuffix(unit)

    # ------------------------------------------------------------------ graph
    def _graph_rows(self, *_):
        method = self.graph_combo.currentData()
        preset = self.contact_combo.currentData()
        show = {self.maxd_spin: method == "delaunay", self.radius_spin: method == "radius",
                self.k_spin: method == "knn", self.contact_combo: method == "contact",
                self.membrane_spin: method == "contact" and preset == "phenoptr",
                self.expand_spin: method == "contact" and preset != "phenoptr"}
        for w, on in show.items():
            self._graph_form.setRowVisible(w, on) if hasattr(self._graph_form, "setRowVisible") else w.setEnabled(on)
        if method == "contact":
            self.contact_ref.setText(f"reproduces: {CONTACT_PRESETS[preset]['reference']}")
        else:
            self.contact_ref.setText("")
        self.contact_ref.setVisible(method == "contact")

    def _preset_defaults(self, *_):
        default = CONTACT_PRESETS[self.contact_combo.currentData()]["defaults"].get("expand_px")
        if default is not None:
            self.expand_spin.setValue(int(default))

    def graph_params(self) -> dict:
        """The graph of the run, in :func:`~napari_carspatial.analysis.results.region_graph`'s terms."""
        p = {"method": self.graph_combo.currentData(), "max_distance_um": self.maxd_spin.value(),
             "radius_um": self.radius_spin.value(), "n_neighs": self.k_spin.value()}
        if p["method"] == "contact":
            p["contact"] = self.contact_combo.currentData()
            if p["contact"] == "phenoptr":
                p["membrane_width_px"] = self.membrane_spin.value()
            else:
                p["expand_px"] = self.expand_spin.value()
        return p

    def options(self) -> dict:
        """Statistic options (niches, intervals, ligand-receptor)."""
        return {"n_niches": self.niches_spin.value(), "tile_um": self.tile_spin.value(),
                "n_boot": self.boot_spin.value(), "lr_pairs": self.pairs_combo.currentData(),
                "lr_test": self.test_combo.currentData(), "n_perms": self.perms_spin.value(),
                "min_edges": self.min_edges_spin.value(), "membrane_width_px": self.membrane_spin.value()}

    # ------------------------------------------------------------------ regions
    def _shapes_layers(self):
        """User-drawn Shapes layers with at least one area shape. The sample's own ROI layer is
        left out (each ROI is offered on its own) and so are the plugin's helper layers."""
        from napari.layers import Shapes

        out = []
        for lyr in self.dock.viewer.layers:
            if not isinstance(lyr, Shapes) or not len(lyr.data) or role_of(lyr) is not None:
                continue
            if not any(t in ("polygon", "rectangle", "ellipse") for t in lyr.shape_type):
                continue
            out.append(lyr)
        return out

    def _names(self) -> list[str]:
        s = self.dock.sample
        if s is None:
            return []
        rois = [f"ROI: {k}" for k in roi_region_names(s.rois)] if s.table is not None else []
        return [WHOLE_LABEL, *rois, *[f"Shapes: {lyr.name}" for lyr in self._shapes_layers()]]

    def refresh_regions(self):
        checked = self.checked_region_names()
        names = self._names()
        if names == [self.region_list.item(i).text() for i in range(self.region_list.count())]:
            return
        self.region_list.clear()
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

    def selected_region_specs(self) -> list[tuple]:
        """The ticked regions as ``(name, kind, polygons, class)`` with polygons in level-0 px
        (y, x): only the layers' vertices are read here (GUI thread); the cell masks are made by
        :func:`build_regions`, in the worker when the dock runs a statistic."""
        d = self.dock
        s = d.sample
        rois = dict(zip((f"ROI: {k}" for k in roi_region_names(s.rois)), s.rois, strict=True))
        shapes = {f"Shapes: {lyr.name}": lyr for lyr in self._shapes_layers()}
        out = []
        for name in self.checked_region_names():
            if name == WHOLE_LABEL:
                out.append(("whole", "whole", [], ""))
            elif name in rois:
                roi = rois[name]
                out.append((name[len("ROI: "):], "roi", [np.asarray(roi.polygon_yx, float)], getattr(roi, "cls", "")))
            elif name in shapes:
                lyr = shapes[name]
                out.append((lyr.name, "shapes", layer_polygons_px(d.session, d.sample_id, lyr), "shapes"))
        return out

    def selected_regions(self) -> dict[str, Region]:
        """The ticked regions (cells by centroid in polygon; Shapes layers even-odd, in level-0 px),
        with unique names (a Shapes layer named like an ROI gets a suffix)."""
        return build_regions(self.dock.sample.table, self.selected_region_specs())
