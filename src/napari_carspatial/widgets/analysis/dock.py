"""The Analysis dock: pick the cell-type column, the roles (Roles tab), regions, pixel size and a
graph (Setup tab); run a statistic in a worker; see, compare and export the result (Results tab).

Regions are the whole sample, the sample's ROIs and every user-drawn napari Shapes layer (one
region per layer; cells by centroid in polygon; the layer's polygons combine with the even-odd
rule, so a polygon drawn inside another cuts a hole, as in QuPath). The cell-type column is
found as the CLI and the batch find it (:func:`~napari_carspatial.model.cell_types.resolve_cell_type_key`)
and can be changed. All computation is :mod:`napari_carspatial.analysis.results`; the workers
never touch layers; results are stored in the table's ``uns`` and applied (plots, niche
colouring, engaged cell pairs) on the main thread.

One module (~540 lines) because the run (controls -> worker -> stored result) and the cell-type
choice share the dock's state; the tabs are their own modules (``setup``, ``roles``, ``results``).
"""

from __future__ import annotations

import logging

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..._napari import META_ROLE, META_SAMPLE, column_choices, notify, session_for
from ...analysis.results import (
    PUBLISHED,
    STATISTICS,
    AnalysisResult,
    iter_compute,
    load_results,
    region_graph,
    store_result,
    type_colors,
)
from ...model import SampleError
from ...model.cell_types import is_id_like, resolve_cell_type_key
from .._common import BusyNotice, refill_sample_combo, theme_colors
from .results import ResultsTab
from .roles import RolesTab
from .setup import SetupTab, build_regions

log = logging.getLogger(__name__)

#: layer role of the engaged cell pairs (a napari Vectors layer)
ROLE_ENGAGED = "ligrec_pairs"
#: statistics that need the segmentation mask
NEEDS_MASK = ("touching",)
#: the dock's smallest width, px (the figures stay readable beside a 60 % canvas)
MIN_WIDTH_PX = 500


def _tell_error(what: str, err: BaseException) -> None:
    """One line for the user; the traceback only in the log (a bad input is a SampleError)."""
    if isinstance(err, (SampleError, ValueError, KeyError)):
        notify(f"{what}: {err}", "error")
    else:
        log.error("%s failed", what, exc_info=err)
        notify(f"{what} failed ({type(err).__name__}: {err}); details in the log.", "error")


