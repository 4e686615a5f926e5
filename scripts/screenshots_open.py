"""Screenshots of the first view of each real dataset, opened the way File > Open does.

Run under a virtual display (napari's canvas needs one):

    QT_API=pyqt6 NAPARI_ASYNC=0 PYTHONPATH=src xvfb-run -a -s "-screen 0 1600x1200x24" \\
        python scripts/screenshots_open.py docs/images

Writes ``open_<dataset>.png`` (1600 x 1000 window) and prints the open time of each.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from _shots import REAL, SIZE, shoot

DATASETS = {
    "cytomapper": (REAL / "cytomapper_pancreas_imc" / "images" / "E34_imc.tiff",
                   {"mask": REAL / "cytomapper_pancreas_imc" / "masks" / "E34_mask.tiff"}),
    "steinbock": (REAL / "steinbock_imc_testdata", {}),
    "mcd": (REAL / "imc_raw_mcd" / "20210305_NE_mockData2" / "20210305_NE_mockData2.mcd", {}),
}


def main(outdir: str) -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for key, (path, extra) in DATASETS.items():
        viewer = napari.Viewer(show=True)
        from napari_carspatial._napari import session_for

        session_for(viewer)   # the plugin's session of this viewer (the docks make it; none are open here)
        viewer.window._qt_window.resize(*SIZE)
        QApplication.processEvents()
        t = time.perf_counter()
        if extra:
            from napari_carspatial._napari.layers import add_sample_layers
            from napari_carspatial.io import read_sample

            add_sample_layers(viewer, read_sample(path, **extra))
        else:
            viewer.open(str(path), plugin="napari-carspatial")
        QApplication.processEvents()
        dt = time.perf_counter() - t
        viewer.reset_view()
        QApplication.processEvents()
        shot = shoot(viewer, out / f"open_{key}.png")
        sys.stdout.write(f"{key}: {dt:.2f} s, {len(viewer.layers)} layers, "
                         f"visible {[lyr.name for lyr in viewer.layers if lyr.visible]} -> {shot}\n")
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
