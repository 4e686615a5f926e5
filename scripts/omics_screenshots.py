"""Screenshots of the Transcripts dock on the real Xenium and CosMx crops (1600 x 1000).

Under xvfb-run, from the project root::

    PYTHONPATH=src xvfb-run -a -s "-screen 0 1600x1200x24" python scripts/omics_screenshots.py \
        xenium_crop CD3D,POU2AF1,LEF1 CD3D
    FIELD_UM=300 ... scripts/omics_screenshots.py cosmx_crop Snap25,Apoe,Malat1 Snap25

(sample folder, genes shown as transcripts, gene the cells are coloured by). PNGs go to
``$OUT_DIR`` (default /tmp/omics_shots): overview with all transcripts, the genes' density,
cells coloured by the gene with the genes' molecules, and a zoomed-in field (``FIELD_UM``).
"""
import os
import sys
from pathlib import Path

import numpy as np
from _shots import REAL, new_viewer
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication

from napari_carspatial._napari import camera, session_for

OUT = Path(os.environ.get("OUT_DIR", "/tmp/omics_shots"))
OUT.mkdir(parents=True, exist_ok=True)
which = sys.argv[1]
genes = sys.argv[2].split(",")
color_gene = sys.argv[3]


def pump(n=20):
    for _ in range(n):
        QApplication.processEvents()


v = new_viewer(show=True)
pump()
v.open(str(REAL / which), plugin="napari-carspatial")
pump()
sess = session_for(v)
(sid,) = sess.samples()
s = sess.sample(sid)
ld, legend = v.window.add_plugin_dock_widget("napari-carspatial", "Legend")
td, w = v.window.add_plugin_dock_widget("napari-carspatial", "Transcripts")
pump()
win = ld.parentWidget()
while win is not None and not hasattr(win, "resizeDocks"):
    win = win.parentWidget()
win.resizeDocks([ld, td], [int(os.environ.get("LEGEND_H", "330")), 640], Qt.Vertical)
pump()
v.reset_view()
w.update_view(wait=True)
pump()
v.screenshot(str(OUT / f"{which}_overview_all.png"), canvas_only=False)
gl = w.genes_view
gl.set_checked(genes)
pump()
w.set_mode("density")
pump()
w.update_view(wait=True)
pump()
v.screenshot(str(OUT / f"{which}_overview_density.png"), canvas_only=False)
w.set_mode("auto")
pump()
assert legend.gene_search.choose(color_gene), color_gene
pump()
w.update_view(wait=True)
pump()
v.screenshot(str(OUT / f"{which}_overview_genes.png"), canvas_only=False)
# zoom in on the middle of the cells
xy = np.asarray(s.table.obsm["spatial"], float)[:, :2]
cx, cy = np.median(xy, axis=0)
px = s.pixel_size_um or 1.0
cam = camera(v)
field = float(os.environ.get("FIELD_UM", "60"))
cells_layer = next(ly for ly in v.layers if type(ly).__name__ == "Labels")
cam.center = tuple(cells_layer.data_to_world((cy, cx)))
cam.zoom = min(v.canvas.size) / field
pump()
w.update_view(wait=True)
pump(40)
v.screenshot(str(OUT / f"{which}_zoom_genes.png"), canvas_only=False)
v.close()
