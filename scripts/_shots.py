"""Scaffolding shared by the screenshot scripts in ``scripts/`` (run under xvfb-run, 1600 x 1000).

The scripts import it as ``from _shots import ...``: Python puts a script's own folder first on
``sys.path``. Nothing here is part of the package.
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the real datasets (``/work/shared/data/real``, seen from the project root as ../shared/data/real)
REAL = ROOT.parent / "shared" / "data" / "real"
SIZE = (1600, 1000)


def pump(seconds: float = 0.6, *, step: float = 0.03) -> None:
    """Process Qt events for ``seconds`` (layers drawn, workers' results delivered)."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(step)


def new_viewer(title: str = "napari", **kwargs):
    """A napari viewer whose window is 1600 x 1000."""
    import napari

    viewer = napari.Viewer(title=title, **kwargs)
    viewer.window.resize(*SIZE)
    return viewer


def _dock_class(name: str):
    if name == "project":
        from napari_carspatial.widgets.project import ProjectWidget as W
    elif name == "curation":
        from napari_carspatial.widgets.curation import CurationWidget as W
    elif name == "legend":
        from napari_carspatial.widgets.legend import LegendWidget as W
    elif name == "samples":
        from napari_carspatial.widgets.sample_widget import SampleWidget as W
    elif name == "channels":
        from napari_carspatial.widgets.channels import ChannelsWidget as W
    elif name == "inspector":
        from napari_carspatial.widgets.inspector import InspectorWidget as W
    else:
        raise ValueError(f"no dock named {name!r}")
    return W


def add_docks(viewer, *names: str, area: str = "right", tabify: bool = False) -> dict:
    """Our docks by short name (``project``, ``curation``, ``legend``, ``samples``, ``channels``,
    ``inspector``), added in this order; ``{name: widget}``."""
    docks = {}
    for i, name in enumerate(names):
        docks[name] = _dock_class(name)(viewer)
        viewer.window.add_dock_widget(docks[name], name=name.capitalize(), area=area,
                                      tabify=tabify and i > 0)
    return docks


def only_channels(viewer, keep) -> None:
    """Show only the image channels named in ``keep`` (the others hidden)."""
    for lyr in viewer.layers:
        md = getattr(lyr, "metadata", {}) or {}
        if md.get("carspatial_role") == "image":
            lyr.visible = md.get("carspatial_channel") in keep


def show_in_legend(legend, sid) -> None:
    """Point the Legend dock at sample ``sid``."""
    idx = legend.sample_box.findData(sid)
    if idx >= 0:
        legend.sample_box.setCurrentIndex(idx)


def shoot(viewer, path, *, settle: float = 0.0) -> Path:
    """The whole window (docks included) to ``path`` after ``settle`` seconds of events."""
    if settle:
        pump(settle)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    return Path(path)


def review_command_line(default_work: str, *, only: str | None = None):
    """``OUT [--work DIR] [--only A,B]`` of the review scripts: ``(out, work, args)``; ``OUT`` is
    made and the plugin's caches go to ``work / "cache"``."""
    import argparse
    import os

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--work", default=default_work)
    if only is not None:
        p.add_argument("--only", default=only)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    os.environ.setdefault("CARSPATIAL_CACHE_DIR", str(work / "cache"))
    return out, work, a


#: the review scripts' readers (alice, bob) and adjudicator (carol)
REVIEWERS = [("alice", "Dr A. Example"), ("bob", "Dr B. Sample"), ("carol", "Dr C. Adjudicator")]


def new_project(work: Path, manifest, *, due: str = "2026-12-20"):
    """A blinded review project ``work / "review"`` of ``manifest`` with :data:`REVIEWERS`."""
    from napari_carspatial.review import init_project

    return init_project(work / "review", manifest, reviewers=REVIEWERS, due=due)


def open_in_project(proj, reviewer: str, sample: str, *docks: str):
    """A 1600 x 1000 viewer with the Project dock and ``docks``, ``reviewer`` signed in and the
    read of ``sample`` open: ``(viewer, {name: dock}, label)``."""
    viewer = new_viewer()
    d = add_docks(viewer, "project", *docks)
    dock = d["project"]
    dock.open_project(proj.folder)
    dock.set_reviewer(reviewer)
    label = proj.label(sample)
    dock.open_label(label, in_worker=False)
    return viewer, d, label