class AnalysisWidget(QWidget):
    """Region statistics dock (see the module docstring).

    Attributes
    ----------
    setup, roles, results
        The three tabs.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.theme = theme_colors(napari_viewer)
        #: results stored in the current sample's table, by statistic
        self.stored: dict[str, AnalysisResult] = {}
        #: the region masks of the last run of each statistic (engaged pairs need them)
        self.run_masks: dict[str, dict[str, np.ndarray]] = {}
        self._worker = None
        self._cancelled = False
        self._engaged_worker = None

        # wide enough for a readable figure; the canvas keeps >= 60 % of a 1600 px window
        self.setMinimumWidth(MIN_WIDTH_PX)
        root = QVBoxLayout(self)
        self.sample_combo = QComboBox()
        self.key_combo = QComboBox()
        self.key_combo.setToolTip("the cell-type column; found by name as the command line and the batch find it")
        for c in (self.sample_combo, self.key_combo):   # long names must not widen the dock
            c.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            c.setMinimumContentsLength(12)
        self.key_info = QLabel("")
        self.key_info.setWordWrap(True)
        self.key_info.setStyleSheet("color: #9aa1a9")
        head = QHBoxLayout()   # one row for both choices: the height goes to the figure
        head.addWidget(QLabel("Sample"))
        head.addWidget(self.sample_combo, 1)
        head.addWidget(QLabel("Cell types"))
        head.addWidget(self.key_combo, 1)
        root.addLayout(head)
        root.addWidget(self.key_info)
        self.busy_notice = BusyNotice(self.session, lambda: self.sample_combo.currentData(),
                                      on_change=lambda busy: self.run_btn.setEnabled(not busy and self._worker is None))
        root.addWidget(self.busy_notice)
        self.tabs = QTabWidget()
        self.setup = SetupTab(self)
        self.roles = RolesTab(self)
        self.results = ResultsTab(self, self.theme)
        self.tabs.addTab(self.setup, "Setup")
        self.tabs.addTab(self.roles, "Roles")
        self.tabs.addTab(self.results, "Results")
        root.addWidget(self.tabs, 1)

        run = QHBoxLayout()
        self.stat_combo = QComboBox()
        for k, t in STATISTICS.items():
            self.stat_combo.addItem(t, k)
        self.stat_combo.insertSeparator(self.stat_combo.count())
        for k, t in PUBLISHED.items():
            self.stat_combo.addItem(t, k)
        # the longest name (a published method) must not widen the dock: the column would take
        # the canvas' width (the full name is the tooltip and the popup)
        self.stat_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.stat_combo.setMinimumContentsLength(24)
        self.stat_combo.currentIndexChanged.connect(
            lambda *_: self.stat_combo.setToolTip(self.stat_combo.currentText()))
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
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: #e0a000")
        self.status.hide()
        root.addWidget(self.status)

        self.sample_combo.currentIndexChanged.connect(self._on_sample)
        self.key_combo.currentIndexChanged.connect(self._on_key)
        self.run_btn.clicked.connect(lambda: self.run())
        self.cancel_btn.clicked.connect(self.cancel)
        self.stored_combo.currentIndexChanged.connect(self._on_stored)
        self.viewer.layers.events.inserted.connect(self._on_layers)
        self.viewer.layers.events.removed.connect(self._on_layers)
        self.session.events.table_changed.connect(self._on_table_changed)
        self._on_layers()

    # ------------------------------------------------------------------ samples and the cell-type column
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

    @property
    def cell_type_key(self) -> str | None:
        """The cell-type column the dock uses (None when the table has none)."""
        return self.key_combo.currentData() or None

    def legend_colors(self) -> dict[str, str]:
        """The legend's colours of the current column's types (and of the niches), for the figures."""
        s = self.sample
        if s is None or s.table is None:
            return {}
        out = {}
        if "niche" in s.table.obs:
            out.update(type_colors(s.table, "niche"))
        key = (self.current.params.get("cluster_key") if self.current is not None else None) or self.cell_type_key
        if key and key in s.table.obs:
            out.update(type_colors(s.table, key))
        return out

    def _key_choices(self, adata) -> list[str]:
        """The categorical columns a user may take as cell types; identifier-like ones (``fov``,
        ``acquisition``: :func:`~napari_carspatial.model.cell_types.is_id_like`) last."""
        cats = [c for c in column_choices(adata)["categorical"] if c != "niche"]
        return sorted(cats, key=is_id_like)

    def _fill_keys(self, keep: str | None = None) -> None:
        """The categorical columns, the one the CLI would use selected (or ``keep``), and why."""
        s = self.sample
        self.key_combo.blockSignals(True)
        self.key_combo.clear()
        if s is None or s.table is None:
            self.key_combo.blockSignals(False)
            self.key_info.setText("")
            return
        cats = self._key_choices(s.table)
        try:
            found = resolve_cell_type_key(s.table)
            self._found = found
        except SampleError as err:
            found = None
            self._found = None
            self.key_info.setText(f"⚠ {err}")
            self.key_info.setStyleSheet("color: #e0a000")
        for c in cats:
            self.key_combo.addItem(c, c)
        pick = keep if keep in cats else (found.key if found is not None and found.key in cats else None)
        if pick is None and found is not None and found.key not in cats:   # a found column column_choices hides
            self.key_combo.insertItem(0, found.key, found.key)
            pick = found.key
        if pick is not None:
            self.key_combo.setCurrentIndex(self.key_combo.findData(pick))
        elif found is None:
            self.key_combo.insertItem(0, "— no cell-type column —", None)
            self.key_combo.setCurrentIndex(0)
        self.key_combo.blockSignals(False)
        self._show_key()

    def _show_key(self) -> None:
        key, found = self.cell_type_key, getattr(self, "_found", None)
        if key is None:
            return
        if found is not None and found.key == key:
            self.key_info.setText(found.describe())
            self.key_info.setToolTip("the command line and the batch use the same column")
        else:
            self.key_info.setText(f"cell types from obs[{key!r}] (chosen here"
                                  + (f"; by name it would be {found.key!r})" if found is not None else ")"))
        self.key_info.setStyleSheet("color: #9aa1a9")

    def set_cell_type_key(self, key: str) -> None:
        """Use another cell-type column (the roles follow it)."""
        i = self.key_combo.findData(key)
        if i < 0:
            raise KeyError(f"no categorical column {key!r}")
        self.key_combo.setCurrentIndex(i)

    def _on_key(self, *_):
        self._show_key()
        self.roles.refresh()

    def _on_table_changed(self, event):
        """New categorical columns (curation, gating) become choices; the current one is kept."""
        if event.sid != self.sample_id or self.sample is None:
            return
        if event.columns == () and str(event.reason).startswith("roles"):
            return   # our own roles edit (uns only)
        cats = self._key_choices(self.sample.table)
        if cats != [self.key_combo.itemData(i) for i in range(self.key_combo.count()) if self.key_combo.itemData(i)]:
            self._fill_keys(keep=self.cell_type_key)
            self.roles.refresh()
        elif event.columns is None or (self.cell_type_key in (event.columns or ())):
            self.roles.refresh()
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
        self.busy_notice.update_state()
        self.run_masks = {}
        self._fill_keys()
        self.setup.set_sample(s)
        self.setup.refresh_regions()
        self.roles.refresh()
        if s is None or s.table is None:
            return
        self._load_stored()

    # ------------------------------------------------------------------ run
    def _base_kwargs(self) -> dict:
        """The options of a run read from the controls (GUI thread, cheap): all but the regions."""
        s = self.sample
        px = self.setup.pixel_size()
        return {"cluster_key": self.cell_type_key, "graph": self.setup.graph_params(), "roles": self.roles.mapping,
                "seed": self.setup.seed_spin.value(), "labels": s.labels[0] if s.labels else None,
                "pixel_size_um": px.value, "options": self.setup.options()}

    @staticmethod
    def _region_kwargs(regions: dict, pixel_size_um) -> tuple[dict, list[str]]:
        """Cell masks and areas (mm²) of the regions with cells, and the names of the empty ones."""
        empty = [k for k, r in regions.items() if not r.mask.any()]
        regions = {k: r for k, r in regions.items() if r.mask.any()}
        areas = {}
        for k, r in regions.items():
            if r.polygon_yx is not None and pixel_size_um:
                areas[k] = r.area_mm2(pixel_size_um)
            elif getattr(r, "area_px", None) and pixel_size_um:
                areas[k] = r.area_px * pixel_size_um * pixel_size_um / 1e6
        return {"regions": {k: r.mask for k, r in regions.items()}, "region_areas_mm2": areas}, empty

    def run_kwargs(self, statistic: str) -> dict:
        """The keyword arguments of :func:`~napari_carspatial.analysis.results.iter_compute` the
        dock's controls make (regions, cell types, roles, graph, pixel size, options); the headless
        twin of what :meth:`run` computes in its worker."""
        kw = self._base_kwargs()
        reg, empty = self._region_kwargs(self.setup.selected_regions(), kw["pixel_size_um"])
        if empty:
            notify(f"No cell centroid inside: {', '.join(empty)}; left out.")
        return {**reg, **kw}

    def run(self, statistic: str | None = None):
        """Start ``statistic`` (default: the combo's) in a thread worker; returns the worker.

        Only the controls and the layers' vertices are read on the GUI thread; the regions' cell
        masks (a second per polygon at a million cells) and the statistic are made in the worker,
        which reports progress and stops at its next step on Cancel."""
        from napari.qt.threading import create_worker

        s = self.sample
        if s is None or s.table is None:
            notify("Open a sample with a cell table first.", "error")
            return None
        if statistic is not None:
            self.stat_combo.setCurrentIndex(self.stat_combo.findData(statistic))
        st = self.stat_combo.currentData()
        if self.cell_type_key is None:
            notify(f"{s.name}: no cell-type column. {self.key_info.text().lstrip('⚠ ')}", "error")
            return None
        if st in NEEDS_MASK and not s.labels:
            notify(f"{STATISTICS.get(st, PUBLISHED.get(st, st))} needs the segmentation mask; this sample has none.",
                   "error")
            return None
        specs = self.setup.selected_region_specs()
        if not specs:
            notify("Tick at least one region with cells.", "error")
            return None
        kw = self._base_kwargs()
        if kw["pixel_size_um"] is None:
            notify(f"{s.name}: pixel size unknown, so distances are in pixels and densities per px², "
                   "not µm. Set the µm per pixel in Setup > Pixel size.")
        title = STATISTICS.get(st, PUBLISHED.get(st, st))
        n = len(specs)
        table, run_masks = s.table, {}

        def work():
            yield {"step": 0, "total": n + 1, "message": "cells in the regions"}
            reg, empty = self._region_kwargs(build_regions(table, specs), kw["pixel_size_um"])
            if empty:
                yield {"notice": f"No cell centroid inside: {', '.join(empty)}; left out."}
            if not reg["regions"]:
                raise SampleError(f"{s.name}: no cell centroid inside the ticked regions; tick a region with cells.")
            run_masks.update(reg["regions"])
            return (yield from iter_compute(table, st, **reg, **kw))

        # errors are told in one line (a SampleError says what is missing); a handler given here stops
        # superqt from re-raising them on the GUI thread
        worker = create_worker(work, _progress={"total": n + 2, "desc": title},
                               _connect={"errored": lambda e: self._on_error(title, e)}, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda res: self._on_result(res, dict(run_masks)))
        worker.finished.connect(self._on_finished)
        self.progress.setRange(0, n + 1)
        self.progress.setValue(0)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.hide()
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

    def _on_error(self, title: str, err: BaseException) -> None:
        """The reason a run failed stays readable in the dock (a notification fades)."""
        _tell_error(title, err)
        self.progress.setFormat("not run")
        self.status.setText(f"{title} did not run: {err}")
        self.status.show()

    def _on_progress(self, p: dict):
        if self._cancelled:   # a step reported before the worker saw the cancel
            return
        if "notice" in p:
            notify(p["notice"])
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

    def _on_result(self, result: AnalysisResult, masks=None):
        s = self.sample
        if s is None or result is None:
            return
        store_result(s.table, result)
        if masks is not None:
            self.run_masks[result.statistic] = dict(masks)
        if result.statistic == "niches" and "niche" in result.extras:
            from ...analysis.niches import store_niches

            store_niches(s.table, result.extras["niche"], mask=result.extras["niche_mask"])
            self.session.table_changed(self.sample_id, columns=["niche"], reason="niches")
            try:
                self.session.coloring(self.sample_id).color_by_category("niche")
            except (ValueError, KeyError) as err:
                notify(f"cannot colour niches on the slide: {err}", "error")
        self.tabs.setCurrentWidget(self.results)   # first: the figure is laid out at its shown size
        self._load_stored(select=result.statistic)

    # ------------------------------------------------------------------ engaged cell pairs
    def _region_mask(self, statistic: str, region: str) -> np.ndarray | None:
        masks = self.run_masks.get(statistic) or {}
        if region in masks:
            return np.asarray(masks[region], bool)
        if region == "whole":
            return np.ones(self.sample.table.n_obs, bool)
        regs = self.setup.selected_regions() if self.sample is not None else {}
        if region not in regs:   # a stored result: look among every region the dock offers
            saved = self.setup.checked_region_names()
            self.setup.set_checked_regions([self.setup.region_list.item(i).text()
                                            for i in range(self.setup.region_list.count())])
            regs = self.setup.selected_regions()
            self.setup.set_checked_regions(saved)
        return regs[region].mask if region in regs else None

    def show_engaged(self, ligand: str | None = None, receptor: str | None = None, sender: str | None = None,
                     receiver: str | None = None, region: str | None = None):
        """Draw the engaged cell pairs of the shown ligand-receptor result on the slide (a worker
        finds them; the layer is made on the main thread). Returns the worker."""
        from napari.qt.threading import create_worker

        from ...analysis.engaged import engaged_pairs

        r = self.current
        if r is None or r.statistic != "ligrec":
            notify("Run Ligand-receptor signalling first.", "error")
            return None
        if ligand is not None and not self.results.choose_engaged(ligand, receptor, sender, receiver):
            notify(f"{ligand} → {receptor}, {sender} → {receiver} was not tested in this result.", "error")
            return None
        ch = self.results.engaged_choice()
        if ch is None:
            notify("Choose a tested ligand → receptor pair and a sender → receiver.", "error")
            return None
        if region is not None:
            ch["region"] = region
        s = self.sample
        mask = self._region_mask("ligrec", ch["region"])
        if mask is None:
            notify(f"region {ch['region']!r} is no longer offered; run again.", "error")
            return None
        graph = r.params.get("graph") or {}
        px = r.params.get("pixel_size_um")
        key = r.params.get("cluster_key")
        labels = s.labels[0] if s.labels else None

        def work():
            g = region_graph(s.table, mask, graph, labels=labels, pixel_size_um=px)
            return engaged_pairs(s.table, key, ligand=ch["ligand"], receptor=ch["receptor"], sender=ch["sender"],
                                 receiver=ch["receiver"], graph=g, mask=mask)

        worker = create_worker(work, _connect={"errored": lambda e: _tell_error("engaged cell pairs", e)},
                               _start_thread=False)
        worker.returned.connect(lambda e, sid=self.sample_id: self._add_engaged_layer(sid, e))
        self.results.show_btn.setEnabled(False)
        worker.finished.connect(lambda: self.results.show_btn.setEnabled(True))
        self._engaged_worker = worker
        worker.start()
        return worker

    def _add_engaged_layer(self, sid: str, e) -> None:
        """The engaged pairs as a Vectors layer of arrows sender -> receiver (level-0 px, the sample's geometry)."""
        for lyr in list(self.viewer.layers):
            md = getattr(lyr, "metadata", None) or {}
            if md.get(META_SAMPLE) == sid and md.get(META_ROLE) == ROLE_ENGAGED:
                self.viewer.layers.remove(lyr)
        s = self.session.sample(sid)
        sm = e.summary
        self.results.engaged_info.setText(e.describe())
        if not len(e.table):
            notify(f"no engaged pairs: {e.describe()}")
            return
        scale, translate, units = self.session.geometry(sid)
        seg = e.segments_yx
        vec = np.stack([seg[:, 0], seg[:, 1] - seg[:, 0]], axis=1)
        # white: the sender and receiver cells keep their legend colours; an arrow in a type's colour
        # disappears over those cells (and over the CAR channel)
        color = "#ffffff"
        width_um = 1.5
        layer = self.viewer.add_vectors(
            vec, name=f"{s.name}: {sm['ligand']}→{sm['receptor']} ({sm['sender']}→{sm['receiver']})",
            edge_width=width_um / max(scale[0], 1e-9), edge_color=color, vector_style="arrow", length=1.0,
            scale=scale, translate=translate, units=units, opacity=0.9,
            metadata={META_SAMPLE: sid, META_ROLE: ROLE_ENGAGED, "engaged": {k: v for k, v in sm.items()
                                                                           if not isinstance(v, list)}})
        self.engaged_layer = layer

    # ------------------------------------------------------------------ stored results
    def _load_stored(self, select: str | None = None):
        s = self.sample
        self.stored = load_results(s.table) if s is not None and s.table is not None else {}
        self.stored_combo.blockSignals(True)
        self.stored_combo.clear()
        for k, r in self.stored.items():
            self.stored_combo.addItem(f"{STATISTICS.get(r.statistic, PUBLISHED.get(r.statistic, k))} · "
                                      f"{r.time[11:16]}", k)
        self.stored_combo.blockSignals(False)
        if select is not None and select in self.stored:
            self.stored_combo.setCurrentIndex(list(self.stored).index(select))
        self._on_stored()

    def _on_stored(self, *_):
        key = self.stored_combo.currentData()
        self.results.show_result(self.stored.get(key) if key else None)
