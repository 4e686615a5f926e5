"""Docks by workflow: Review, Curate, Segment, Analyse, Cohort.

QuPath keeps its class list visible whatever the reviewer does; napari's default puts every dock
in one tabbed panel, so the class counts disappear while gating, curating or editing, and the
canvas gets ~620 of 1600 px. Here:

* the **Legend** (class list with counts, and the workflow switch) stays at the top of the right
  column in every workflow;
* below it, the docks of one workflow (:data:`WORKFLOWS`) are tabs; the other workflows' docks
  are hidden, not closed (their state stays);
* napari's own layer list and layer controls are hidden in these workflows (the Channels dock
  lists the markers; napari's Window menu, or the "napari layers" box, shows them again); in
  Segment the layer controls (brush size, label) are a tab beside the Segmentation dock;
* the right column is as narrow as its docks allow (at most :data:`MAX_COLUMN_FRACTION` of the
  window), so the canvas keeps at least 60 % of a 1600 x 1000 window in every workflow.

Docks are made through napari's plugin API (``viewer.window.add_plugin_dock_widget``) by their
manifest names, so this module imports no dock (the docks stay independent). Layout is Qt's own
``QMainWindow`` API on the window that holds the docks. Headless there is nothing to lay out;
:data:`WORKFLOWS` is the plain description.
"""

from __future__ import annotations

import logging

from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow

log = logging.getLogger(__name__)

PLUGIN = "napari-carspatial"
#: the class list: always visible, above the working docks
CLASS_LIST = "Legend"
#: docks of each workflow (manifest display names), the first one in front
WORKFLOWS: dict[str, tuple[str, ...]] = {
    "Review": ("Channels", "Cell inspector", "Measurements", "Samples"),
    "Curate": ("Curation", "Cell inspector", "Measurements"),
    "Segment": ("Segmentation", "Cell inspector"),
    "Analyse": ("Analysis", "Gating", "Measurements"),
    "Cohort": ("Cohort", "Samples"),
}
#: every dock the workflows manage
ALL_DOCKS = tuple(dict.fromkeys([CLASS_LIST, *(d for ds in WORKFLOWS.values() for d in ds)]))
#: napari's own docks (Qt object names of napari's layer panels)
NAPARI_LAYER_LIST, NAPARI_LAYER_CONTROLS = "layer list", "layer controls"
#: the right column never takes more than this fraction of the window width
MAX_COLUMN_FRACTION = 0.38
#: ... nor less than this many pixels
MIN_COLUMN_PX = 360
#: share of the column height for the class list
CLASS_LIST_FRACTION = 0.36

#: Qt property of the main window holding the current workflow's name
_PROPERTY = "carspatial_workflow"
#: Qt properties: the size a workflow forced on the window (its docks' minimum) and the size before
_FORCED, _WANTED = "carspatial_forced_size", "carspatial_wanted_size"


def _full_name(name: str) -> str:
    return f"{name} ({PLUGIN})"


def find_widget(viewer, name: str):
    """Our widget ``name`` (the dock's content, e.g. the ``LegendWidget``), or None when not open."""
    docks = viewer.window.dock_widgets
    for key in (name, _full_name(name)):
        if key in docks:
            return docks[key]
    return None


def find_dock(viewer, name: str) -> QDockWidget | None:
    """The dock (napari's ``QDockWidget`` wrapper) of our widget ``name``, or None when not open."""
    docks = viewer.window.dock_widgets
    for key in (name, _full_name(name)):
        if key in docks:
            inner = docks[key]
            inner = getattr(inner, "native", inner)
            return inner.parentWidget() if hasattr(inner, "parentWidget") else inner.parent()
    return None


def ensure_dock(viewer, name: str) -> QDockWidget | None:
    """The dock of widget ``name``, made through napari's plugin API when it is not open yet."""
    dw = find_dock(viewer, name)
    if dw is not None:
        return dw
    try:
        dw, _widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    except (KeyError, ValueError, LookupError) as err:   # a dock this installation does not have
        log.warning("no %s dock: %s", name, err)
        return None
    return dw


