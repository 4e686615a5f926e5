"""The "Channels" dock: a searchable marker list for 40+ channel panels.

Show/hide, colour and contrast per channel, auto-contrast of the visible channels, and named
marker panels saved for reuse across samples.
"""

from __future__ import annotations

import logging

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .._napari import (
    META_CHANNEL,
    ROLE_IMAGE,
    apply_marker_panel,
    contrast_limits,
    notify,
    role_of,
    sample_id_of,
    session_for,
)
from ..model.channels import ALL_COLORMAPS
from ..model.marker_panels import MarkerPanel, load_panels, save_panel
from ._common import one_notification_at_a_time, refill_sample_combo

log = logging.getLogger(__name__)

#: colormaps offered per channel: only ones that map 0 to black (the channel policy's), so additive
#: blending never whitens the canvas (napari's inverted "I ..." maps would)
COLORMAPS = list(ALL_COLORMAPS)


def _swatch(layer, size: int = 12):
    """A square of the channel's full-intensity colour (what its brightest pixels look like)."""
    from qtpy.QtGui import QColor, QIcon, QPixmap

    r, g, b = (int(round(255 * float(v))) for v in layer.colormap.map([1.0])[0][:3])
    pm = QPixmap(size, size)
    pm.fill(QColor(r, g, b))
    return QIcon(pm)


