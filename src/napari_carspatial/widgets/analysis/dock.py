"""The Analysis dock: pick regions, a graph and a statistic (Setup tab); run it in a worker; see,
compare and export the result (Results tab).

Regions are the whole sample, the sample's ROIs and every napari Shapes layer (one region per
layer; cells by centroid in polygon; the layer's polygons combine with the even-odd rule, so a
polygon drawn inside another cuts a hole, as in QuPath). All computation is
:mod:`napari_carspatial.analysis.results`; the worker never touches layers; results are stored in
the table's ``uns`` and applied (plots, niche colouring) on the main thread.
"""

from __future__ import annotations

import logging

from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..._napari import column_choices, notify, session_for
from ...analysis.results import STATISTICS, AnalysisResult, iter_compute, load_results, store_result
from .._common import BusyNotice, refill_sample_combo, theme_colors
from .results import ResultsTab
from .setup import SetupTab

log = logging.getLogger(__name__)


class AnalysisWidget(QWidget):
    """Region statistics dock (see the module docstring).

    Attributes
    ----------
    setup, results
        The two tabs.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.theme = theme_colors(napari_viewer)
        #: results stored in the current sample's table, by statistic
        self.stored: dict[str, AnalysisResult] = {}
        self._worker = None
        self._cancelled = False

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
        self.setup = SetupTab(self)
        self.results = ResultsTab(self, self.theme)
        self.tabs.addTab(self.setup, "Setup")
        self.tabs.addTab(self.results, "Results")
        root.addWidget(self.tabs)

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
        self.run_btn.clicked.connect(lambda: self.run())
        self.cancel_btn.clicked.connect(self.cancel)
        self.stored_combo.currentIndexChanged.connect(self._on_stored)
        self.viewer.layers.events.inserted.connect(self._on_layers)
        self.viewer.layers.events.removed.connect(self._on_layers)
        self.session.events.table_changed.connect(self._on_table_changed)
        self._on_layers()

    # ------------------------------------------------------------------ samples
    @property
    def sample_id(self) -> str | None:
        return self.sample_combo.currentData()

    @property
    def sample(self):
        return self.session.sample(self.sample_id)

    @property
    def current(self) -> AnalysisResult | None:
        """The result shown in the Results tab."""
        return self.results.current

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
            self.setup.refresh_regions()

    def _on_layers(self, event=None):
        changed, _ = refill_sample_combo(self.sample_combo, self.session)
        if changed:
            self._on_sample()
        else:
            self.setup.refresh_regions()

    def _on_sample(self, *_):
        s = self.sample
        self.key_combo.clear()
        self.busy_notice.update_state()
        if s is None or s.table is None:
            self.setup.refresh_regions()
            return
        self.setup.set_units(s.pixel_size_um)
        cats = [c for c in column_choices(s.table)["categorical"] if c != "niche"]
        self.key_combo.addItems(cats)
        for pref in ("cell_type_curated", "cell_type", "phenotype"):
            if pref in cats:
                self.key_combo.setCurrentText(pref)
                break
        self.setup.refresh_regions()
        self._load_stored()

    # ------------------------------------------------------------------ run
    def run(self, statistic: str | None = None):
        """Start ``statistic`` (default: the combo's) in a thread worker; returns the worker."""
        from napari.qt.threading import create_worker

        s = self.sample
        if s is None or s.table is None:
            notify("Open a sample with a cell table first.", "error")
            return None
        if statistic is not None:
            self.stat_combo.setCurrentIndex(list(STATISTICS).index(statistic))
        st = self.stat_combo.currentData()
        regions = self.setup.selected_regions()
        if not regions:
            notify("Tick at least one region.", "error")
            return None
        empty = [k for k, r in regions.items() if not r.mask.any()]
        if empty:
            notify(f"No cell centroid inside: {', '.join(empty)}; left out.")
            regions = {k: r for k, r in regions.items() if r.mask.any()}
            if not regions:
                return None
        px = s.pixel_size_um
        if not px:
            notify(f"{s.name}: pixel size unknown, so distances are in pixels and densities per px², "
                   "not µm. Open the image with its OME metadata or set the pixel size.")
        areas = {}
        for k, r in regions.items():
            if r.polygon_yx is not None and px:
                areas[k] = r.area_mm2(px)
            elif getattr(r, "area_px", None) and px:
                areas[k] = r.area_px * px * px / 1e6
        kwargs = {"regions": {k: r.mask for k, r in regions.items()}, "cluster_key": self.key_combo.currentText(),
                  "graph": self.setup.graph_params(), "roles": self.setup.roles(), "seed": self.setup.seed_spin.value(),
                  "labels": s.labels[0] if s.labels else None, "region_areas_mm2": areas,
                  "options": {"n_niches": self.setup.niches_spin.value()}}
        worker = create_worker(iter_compute, s.table, st, **kwargs,
                               _progress={"total": len(regions) + 1, "desc": STATISTICS[st]})
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_result)
        worker.errored.connect(lambda e: notify(f"{STATISTICS[st]} failed: {e}", "error"))
        worker.finished.connect(self._on_finished)
        self.progress.setRange(0, len(regions) + 1)
        self.progress.setValue(0)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self._cancelled = False
        self._worker = worker
        worker.start()
        return worker

    def cancel(self):
        """Stop the running statistic at its next step; nothing of it is stored or shown."""
        if self._worker is not None:
            self._cancelled = True
            self._worker.quit()
            self.progress.setFormat("cancelled")

    def _on_progress(self, p: dict):
        if self._cancelled:   # a step reported before the worker saw the cancel
            return
        self.progress.setRange(0, int(p.get("total", 1)))
        self.progress.setValue(int(p.get("step", 0)))
        self.progress.setFormat(f"{p.get('message', '')} (%p%)")

    def _on_finished(self):
        if self._cancelled:
            self.progress.setFormat("cancelled")
        self.run_btn.setEnabled(not self.session.busy(self.sample_id))
        self.cancel_btn.setEnabled(False)
        self._worker = None

    def _on_result(self, result: AnalysisResult):
        s = self.sample
        if s is None or result is None:
            return
        store_result(s.table, result)
        if result.statistic == "niches" and "niche" in result.extras:
            from ...analysis.niches import store_niches

            store_niches(s.table, result.extras["niche"], mask=result.extras["niche_mask"])
            self.session.table_changed(self.sample_id, columns=["niche"], reason="niches")
            try:
                self.session.coloring(self.sample_id).color_by_category("niche")
            except (ValueError, KeyError) as err:
                notify(f"cannot colour niches on the slide: {err}", "error")
        self._load_stored(select=result.statistic)
        self.tabs.setCurrentIndex(1)

    # ------------------------------------------------------------------ stored results
    def _load_stored(self, select: str | None = None):
        s = self.sample
        self.stored = load_results(s.table) if s is not None and s.table is not None else {}
        self.stored_combo.blockSignals(True)
        self.stored_combo.clear()
        for k, r in self.stored.items():
            self.stored_combo.addItem(f"{STATISTICS.get(r.statistic, k)} · {r.time[11:16]}", k)
        self.stored_combo.blockSignals(False)
        if select is not None and select in self.stored:
            self.stored_combo.setCurrentIndex(list(self.stored).index(select))
        self._on_stored()

    def _on_stored(self, *_):
        key = self.stored_combo.currentData()
        self.results.show_result(self.stored.get(key) if key else None)