def main_window(dock: QDockWidget) -> QMainWindow | None:
    """The ``QMainWindow`` that holds ``dock``."""
    w = dock.parentWidget()
    while w is not None and not isinstance(w, QMainWindow):
        w = w.parentWidget()
    return w


def napari_panels(mw: QMainWindow) -> dict[str, QDockWidget]:
    """napari's layer list and layer controls docks of ``mw`` (by their Qt object names)."""
    return {d.objectName(): d for d in mw.findChildren(QDockWidget)
            if d.objectName() in (NAPARI_LAYER_LIST, NAPARI_LAYER_CONTROLS)}


def current_workflow(viewer) -> str | None:
    """The workflow last applied to ``viewer`` (None before the first)."""
    legend = find_dock(viewer, CLASS_LIST)
    mw = main_window(legend) if legend is not None else None
    if mw is None:
        return None
    value = mw.property(_PROPERTY)
    return str(value) if value else None


def show_napari_layers(viewer, visible: bool = True) -> None:
    """Show (on the left, as napari has them) or hide napari's layer list and layer controls."""
    legend = find_dock(viewer, CLASS_LIST)
    mw = main_window(legend) if legend is not None else None
    if mw is None:
        return
    panels = napari_panels(mw)
    for key in (NAPARI_LAYER_CONTROLS, NAPARI_LAYER_LIST):
        d = panels.get(key)
        if d is None:
            continue
        if visible:
            if mw.dockWidgetArea(d) != Qt.LeftDockWidgetArea:
                mw.addDockWidget(Qt.LeftDockWidgetArea, d)
            d.show()
        else:
            d.hide()


def apply_workflow(viewer, name: str, *, napari_layers: bool = False) -> dict[str, QDockWidget]:
    """Show the docks of workflow ``name`` below the class list; hide the other workflows' docks.

    Parameters
    ----------
    viewer
        The napari viewer (or a dock's public proxy of it).
    name
        One of :data:`WORKFLOWS`.
    napari_layers
        Also show napari's layer list and layer controls on the left (default: hidden; in Segment
        the layer controls are a tab beside the Segmentation dock).

    Returns
    -------
    dict
        Dock name -> dock of the class list and the workflow's docks.
    """
    if name not in WORKFLOWS:
        raise KeyError(f"no workflow {name!r} (one of {', '.join(WORKFLOWS)})")
    legend = ensure_dock(viewer, CLASS_LIST)
    if legend is None:
        raise RuntimeError("the Legend dock could not be made")
    mw = main_window(legend)
    wanted = {n: d for n in WORKFLOWS[name] if (d := ensure_dock(viewer, n)) is not None}
    keep = {id(legend), *(id(d) for d in wanted.values())}
    for other in ALL_DOCKS:
        d = find_dock(viewer, other)
        if d is not None and id(d) not in keep:
            d.hide()
    if mw is None:   # not docked in a main window (should not happen in napari)
        return {CLASS_LIST: legend, **wanted}
    size = mw.size() if mw.isVisible() else None   # re-docking grows the window to the docks' size hints
    forced, wanted_before = mw.property(_FORCED), mw.property(_WANTED)
    if size is not None and forced is not None and wanted_before is not None and size == forced:
        size = wanted_before   # the last workflow needed a taller window: this one gets the user's size back
    mw.setProperty(_FORCED, None)
    if legend.isFloating():
        legend.setFloating(False)
    if mw.dockWidgetArea(legend) != Qt.RightDockWidgetArea or mw.tabifiedDockWidgets(legend):
        mw.addDockWidget(Qt.RightDockWidgetArea, legend)
    legend.show()
    docks = list(wanted.values())
    if docks:
        first = docks[0]
        if first.isFloating():
            first.setFloating(False)
        mw.splitDockWidget(legend, first, Qt.Vertical)
        for d in docks[1:]:
            if d.isFloating():
                d.setFloating(False)
            if d not in mw.tabifiedDockWidgets(first):   # re-tabifying grows the window (Qt)
                mw.tabifyDockWidget(first, d)
        for d in docks:
            d.show()
    panels = napari_panels(mw)
    controls = panels.get(NAPARI_LAYER_CONTROLS)
    if napari_layers:
        show_napari_layers(viewer, True)
    else:
        for d in panels.values():
            d.hide()
        if name == "Segment" and controls is not None and docks:
            mw.tabifyDockWidget(docks[0], controls)
            controls.show()
    if docks:
        docks[0].raise_()
    if size is not None:   # a workflow switch never changes the window's size (Qt grows it to the docks)
        _keep_size(mw, size, name)
        now = mw.size()   # Qt may not have applied it yet; a resize by someone else since wins
        QTimer.singleShot(0, lambda: _keep_size(mw, size, name, only_if=now))
    mw.setProperty(_PROPERTY, name)
    bar = getattr(find_widget(viewer, CLASS_LIST), "workflow", None)
    if bar is not None:
        bar.sync()
    _size_column(mw, legend, docks)
    # the window may get its final size later (shown, maximised, resized by the user): Qt then
    # shares the new height among the docks in proportion, which gave the Legend ~100 px of empty
    # rows and took them from the working dock; size the column again after each window resize
    _ColumnSizer.on(mw).follow(legend, docks)
    QTimer.singleShot(0, lambda: _size_column(mw, legend, docks))
    return {CLASS_LIST: legend, **wanted}