class ChannelsWidget(QWidget):
    """Channel list of one sample: visibility, colour, contrast, panels."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        one_notification_at_a_time()
        self._updating = False

        self.sample_combo = QComboBox()
        self.search = QLineEdit()
        self.search.setPlaceholderText("search markers…")
        self.search.setClearButtonEnabled(True)
        self.list = QListWidget()
        # no alternating row colours: napari's stylesheet sets the text colour but not Qt's
        # AlternateBase, so every other row was white text on white (issue 14)
        self.list.setAlternatingRowColors(False)
        self.list.setUniformItemSizes(True)
        # channels of the sample without a layer (yet): hidden channels are added after the first
        # frame, so the list's last row says what is still missing instead of the list looking
        # complete (a row, not a label under the list: the list keeps its height)
        self.pending_item: QListWidgetItem | None = None

        self.cmap = QComboBox()
        self.cmap.addItems(COLORMAPS)
        from superqt import QLabeledDoubleRangeSlider

        self.range = QLabeledDoubleRangeSlider(Qt.Horizontal)
        self.range.setDecimals(2)
        self.auto_button = QPushButton("Auto-contrast visible")
        self.all_on = QPushButton("Show all")
        self.all_off = QPushButton("Hide all")

        self.panel_combo = QComboBox()
        self.apply_panel = QPushButton("Apply panel")
        self.save_panel_button = QPushButton("Save visible as panel…")
        self.message = QLabel("")
        self.message.setWordWrap(True)

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Sample"))
        row.addWidget(self.sample_combo, 1)
        lay.addLayout(row)
        lay.addWidget(self.search)
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.addWidget(self.all_on)
        row.addWidget(self.all_off)
        row.addWidget(self.auto_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Colour"))
        row.addWidget(self.cmap, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Contrast"))
        row.addWidget(self.range, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Panel"))
        row.addWidget(self.panel_combo, 1)
        row.addWidget(self.apply_panel)
        lay.addLayout(row)
        lay.addWidget(self.save_panel_button)
        lay.addWidget(self.message)

        self._range_timer = QTimer(self)
        self._range_timer.setSingleShot(True)
        self._range_timer.setInterval(60)
        self._range_timer.timeout.connect(self._apply_range)

        self.search.textChanged.connect(self._filter)
        self.list.itemChanged.connect(self._item_toggled)
        self.list.currentItemChanged.connect(self._current_changed)
        self.cmap.currentTextChanged.connect(self._cmap_changed)
        self.range.valueChanged.connect(lambda *_: self._range_timer.start())
        self.auto_button.clicked.connect(self.auto_contrast_visible)
        self.all_on.clicked.connect(lambda: self._set_all(True))
        self.all_off.clicked.connect(lambda: self._set_all(False))
        self.apply_panel.clicked.connect(lambda: self.apply_named_panel(self.panel_combo.currentText()))
        self.save_panel_button.clicked.connect(self._save_panel_dialog)
        self.sample_combo.currentIndexChanged.connect(self._fill)
        self.viewer.layers.events.inserted.connect(self._refresh_samples)
        self.viewer.layers.events.removed.connect(self._refresh_samples)
        self._reload_panels()
        self._refresh_samples()

    # ------------------------------------------------------------------ plumbing
    def _refresh_samples(self, event=None):
        with_images = {sample_id_of(lyr) for lyr in self.viewer.layers if role_of(lyr) == ROLE_IMAGE}
        refill_sample_combo(self.sample_combo, self.session,
                            where=lambda s: self.session.sid_of(s) in with_images)
        self._fill()

    def image_layers(self) -> list:
        sid = self.sample_combo.currentData()
        return self.session.layers_of(sid, ROLE_IMAGE) if sid else []

    def _layer(self, name: str):
        for lyr in self.image_layers():
            if lyr.metadata.get(META_CHANNEL) == name:
                return lyr
        return None

    def _fill(self, *_):
        self._updating = True
        self.list.clear()
        for lyr in self.image_layers():
            name = lyr.metadata.get(META_CHANNEL, lyr.name)
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if lyr.visible else Qt.Unchecked)
            item.setToolTip(f"{name}: colour {lyr.colormap.name}")
            item.setIcon(_swatch(lyr))
            self.list.addItem(item)
            lyr.events.visible.connect(self._sync_from_layers)
            lyr.events.colormap.connect(self._sync_from_layers)
        self._updating = False
        self._show_pending()
        self._filter(self.search.text())
        if self.list.count():
            self.list.setCurrentRow(0)
        self._rank_panels()

    def missing_channels(self) -> list[str]:
        """Channels of the current sample that have no layer (yet): still being added, or closed."""
        sid = self.sample_combo.currentData()
        sample = self.session.sample(sid) if sid else None
        if sample is None:
            return []
        shown = {lyr.metadata.get(META_CHANNEL) for lyr in self.image_layers()}
        return [str(c) for c in (sample.channel_names or []) if str(c) not in shown]

    def _show_pending(self) -> None:
        """The last row names the channels without a layer (none: no such row)."""
        self.pending_item = None
        missing = self.missing_channels()
        if not missing:
            return
        names = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        item = QListWidgetItem(f"+ {len(missing)} more not open yet: {names}")
        item.setFlags(Qt.NoItemFlags)          # not a channel: no check box, not selectable
        item.setToolTip("Channels of this sample without a layer yet: hidden channels are added "
                        "after the first frame (or the layer was closed)")
        self.list.addItem(item)
        self.pending_item = item

    def _sync_from_layers(self, event=None):
        if self._updating:
            return
        self._updating = True
        for i in range(self.list.count()):
            item = self.list.item(i)
            lyr = self._layer(item.text())
            if lyr is not None:
                item.setCheckState(Qt.Checked if lyr.visible else Qt.Unchecked)
                item.setIcon(_swatch(lyr))
                item.setToolTip(f"{item.text()}: colour {lyr.colormap.name}")
        self._updating = False

    def _filter(self, text: str):
        text = text.strip().lower()
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setHidden(bool(text) and text not in item.text().lower())

    def _item_toggled(self, item):
        if self._updating:
            return
        lyr = self._layer(item.text())
        if lyr is not None:
            lyr.visible = item.checkState() == Qt.Checked

    def _current_changed(self, item, _prev=None):
        lyr = self._layer(item.text()) if item else None
        if lyr is None:
            return
        self._updating = True
        self.cmap.blockSignals(True)
        name = lyr.colormap.name
        if self.cmap.findText(name) < 0:
            self.cmap.addItem(name)
        self.cmap.setCurrentText(name)
        self.cmap.blockSignals(False)
        lo, hi = lyr.contrast_limits_range
        self.range.blockSignals(True)
        self.range.setRange(float(lo), float(hi))
        self.range.setValue(tuple(float(v) for v in lyr.contrast_limits))
        self.range.blockSignals(False)
        self._updating = False

    def _cmap_changed(self, name: str):
        item = self.list.currentItem()
        lyr = self._layer(item.text()) if item else None
        if lyr is not None and not self._updating:
            lyr.colormap = name

    def _apply_range(self):
        item = self.list.currentItem()
        lyr = self._layer(item.text()) if item else None
        if lyr is not None and not self._updating:
            lo, hi = self.range.value()
            if hi > lo:
                lyr.contrast_limits = (lo, hi)

    def _set_all(self, visible: bool):
        for i in range(self.list.count()):
            item = self.list.item(i)
            if not item.isHidden():  # respects the search filter
                lyr = self._layer(item.text())
                if lyr is not None:
                    lyr.visible = visible

    # ------------------------------------------------------------------ actions
    def auto_contrast_visible(self) -> dict[str, tuple[float, float]]:
        """Percentile contrast (from the smallest pyramid level) for every visible channel."""
        sid = self.sample_combo.currentData()
        sample = self.session.sample(sid)
        if sample is None:
            return {}
        smallest = min(sample.image, key=lambda a: a.shape[-1] * a.shape[-2])
        vis = [lyr for lyr in self.image_layers() if lyr.visible]
        idx = [sample.channel_index(lyr.metadata[META_CHANNEL]) for lyr in vis]
        if not idx:
            return {}
        lims = contrast_limits(smallest[idx])
        out = {}
        for lyr, lim in zip(vis, lims, strict=False):
            lo, hi = lyr.contrast_limits_range
            lyr.contrast_limits_range = (min(lo, lim[0]), max(hi, lim[1]))
            lyr.contrast_limits = lim
            out[lyr.metadata[META_CHANNEL]] = lim
        self._current_changed(self.list.currentItem())
        self.message.setText(f"Auto-contrast applied to {len(out)} visible channel(s).")
        return out

    def _reload_panels(self):
        try:
            self.panels = load_panels()
        except Exception as err:  # noqa: BLE001 - a broken file must not break the widget
            notify(str(err), "warning")
            from ..model.marker_panels import BUILTIN_PANELS

            self.panels = {k: MarkerPanel(k, v) for k, v in BUILTIN_PANELS.items()}
        current = self.panel_combo.currentText()
        self.panel_combo.clear()
        self.panel_combo.addItems(list(self.panels))
        if current in self.panels:
            self.panel_combo.setCurrentText(current)
        self._rank_panels()

    def _rank_panels(self) -> None:
        """Panels with none of this sample's markers are greyed out (a pancreas IMC panel has no
        CAR); when the chosen one is such a panel, the panel covering the most markers is chosen."""
        if not hasattr(self, "panels"):
            return
        have = {str(lyr.metadata.get(META_CHANNEL, lyr.name)).lower() for lyr in self.image_layers()}
        model = self.panel_combo.model()
        best, best_n = None, 0
        for i in range(self.panel_combo.count()):
            name = self.panel_combo.itemText(i)
            panel = self.panels.get(name)
            markers = panel.markers if panel is not None else []
            n = sum(m.lower() in have for m in markers)
            item = model.item(i) if hasattr(model, "item") else None
            if item is not None:
                item.setEnabled(n > 0 or not have)
            self.panel_combo.setItemData(i, f"{n} of {len(markers)} markers in this sample", Qt.ToolTipRole)
            if n > best_n:
                best, best_n = name, n
        cur = self.panels.get(self.panel_combo.currentText())
        cur_n = sum(m.lower() in have for m in cur.markers) if cur is not None else 0
        if have and cur_n == 0 and best is not None:
            self.panel_combo.setCurrentText(best)
        none = bool(have) and best is None
        self.apply_panel.setEnabled(not none)
        self.apply_panel.setToolTip("None of the saved panels' markers are in this sample: show the channels you "
                                    "want and save them as a panel." if none else "Show exactly this panel's markers")

    def apply_named_panel(self, name: str) -> list[str]:
        """Show exactly the panel's markers, in distinct colours (the saved ones first); returns
        the panel markers this sample lacks (headless: :func:`napari_carspatial._napari.apply_marker_panel`)."""
        panel = self.panels.get(name)
        sid = self.sample_combo.currentData()
        if panel is None or sid is None or not self.image_layers():
            return []
        self._updating = True
        try:
            found, missing = apply_marker_panel(self.session, sid, panel.markers, panel.colors)
        finally:
            self._updating = False
        msg = f"Panel '{name}': showing {', '.join(found) or 'no marker'}."
        if missing:
            msg += f" Not in this sample: {', '.join(missing)}."
        self.message.setText(msg)
        self._sync_from_layers()
        self._current_changed(self.list.currentItem())
        return missing

    def save_visible_as_panel(self, name: str) -> MarkerPanel:
        vis = [lyr for lyr in self.image_layers() if lyr.visible]
        panel = MarkerPanel(name, [lyr.metadata.get(META_CHANNEL, lyr.name) for lyr in vis],
                            {lyr.metadata.get(META_CHANNEL, lyr.name): lyr.colormap.name for lyr in vis})
        path = save_panel(panel)
        self._reload_panels()
        self.panel_combo.setCurrentText(name)
        self.message.setText(f"Saved panel '{name}' ({len(panel.markers)} markers) to {path}.")
        return panel

    def _save_panel_dialog(self):
        name, ok = QInputDialog.getText(self, "Save marker panel", "Panel name:")
        if ok and name.strip():
            self.save_visible_as_panel(name.strip())
