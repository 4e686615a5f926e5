"""The "Analysis" dock: pick regions, a graph and a statistic; run it in a worker; see, compare and
export the result.

Regions are the whole sample, the sample's ROIs and every napari Shapes layer (one region per
layer; cells by centroid in polygon; the layer's polygons combine with the even-odd rule, so a
polygon drawn inside another cuts a hole, as in QuPath). All computation is
:mod:`napari_carspatial.analysis.results`; the worker never touches layers; results are stored
in the table's ``uns`` and applied (plots, niche colouring) on the main thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .._napari import column_choices, notify, session_for, shapes_region
from ..analysis import plotting
from ..analysis.regions import DEFAULT_ROLES, Region, regions_from_rois
from ..analysis.results import STATISTICS, AnalysisResult, iter_compute, load_results, store_result
from ..model.atomic import atomic_write
from ._common import BusyNotice, refill_sample_combo, theme_colors

log = logging.getLogger(__name__)

WHOLE_LABEL = "Whole sample"
ROLE_NAMES = ["tumor", "antigen_neg", "car_t", "myeloid", "pdl1_macrophage"]


def _notify(message: str, error: bool = False) -> None:
    notify(message, "error" if error else "info")


class _Canvas(QWidget):
    def __init__(self, theme: dict, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.theme = theme
        self.fig = Figure(figsize=(5.2, 3.9), dpi=100, facecolor=theme["bg"], layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.fig)
        self.canvas.setMinimumHeight(360)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)


class AnalysisWidget(QWidget):
    """Region statistics dock (see module docstring)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.theme = theme_colors(napari_viewer)
        self.results: dict[str, AnalysisResult] = {}
        self.current: AnalysisResult | None = None
        self._worker = None

        root = QVBoxLayout(self)
        form = QFormLayout()
        self.sample_combo = QComboBox()
        self.key_combo = QComboBox()
        form.addRow("Sample", self.sample_combo)
        form.addRow("Cell types", self.key_combo)
        root.addLayout(form)
        self.busy_notice = BusyNotice(self.session, lambda: self.sample_combo.currentData(),
                                      on_change=lambda busy: self.run_btn.setEnabled(not busy and self._worker is None))
        root.addWidget(self.busy_notice)

        self.tabs = QTabWidget()
        root.addWidget(self.tabs)
        # -- setup tab
        setup = QWidget()
        sl = QVBoxLayout(setup)
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
        self.tabs.addTab(setup, "Setup")

        # -- results tab
        res = QWidget()
        rl = QVBoxLayout(res)
        top = QHBoxLayout()
        self.region_a = QComboBox()
        self.region_b = QComboBox()
        top.addWidget(QLabel("Region"))
        top.addWidget(self.region_a, 1)
        top.addWidget(QLabel("vs"))
        top.addWidget(self.region_b, 1)
        rl.addLayout(top)
        self.canvas = _Canvas(self.theme)
        rl.addWidget(self.canvas, 3)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(120)
        rl.addWidget(self.table, 1)
        ex = QHBoxLayout()
        self.png_btn, self.svg_btn, self.csv_btn = QPushButton("PNG"), QPushButton("SVG"), QPushButton("CSV")
        ex.addWidget(QLabel("Export"))
        for b in (self.png_btn, self.svg_btn, self.csv_btn):
            ex.addWidget(b)
        rl.addLayout(ex)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        rl.addWidget(self.info)
        self.tabs.addTab(res, "Results")

        run = QHBoxLayout()
        self.stat_combo = QComboBox()
        for k, t in STATISTICS.items():
            self.stat_combo.addItem(t, k)
        self.run_btn = QPushButton("Run")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        run.addWidget(self.stat_combo, 1)
        run.addWidget(self.run_btn)
        run.addWidget(self.cancel_btn)
        root.addLayout(run)
        prow = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.stored_combo = QComboBox()
        self.stored_combo.setToolTip("results stored in this table (uns)")
        prow.addWidget(self.progress, 1)
        prow.addWidget(QLabel("Stored"))
        prow.addWidget(self.stored_combo, 1)
        root.addLayout(prow)

        self.sample_combo.currentIndexChanged.connect(self._on_sample)
        self.refresh_btn.clicked.connect(self.refresh_regions)
        self.run_btn.clicked.connect(lambda: self.run())
        self.cancel_btn.clicked.connect(self.cancel)
        self.region_a.currentIndexChanged.connect(self._redraw)
        self.region_b.currentIndexChanged.connect(self._redraw)
        self.stored_combo.currentIndexChanged.connect(self._on_stored)
        self.png_btn.clicked.connect(lambda: self._export_dialog("png"))
        self.svg_btn.clicked.connect(lambda: self._export_dialog("svg"))
        self.csv_btn.clicked.connect(lambda: self._export_dialog("csv"))
        self.viewer.layers.events.inserted.connect(self._on_layers)
        self.viewer.layers.events.removed.connect(self._on_layers)
        self.session.events.table_changed.connect(self._on_table_changed)
        self._on_layers()

    # ------------------------------------------------------------------ samples and regions
    @property
    def sample_id(self) -> str | None:
        return self.sample_combo.currentData()

    @property
    def sample(self):
        return self.session.sample(self.sample_id)

    def _on_table_changed(self, event):
        """New categorical columns (curation, gating) become choices; the current one is kept."""
        if event.sid != self.sample_id or self.sample is None:
            return
        cats = [c for c in column_choices(self.sample.table)["categorical"] if c != "niche"]
        if cats != [self.key_combo.itemText(i) for i in range(self.key_combo.count())]:
            cur = self.key_combo.currentText()
            self.key_combo.blockSignals(True)
            self.key_combo.clear()
            self.key_combo.addItems(cats)
            if cur in cats:
                self.key_combo.setCurrentText(cur)
            self.key_combo.blockSignals(False)
        if event.structure or event.columns is None or "roi" in (event.columns or ()):
            self.refresh_regions()

    def _on_layers(self, event=None):
        changed, _ = refill_sample_combo(self.sample_combo, self.session)
        if changed:
            self._on_sample()
        else:
            self.refresh_regions()

    def _on_sample(self, *_):
        s = self.sample
        self.key_combo.clear()
        self.busy_notice.update_state()
        if s is None or s.table is None:
            self.refresh_regions()
            return
        # distances are typed in µm; without a pixel size they can only be pixels: say so
        unit = " µm" if s.pixel_size_um else " px"
        for spin in (self.maxd_spin, self.radius_spin):
            spin.setSuffix(unit)
        cats = [c for c in column_choices(s.table)["categorical"] if c != "niche"]
        self.key_combo.addItems(cats)
        for pref in ("cell_type_curated", "cell_type", "phenotype"):
            if pref in cats:
                self.key_combo.setCurrentText(pref)
                break
        self.refresh_regions()
        self._load_stored()

    def _shapes_layers(self):
        from napari.layers import Shapes

        return [lyr for lyr in self.viewer.layers if isinstance(lyr, Shapes) and len(lyr.data)]

    def refresh_regions(self):
        checked = self.checked_region_names()
        self.region_list.clear()
        s = self.sample
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

    def _shape_region(self, layer) -> Region:
        """Cells of a Shapes layer (even-odd polygons, in the sample's level-0 pixels)."""
        return shapes_region(self.session, self.sample_id, layer)

    def selected_regions(self) -> dict[str, Region]:
        s = self.sample
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
                r = self._shape_region(shapes[name])
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

    # ------------------------------------------------------------------ run
    def run(self, statistic: str | None = None):
        """Start ``statistic`` (default: the combo's) in a thread worker; returns the worker."""
        from napari.qt.threading import create_worker

        s = self.sample
        if s is None or s.table is None:
            _notify("Open a sample with a cell table first.", error=True)
            return None
        if statistic is not None:
            self.stat_combo.setCurrentIndex(list(STATISTICS).index(statistic))
        st = self.stat_combo.currentData()
        regions = self.selected_regions()
        if not regions:
            _notify("Tick at least one region.", error=True)
            return None
        empty = [k for k, r in regions.items() if not r.mask.any()]
        if empty:
            _notify(f"No cell centroid inside: {', '.join(empty)}; left out.")
            regions = {k: r for k, r in regions.items() if r.mask.any()}
            if not regions:
                return None
        px = s.pixel_size_um
        if not px:
            _notify(f"{s.name}: pixel size unknown, so distances are in pixels and densities per px², "
                    "not µm. Open the image with its OME metadata or set the pixel size.")
        areas = {}
        for k, r in regions.items():
            if r.polygon_yx is not None and px:
                areas[k] = r.area_mm2(px)
            elif getattr(r, "area_px", None) and px:
                areas[k] = r.area_px * px * px / 1e6
        kwargs = {"regions": {k: r.mask for k, r in regions.items()}, "cluster_key": self.key_combo.currentText(),
                      "graph": self.graph_params(), "roles": self.roles(), "seed": self.seed_spin.value(),
                      "labels": s.labels[0] if s.labels else None, "region_areas_mm2": areas,
                      "options": {"n_niches": self.niches_spin.value()}}
        adata = s.table
        worker = create_worker(iter_compute, adata, st, **kwargs,
                               _progress={"total": len(regions) + 1, "desc": STATISTICS[st]})
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_result)
        worker.errored.connect(lambda e: _notify(f"{STATISTICS[st]} failed: {e}", error=True))
        worker.finished.connect(self._on_finished)
        self.progress.setRange(0, len(regions) + 1)
        self.progress.setValue(0)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self._worker = worker
        worker.start()
        return worker

    def cancel(self):
        """Stop the running statistic at its next step; nothing of it is stored or shown."""
        if self._worker is not None:
            self._worker.quit()
            self.progress.setFormat("cancelled")

    def _on_progress(self, p: dict):
        self.progress.setRange(0, int(p.get("total", 1)))
        self.progress.setValue(int(p.get("step", 0)))
        self.progress.setFormat(f"{p.get('message', '')} (%p%)")

    def _on_finished(self):
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self._worker = None

    def _on_result(self, result: AnalysisResult):
        s = self.sample
        if s is None or result is None:
            return
        store_result(s.table, result)
        if result.statistic == "niches" and "niche" in result.extras:
            from ..analysis.niches import store_niches

            store_niches(s.table, result.extras["niche"], mask=result.extras["niche_mask"])
            self.session.table_changed(self.sample_id, columns=["niche"], reason="niches")
            try:
                self.session.coloring(self.sample_id).color_by_category("niche")
            except (ValueError, KeyError) as err:
                _notify(f"cannot colour niches on the slide: {err}", error=True)
        self._load_stored(select=result.statistic)
        self.tabs.setCurrentIndex(1)

    # ------------------------------------------------------------------ showing results
    def _load_stored(self, select: str | None = None):
        s = self.sample
        self.results = load_results(s.table) if s is not None and s.table is not None else {}
        self.stored_combo.blockSignals(True)
        self.stored_combo.clear()
        for k, r in self.results.items():
            self.stored_combo.addItem(f"{STATISTICS.get(r.statistic, k)} · {r.time[11:16]}", k)
        self.stored_combo.blockSignals(False)
        if select is not None and select in self.results:
            self.stored_combo.setCurrentIndex(list(self.results).index(select))
        self._on_stored()

    def _on_stored(self, *_):
        key = self.stored_combo.currentData()
        self.show_result(self.results.get(key) if key else None)

    def show_result(self, result: AnalysisResult | None):
        self.current = result
        for c in (self.region_a, self.region_b):
            c.blockSignals(True)
            c.clear()
        if result is not None:
            self.region_a.addItems(result.regions)
            self.region_b.addItem("—")
            self.region_b.addItems(result.regions)
        for c in (self.region_a, self.region_b):
            c.blockSignals(False)
        self._redraw()

    def compare_with(self, region_a: str, region_b: str | None) -> None:
        self.region_a.setCurrentText(region_a)
        self.region_b.setCurrentText(region_b or "—")
        self._redraw()

    def _redraw(self, *_):
        fig = self.canvas.fig
        r = self.current
        if r is None:
            fig.clear()
            self.canvas.canvas.draw_idle()
            self.table.setRowCount(0)
            self.info.setText("")
            return
        a = self.region_a.currentText() or r.regions[0]
        b = self.region_b.currentText()
        b = None if b in ("", "—") else b
        try:
            plotting.plot_result(fig, r, a, compare=b, theme=self.theme)
        except (KeyError, ValueError, IndexError) as err:
            fig.clear()
            log.warning("cannot plot %s: %s", r.statistic, err)
        self.canvas.canvas.draw_idle()
        self._fill_table(r, a)
        g = r.params.get("graph")
        gtxt = f" · graph {g['method']}" if g else ""
        self.info.setText(f"{STATISTICS.get(r.statistic, r.statistic)} · regions {', '.join(r.regions)} · "
                          f"{r.time} · seed {r.params.get('seed')}{gtxt}")

    def _fill_table(self, r: AnalysisResult, region: str):
        name = next(iter(r.tables))
        if r.statistic == "cart":
            df = r.tables["metrics"].pivot(index="metric", columns="region", values="value")
            df = df.reindex(list(dict.fromkeys(r.tables["metrics"]["metric"])))
            df = df.reset_index()
        else:
            df = r.tables[name]
            if "region" in df and region in set(df["region"]):
                df = df[df["region"] == region]
            df = df.head(500)
        self.table.setColumnCount(df.shape[1])
        self.table.setRowCount(df.shape[0])
        self.table.setHorizontalHeaderLabels([str(c) for c in df.columns])
        for i, row in enumerate(df.itertuples(index=False)):
            for j, v in enumerate(row):
                txt = f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
                self.table.setItem(i, j, QTableWidgetItem(txt))
        self.table.resizeColumnsToContents()

    # ------------------------------------------------------------------ export
    def export(self, path, kind: str | None = None) -> list[Path]:
        """Write the shown figure (``png``/``svg``) or all tables (``csv``: one file per table)."""
        r = self.current
        if r is None:
            raise ValueError("no result to export")
        path = Path(path)
        kind = kind or path.suffix.lstrip(".").lower()
        if kind in ("png", "svg"):
            a = self.region_a.currentText() or r.regions[0]
            b = self.region_b.currentText()
            plotting.save_figure(r, a, path.with_suffix(f".{kind}"), compare=None if b in ("", "—") else b)
            return [path.with_suffix(f".{kind}")]
        out = []
        for name, df in r.tables.items():
            p = path.with_name(f"{path.stem}_{name}.csv")
            atomic_write(p, lambda tmp, df=df: df.to_csv(tmp, index=False))
            out.append(p)
        return out

    def _export_dialog(self, kind: str):
        if self.current is None:
            _notify("Run or select a result first.", error=True)
            return
        fn, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", f"{self.current.statistic}.{kind}",
                                            f"{kind.upper()} (*.{kind})")
        if fn:
            files = self.export(fn, kind)
            _notify(f"Wrote {', '.join(p.name for p in files)}")