class _ColumnSizer(QObject):
    """Sizes the right column again (:func:`_size_column`) after the main window is resized."""

    def __init__(self, mw: QMainWindow):
        super().__init__(mw)
        self.mw = mw
        self.legend, self.docks = None, []
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._apply)
        mw.installEventFilter(self)

    @classmethod
    def on(cls, mw: QMainWindow) -> _ColumnSizer:
        have = mw.findChild(cls, "carspatial_column_sizer")
        if have is None:
            have = cls(mw)
            have.setObjectName("carspatial_column_sizer")
        return have

    def follow(self, legend: QDockWidget, docks: list) -> None:
        self.legend, self.docks = legend, list(docks)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if obj is self.mw and event.type() == QEvent.Resize and self.legend is not None:
            self.timer.start()
        return False

    def _apply(self) -> None:
        if self.legend is not None:
            _size_column(self.mw, self.legend, self.docks)


def _keep_size(mw: QMainWindow, size, name: str, only_if=None) -> None:
    try:
        if mw.size() == size or (only_if is not None and mw.size() != only_if):
            return
        want = size.expandedTo(mw.minimumSizeHint())
        if want.height() > size.height():
            log.info("workflow %s: its docks need %d px of height, the window has %d",
                     name, want.height(), size.height())
            mw.setProperty(_FORCED, want)
            mw.setProperty(_WANTED, size)
        mw.resize(want)
    except RuntimeError:   # the window is closing
        log.debug("workflow size kept: window gone", exc_info=True)


def column_width(window_width: int, docks) -> int:
    """Width of the right column: what its docks need, within [MIN_COLUMN_PX, MAX_COLUMN_FRACTION]."""
    need = max([MIN_COLUMN_PX, *(d.minimumSizeHint().width() for d in docks),
                *(d.minimumWidth() for d in docks)])
    return int(min(need, MAX_COLUMN_FRACTION * window_width))


def _size_column(mw: QMainWindow, legend: QDockWidget, docks: list) -> None:
    try:
        width = column_width(mw.width(), [legend, *docks])
        mw.resizeDocks([legend], [width], Qt.Horizontal)
        if docks:
            h = max(mw.height() - 80, 400)
            inner = legend.widget()
            want = getattr(inner, "preferred_height", None)
            frame = legend.height() - inner.height() if legend.isVisible() and inner.height() > 0 else 30
            top = int(want()) + frame if callable(want) else int(CLASS_LIST_FRACTION * h)
            top = max(int(0.25 * h), min(top, int(0.55 * h)))
            mw.resizeDocks([legend, docks[0]], [top, h - top], Qt.Vertical)
    except RuntimeError:   # the window is closing
        log.debug("workflow layout skipped: window gone", exc_info=True)
