"""The Gating dock: composes the sections (:mod:`.views`) over one headless
:class:`~napari_carspatial.editing.gating.GatingSession` and keeps the slide preview in step.

Per-marker thresholds over a histogram, live preview on the slide (only while the dock is on
screen), ordered phenotype rules, export / import, and the same gating applied to another
sample. All state is the model's; the sections only mirror it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QVBoxLayout, QWidget

from ..._napari import PREVIEW_NAME, make_preview, notify, session_for
from ...analysis.gating import Gate, GatingScheme
from ...editing.gating import GatingSession
from ...model import SampleError
from .._common import BusyNotice, refill_sample_combo, theme_colors, vertical_scroll
from .views import DEBOUNCE_MS, GatesView, GateView, RulesView, ShareView

log = logging.getLogger(__name__)


class GatingWidget(QWidget):
    """Gate markers on a histogram with live preview, combine gates into phenotype rules.

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).

    Attributes
    ----------
    model
        The :class:`~napari_carspatial.editing.gating.GatingSession` being edited.
    gate_view, gates_view, rules_view, share_view
        The sections.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.model = GatingSession(reviewer=self.session.reviewer)
        self.preview_mask = None
        self._previews: dict[str, object] = {}
        self._syncing = 0
        self._last_result: dict | None = None

        self.sample_combo = QComboBox()
        self.sample_combo.setToolTip("Sample to gate (samples loaded in this viewer)")
        self.busy_notice = BusyNotice(self.session, lambda: self.sample_id, on_change=self._on_busy)
        self.gate_view = GateView(self, theme_colors(napari_viewer))
        self.gates_view = GatesView(self)
        self.rules_view = RulesView(self)
        self.share_view = ShareView(self)

        inner = QWidget()
        il = QVBoxLayout(inner)
        il.setContentsMargins(4, 4, 4, 4)
        top = QFormLayout()
        top.addRow("sample", self.sample_combo)
        il.addLayout(top)
        il.addWidget(self.busy_notice)
        for w in (self.gate_view, self.gates_view, self.rules_view, self.share_view):
            il.addWidget(w)
        il.addStretch(1)
        scroll = vertical_scroll(inner, frame=True)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(scroll, 1)
        outer.addWidget(self.rules_view.footer)   # "Apply rules" and its result: always visible
        inner.setMinimumWidth(360)                # narrower than the dock: nothing is cut off at the right
        self.setMinimumWidth(380)

        self._timer = QTimer(self)       # debounce of the slide preview
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_preview)

        self.model.on_change.append(self._on_model)
        self.sample_combo.currentIndexChanged.connect(self._on_sample_changed)
        self.gate_view.preview_check.toggled.connect(self._on_preview_toggled)
        self.gate_view.outline_check.toggled.connect(lambda _=None: self.update_preview())
        self.session.events.sample_added.connect(self.refresh_samples)
        self.session.events.sample_removed.connect(self.refresh_samples)
        self.session.events.table_changed.connect(self._on_table_changed)
        self.session.events.reviewer_changed.connect(lambda e: setattr(self.model, "reviewer", e.reviewer))
        self.refresh_samples()

    # ================================================================== plumbing
    @property
    def syncing(self) -> bool:
        """The model is being shown in the sections (their signals must not write it back)."""
        return self._syncing > 0

    @contextlib.contextmanager
    def sync(self):
        self._syncing += 1
        try:
            yield
        finally:
            self._syncing -= 1

    def error(self, message: str) -> None:
        notify(message, "error")

    @property
    def sample_id(self) -> str | None:
        sid = self.sample_combo.currentData()
        return sid if sid and self.session.sample(sid) is not None else None

    @property
    def sample(self):
        return self.session.sample(self.sample_id)

    # the model's state, for scripts and tests
    @property
    def gates(self) -> dict[str, Gate]:
        return self.model.gates

    @property
    def marker(self) -> str | None:
        return self.model.marker

    @property
    def threshold(self) -> float:
        return float(self.model.threshold)

    def scheme(self) -> GatingScheme:
        """Gates and rules as currently shown."""
        return self.model.scheme()

    def values(self, marker: str | None = None):
        return self.model.values(marker)

    # ================================================================== samples
    def refresh_samples(self, event=None):
        current = self.sample_combo.currentData()
        _, samples = refill_sample_combo(self.sample_combo, self.session, where=lambda s: s.table is not None,
                                         label=lambda s: f"{s.name}  ({s.n_cells:,} cells)")
        for sid in list(self._previews):
            if sid not in samples:
                self._previews.pop(sid)
        self.share_view.refresh_targets(self.session.samples(), self.sample_id)
        if self.sample_combo.currentData() != current or self.model.sample is not self.sample:
            self._on_sample_changed()

    def _on_sample_changed(self, *_):
        self.busy_notice.update_state()
        self.model.set_sample(self.sample)
        self.share_view.refresh_targets(self.session.samples(), self.sample_id)

    def _on_busy(self, busy: bool) -> None:
        for b in (self.rules_view.apply_button, self.share_view.apply_to_button):
            b.setEnabled(not busy)

    def _on_table_changed(self, event) -> None:
        """Values re-measured in place (segmentation commit) or a new table: drop the cached
        values, redraw from the new ones."""
        if event.sid == self.sample_id:
            self.model.invalidate(None if event.structure else event.columns)

    # ================================================================== model -> sections
    def _on_model(self, what: str) -> None:
        if what == "sample":
            self.gate_view.fill_markers()
            self.gates_view.refresh()
            self.rules_view.refresh()
            m = self.gate_view.marker_combo.currentText()
            if m in self.model.markers():
                self.model.set_marker(m)
            else:
                self._on_threshold()
        elif what == "marker":
            self.gate_view.show_marker()
            self._on_threshold()
        elif what in ("threshold", "values"):
            if what == "threshold":
                self.gate_view.show_settings()
            self._on_threshold()
        elif what == "gates":
            self.gates_view.refresh(select=self.model.marker)
        elif what == "rules":
            if not self.syncing:
                self.rules_view.refresh()
        elif what == "scheme":
            self.gates_view.refresh()
            self.rules_view.refresh()
            if self.model.marker in self.model.gates:
                self.gate_view.show_settings()
                self._on_threshold()

    def _on_threshold(self) -> None:
        self.preview_mask = self.model.positive()
        text = self.model.count_text()
        self.gate_view.count_label.setText(f"{self.model.threshold_text()}:  {text}" if text else "")
        self.gate_view.redraw()
        if self.preview_mask is not None and self.gate_view.preview_check.isChecked() and self.on_screen():
            self._timer.start()

    # ================================================================== actions (also for scripts)
    def set_marker(self, marker: str) -> None:
        """Choose the marker to gate (as a user picking it from the list)."""
        idx = self.gate_view.marker_combo.findText(marker)
        if idx < 0:
            raise KeyError(f"no marker {marker!r} in {self.sample.name if self.sample else 'the sample'}")
        self.model.set_marker(marker)

    def set_threshold(self, value: float) -> None:
        """Set the threshold in raw units (as typing it in the spin box)."""
        self.gate_view.threshold_spin.setValue(float(value))

    def suggest(self):
        """Set the threshold to the Otsu / GMM suggestion on the chosen scale."""
        method = self.gate_view.method_combo.currentText().lower()
        try:
            return self.model.suggest(method)
        except ValueError as err:
            self.error(f"Cannot suggest a threshold for {self.model.marker or 'the marker'}: {err}")
            return None

    def add_gate(self) -> Gate | None:
        """Keep the current threshold as the gate of the current marker."""
        try:
            return self.model.add_gate()
        except ValueError as err:
            self.error(str(err)[:1].upper() + str(err)[1:] + ".")
            return None

    def add_rule(self, name: str | None = None, conditions: str | None = None) -> int:
        """Append a rule row (name, conditions text); returns its row."""
        r = self.model.add_rule(name, conditions)
        self.rules_view.refresh(select=r)
        return r

    def _apply(self, sid: str) -> dict | None:
        sample = self.session.sample(sid)
        if sample is None or sample.table is None:
            self.error("That sample is no longer loaded.")
            return None
        if self.session.busy(sid):
            self.error(f"{sample.name} is busy ({self.session.busy(sid)}); apply the rules when it is done.")
            return None
        try:
            res = self.model.apply(sample)
        except (ValueError, KeyError) as err:
            msg = err.args[0] if err.args else str(err)
            spaced = [m for m in self.model.markers() if " " in m]
            if spaced and "followed by + or -" in msg:   # steinbock panels: "Cytokeratin 5", "Histone H3"
                msg += f'; quote a marker name with a space, e.g. \'"{spaced[0]}"+\''
            self.error(f"Gating {sample.name}: {msg}")
            return None
        # one wrapped line, not a line per phenotype: the footer below the scroll area stays short
        self.rules_view.result_label.setText(f"{sample.name} → obs['{res.key}']:  " + "  ·  ".join(res.lines()))
        self.session.table_changed(sid, columns=[res.key], reason="gating")
        self._show_result(sid, res.key, self.model.scheme().default)
        self._last_result = res.as_dict()
        notify(f"Gating applied to {sample.name}: " + ", ".join(f"{c} {k:,}" for c, k in res.counts.items()))
        return self._last_result

    def _show_result(self, sid: str, key: str, default: str):
        """Colour the cells by the new phenotypes (the called ones only: the default is hidden, so
        the stain shows through), and put the gate preview away (it reappears on the next change)."""
        prev = self._preview(sid)
        layer = prev.layer()
        if layer is not None:
            layer.visible = False
        if not hasattr(prev, "col"):   # no cell mask shown: nothing to colour
            return
        try:
            col = self.session.coloring(sid)
            col.color_by_category(key)
            if default in col.categories and len(col.categories) > 1:
                col.set_category_visible(default, False)
        except (KeyError, ValueError) as err:   # display only
            log.warning("could not colour cells by %s: %s", key, err)

    def apply_rules(self) -> dict | None:
        """Apply gates and rules to the current sample; returns counts per phenotype."""
        sid = self.sample_id
        if sid is None:
            self.error("Load a sample with a cell table first.")
            return None
        return self._apply(sid)

    def apply_to_sample(self, sid: str | None = None) -> dict | None:
        """Apply the same gates and rules to another loaded sample (default: the chosen target)."""
        sid = sid or self.share_view.target_combo.currentData()
        if not sid:
            self.error("Load another sample to apply the gating to.")
            return None
        return self._apply(sid)

    def export_gating(self, path: str | None = None) -> Path | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export gating", "gating.yaml", "Gating (*.yaml *.yml *.json)")
            if not path:
                return None
        try:
            return self.model.export(path)
        except (SampleError, ValueError, OSError) as err:
            self.error(f"Could not export the gating: {err}")
            return None

    def import_gating(self, path: str | None = None) -> GatingScheme | None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import gating", "", "Gating (*.yaml *.yml *.json)")
            if not path:
                return None
        try:
            scheme, missing = self.model.import_(path)
        except SampleError as err:
            self.error(str(err))
            return None
        if missing:
            self.error(f"{Path(path).name}: markers {', '.join(missing)} are not in {self.sample.name}; "
                       "those gates cannot be applied here.")
        return scheme

    # ================================================================== the slide preview
    def _preview(self, sid: str):
        p = self._previews.get(sid)
        if p is None:
            p = self._previews[sid] = make_preview(self.session, sid)
        return p

    def update_preview(self):
        """Show the positive cells of the current threshold on the slide (runs debounced)."""
        self._timer.stop()
        sid = self.sample_id
        if sid is None or self.preview_mask is None or not self.gate_view.preview_check.isChecked():
            return None
        if not self.on_screen():   # e.g. the Gating tab was hidden before the debounce fired
            return None
        try:
            return self._preview(sid).show(self.preview_mask, outline=self.gate_view.outline_check.isChecked())
        except (KeyError, ValueError) as err:   # show it, keep the widget alive
            log.exception("preview failed")
            self.error(f"Could not show the preview: {type(err).__name__}: {err}")
            return None

    def preview_layer(self):
        sid = self.sample_id
        return None if sid is None else self._preview(sid).layer()

    def on_screen(self) -> bool:
        """Shown to the user: visible and not behind another tab of a tabbed dock.

        Qt reports widgets in background tabs of tabified docks as visible; their visible region
        is empty.
        """
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def showEvent(self, event):  # noqa: N802 - Qt API
        """The preview is on the slide only while the gating panel is on screen."""
        super().showEvent(event)
        self._watch_dock()
        if self.gate_view.preview_check.isChecked():
            self._timer.start()

    def hideEvent(self, event):  # noqa: N802 - Qt API
        super().hideEvent(event)
        self._hide_previews()

    def _watch_dock(self):
        from qtpy.QtWidgets import QDockWidget

        if getattr(self, "_dock_watched", False):
            return
        parent = self.parent()
        while parent is not None and not isinstance(parent, QDockWidget):
            parent = parent.parent()
        if parent is not None:   # tab switches in a tabbed dock area
            parent.visibilityChanged.connect(self._on_dock_visibility)
            self._dock_watched = True

    def _on_dock_visibility(self, visible: bool):
        if visible and self.gate_view.preview_check.isChecked():
            self._timer.start()
        elif not visible:
            self._hide_previews()

    def _hide_previews(self):
        self._timer.stop()
        for sid in list(self._previews):
            try:
                self._previews[sid].clear()
            except (KeyError, ValueError, RuntimeError, AttributeError):   # layer, sample or Qt view already gone
                log.debug("could not clear preview", exc_info=True)

    def _on_preview_toggled(self, on: bool):
        if on:
            self.update_preview()
        else:
            self._timer.stop()
            sid = self.sample_id
            if sid is not None:
                self._preview(sid).clear()


__all__ = ["PREVIEW_NAME", "GatingWidget"]
