"""Screenshots of the first view of each real dataset through File > Open, with none of our docks.

Run under a virtual display (napari's canvas needs one):

    QT_API=pyqt6 NAPARI_ASYNC=0 PYTHONPATH=src xvfb-run -a -s "-screen 0 1600x1200x24" \\
        python scripts/screenshots_file_open.py docs/images [--docks]

Each dataset is opened in a fresh 1600 x 1000 viewer with ``viewer.open(path,
plugin="napari-carspatial")`` (what File > Open and drag-and-drop do). No session exists (none of
our docks is open), so this is what a user sees before opening any plugin dock. ``--docks`` adds
the Samples and Legend docks first (a session exists: scale bar, measuring in a worker).
Writes ``fileopen_<dataset>[_docks].png`` and prints the time until the layers are in and the
first frame is drawn. ``--measure`` instead opens a copy of the steinbock folder without its
tables with the Samples dock shown, and writes ``measure_cells_running.png`` (layers in, the
cells being measured) and ``measure_cells_done.png``. ``--mask`` opens cytomapper's image + mask
in the Samples dock (``fileopen_cytomapper_mask.png``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from _shots import REAL, add_docks, new_viewer, pump, shoot

DATASETS = {
    "cytomapper": REAL / "cytomapper_pancreas_imc" / "images" / "E34_imc.tiff",
    "steinbock": REAL / "steinbock_imc_testdata",
    "mcd": REAL / "imc_raw_mcd" / "20210305_NE_mockData2" / "20210305_NE_mockData2.mcd",
    "xenium": REAL / "xenium_crop",
}


def _samples_and_legend():
    """A viewer with the Legend and Samples docks (tabbed); ``(viewer, samples dock)``."""
    viewer = new_viewer(show=True)
    dock = add_docks(viewer, "legend", "samples", tabify=True)["samples"]
    pump(0.3)
    return viewer, dock


def main(outdir: str, docks: bool = False, only: list[str] | None = None) -> int:
    from qtpy.QtWidgets import QApplication

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for key, path in DATASETS.items():
        if only and key not in only:
            continue
        viewer = new_viewer(show=True)
        app = QApplication.instance()
        if docks:
            add_docks(viewer, "samples", "legend", tabify=True)
        pump(0.3)
        t = time.perf_counter()
        viewer.open(str(path), plugin="napari-carspatial")
        app.processEvents()
        viewer.window._qt_viewer.canvas.native.repaint()
        app.processEvents()
        dt = time.perf_counter() - t
        suffix = "_docks" if docks else ""
        shot = shoot(viewer, out / f"fileopen_{key}{suffix}.png", settle=1.0)
        labels = [ly for ly in viewer.layers if ly.__class__.__name__ == "Labels"]
        sys.stdout.write(f"{key}: {dt:.2f} s to layers + first frame, {len(viewer.layers)} layers, "
                         f"visible {[ly.name for ly in viewer.layers if ly.visible]}, "
                         f"contour {[ly.contour for ly in labels]} -> {shot}\n")
        viewer.close()
    return 0


def measure(outdir: str) -> int:
    import shutil
    import tempfile

    from qtpy.QtWidgets import QApplication

    out = Path(outdir)
    src = REAL / "steinbock_imc_testdata"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "steinbock_no_tables"
        folder.mkdir()
        for part in ("img", "masks_deepcell"):
            shutil.copytree(src / part, folder / part)
        for f in ("panel.csv", "images.csv"):
            shutil.copy(src / f, folder / f)
        viewer, dock = _samples_and_legend()
        app = QApplication.instance()
        shots = []

        def running_shot():
            if dock.jobs.running and not shots:     # the first frame with the job running
                shots.append(time.perf_counter() - t)
                shoot(viewer, out / "measure_cells_running.png")

        dock.jobs.changed.connect(running_shot)
        t = time.perf_counter()
        viewer.open(str(folder), plugin="napari-carspatial")
        t_layers = time.perf_counter() - t
        app.processEvents()
        while dock.jobs.running:
            app.processEvents()
            time.sleep(0.02)
        t_table = time.perf_counter() - t
        shoot(viewer, out / "measure_cells_done.png", settle=0.5)
        sys.stdout.write(f"steinbock without tables: layers in {t_layers:.2f} s, table in {t_table:.2f} s: "
                         f"{dock.measure_status.text()}\n")
        viewer.close()
    return 0


def image_and_mask(outdir: str) -> int:
    """cytomapper's E34 image + mask opened in the Samples dock (no table: measured in a worker);
    writes ``fileopen_cytomapper_mask.png``."""
    from qtpy.QtWidgets import QApplication

    root = REAL / "cytomapper_pancreas_imc"
    viewer, dock = _samples_and_legend()
    app = QApplication.instance()
    pump(0.2)
    t = time.perf_counter()
    dock.image_path.edit.setText(str(root / "images" / "E34_imc.tiff"))
    dock.mask_path.edit.setText(str(root / "masks" / "E34_mask.tiff"))
    dock.open_button.click()
    while not dock.measure_status.text().startswith("Measured") and time.perf_counter() - t < 120:
        app.processEvents()
        time.sleep(0.02)
    shot = shoot(viewer, Path(outdir) / "fileopen_cytomapper_mask.png", settle=1.0)
    sys.stdout.write(f"cytomapper image + mask: {time.perf_counter() - t:.2f} s, {dock.measure_status.text()} -> {shot}\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    if "--mask" in sys.argv:
        sys.exit(image_and_mask(next((a for a in sys.argv[1:] if not a.startswith("--")), "docs/images")))
    if "--measure" in sys.argv:
        sys.exit(measure(next((a for a in sys.argv[1:] if not a.startswith("--")), "docs/images")))
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")]
    sys.exit(main(args[0] if args else "docs/images", docks="--docks" in sys.argv, only=only[0].split(",") if only else None))
