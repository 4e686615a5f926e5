"""The Legend's workflow switch: which docks sit below the class list (Review, Curate, Segment,
Analyse, Cohort; see :mod:`napari_carspatial.widgets.workflows`)."""

from __future__ import annotations

import logging

from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QWidget

from .. import workflows

log = logging.getLogger(__name__)


class WorkflowBar(QWidget):
    """A combo of the workflows and a "napari layers" box (napari's own layer panels)."""

    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.combo = QComboBox()
        self.combo.addItem("choose…", None)
        for name, docks in workflows.WORKFLOWS.items():
            self.combo.addItem(name, name)
            self.combo.setItemData(self.combo.count() - 1, "docks: " + ", ".join(docks), 3)   # tooltip role
        self.combo.setToolTip("Show the docks of one workflow below the class list (the others are hidden, "
                              "not closed)")
        self.layers_box = QCheckBox("napari layers")
        self.layers_box.setToolTip("Show napari's own layer list and layer controls on the left")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("workflow"))
        lay.addWidget(self.combo, 1)
        lay.addWidget(self.layers_box)
        self.combo.currentIndexChanged.connect(self._on_combo)
        self.layers_box.toggled.connect(self._on_layers)

    def sync(self) -> None:
        """Show the workflow applied to the viewer (by this bar, the CLI or a script)."""
        name = workflows.current_workflow(self.dock.viewer)
        idx = self.combo.findData(name) if name else 0
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(max(idx, 0))
        self.combo.blockSignals(False)

    def set_workflow(self, name: str) -> None:
        """Apply workflow ``name`` (what picking it in the combo does)."""
        workflows.apply_workflow(self.dock.viewer, name, napari_layers=self.layers_box.isChecked())
        self.sync()

    def _on_combo(self, _index: int) -> None:
        name = self.combo.currentData()
        if name:
            self.set_workflow(name)

    def _on_layers(self, on: bool) -> None:
        workflows.show_napari_layers(self.dock.viewer, on)
