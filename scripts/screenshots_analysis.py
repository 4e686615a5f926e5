"""Screenshots of the Analysis dock at 1600 x 1000: the demo (core vs margin, co-occurrence,
enrichment, the roles editor, ligand-receptor with the engaged cells on the slide) and real data
(cytomapper IMC with its own ``CellType`` column; the Xenium crop with ligand-receptor).

Run under a virtual display (napari's canvas needs one):

    QT_API=pyqt6 NAPARI_ASYNC=0 PYTHONPATH=src xvfb-run -a -s "-screen 0 1600x1200x24" \\
        python scripts/screenshots_analysis.py docs/images

Writes ``analysis_<view>.png`` and prints what each shows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from _shots import REAL, SIZE, add_docks, pump, shoot


def compartment_polygons(sample, compartment: str, grid_um: float = 10.0) -> list[np.ndarray]:
    """Polygons (level-0 px, (y, x)) of a demo compartment, as a pathologist would draw them."""
    from scipy import ndimage
    from scipy.spatial import cKDTree
    from skimage.measure import approximate_polygon, find_contours

    a = sample.table
    ps = sample.pixel_size_um
    xy = np.asarray(a.obsm["spatial"], float) * ps
    H, W = sample.shape_yx
    gy, gx = np.mgrid[0:H * ps:grid_um, 0:W * ps:grid_um]
    d, idx = cKDTree(xy).query(np.column_stack([gx.ravel() + grid_um / 2, gy.ravel() + grid_um / 2]))
    comp = a.obs["compartment"].astype(str).to_numpy()[idx]
    m = ndimage.binary_opening(((comp == compartment) & (d < 25)).reshape(gy.shape), iterations=1)
    polys = []
    for c in find_contours(np.pad(m.astype(float), 1), 0.5):
        p = approximate_polygon((c - 1 + 0.5) * grid_um / ps, tolerance=grid_um / ps)
        area = abs(np.dot(p[:, 1], np.roll(p[:, 0], 1)) - np.dot(p[:, 0], np.roll(p[:, 1], 1))) / 2 * ps * ps
        if len(p) >= 4 and area > 40 * 40:
            polys.append(p[:-1] if np.allclose(p[0], p[-1]) else p)
    return polys


def _run(app, w, stat, compare=None, timeout=180):
    """Run ``stat`` in the Analysis dock, wait for its result, then compare the regions ``compare``."""
    w.run(stat)
    t = time.perf_counter()
    while True:
        app.processEvents()
        if w._worker is None and w.current is not None and w.current.statistic == stat:
            break
        if time.perf_counter() - t > timeout:
            raise TimeoutError(stat)
        time.sleep(0.05)
    if compare is not None:
        w.results.compare_with(*compare)


def _viewer():
    import napari

    from napari_carspatial.widgets.analysis import AnalysisWidget

    viewer = napari.Viewer(show=True)
    # the legend beside the analysis: the figures' colours are the legend's
    add_docks(viewer, "legend", area="left")
    w = AnalysisWidget(viewer)
    viewer.window.add_dock_widget(w, name="Analysis", area="right")
    viewer.window.resize(*SIZE)
    return viewer, w


def _shot(viewer, path: Path) -> None:
    shoot(viewer, path, settle=0.6)
    sys.stdout.write(f"wrote {path}\n")


def demo(out: Path, app) -> None:
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.datasets import demo_sample

    s = demo_sample(size=1600, timepoint="post", seed=0)
    viewer, w = _viewer()
    add_sample_layers(viewer, s)
    ps = s.pixel_size_um
    for name, comp, color in (("core", "Tumor core", "#ff4040"), ("margin", "Invasive margin", "#ffd400")):
        viewer.add_shapes(compartment_polygons(s, comp), shape_type="polygon", name=name, scale=(ps, ps),
                          edge_color=color, face_color="transparent", edge_width=3, units=("um", "um"))
    w.setup.refresh_regions()
    w.setup.set_checked_regions(["Shapes: core", "Shapes: margin"])
    viewer.reset_view()
    w.tabs.setCurrentWidget(w.roles)
    _shot(viewer, out / "analysis_roles.png")
    _run(app, w, "cart", compare=("margin", "core"))
    _shot(viewer, out / "analysis_cart.png")
    _run(app, w, "nhood", compare=("margin", "core"))
    _shot(viewer, out / "analysis_nhood_compare.png")
    _run(app, w, "cooccurrence", compare=("margin", "core"))
    _shot(viewer, out / "analysis_cooccurrence.png")
    _run(app, w, "ligrec", compare=("margin", None))
    worker = w.show_engaged("CD274", "PDCD1", "Macrophage", "CAR T")
    t = time.perf_counter()
    while worker is not None and not worker.is_running and time.perf_counter() - t < 2:
        app.processEvents()
    while worker is not None and worker.is_running:
        app.processEvents()
        time.sleep(0.05)
    pump(0.6)
    # zoom on the margin so the arrows between cells are visible
    lyr = w.engaged_layer if hasattr(w, "engaged_layer") else None
    if lyr is not None:
        c = np.median(lyr.data[:, 0], axis=0) * np.asarray(lyr.scale)
        viewer.camera.center = tuple(c)
        viewer.camera.zoom = viewer.camera.zoom * 4
    _shot(viewer, out / "analysis_ligrec.png")
    viewer.close()


def cytomapper(out: Path, app) -> None:
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.io import read_sample

    d = REAL / "cytomapper_pancreas_imc"
    s = read_sample(d / "images" / "G01_imc.tiff", mask=d / "masks" / "G01_mask.tiff", table=d / "cells.csv")
    viewer, w = _viewer()
    add_sample_layers(viewer, s)
    viewer.reset_view()
    w.tabs.setCurrentWidget(w.roles)
    _shot(viewer, out / "analysis_cytomapper_roles.png")
    # IMC is 1 µm per pixel (the README); the TIFF does not say so
    w.setup.px_override.setChecked(True)
    w.setup.px_spin.setValue(1.0)
    _run(app, w, "cart")
    _shot(viewer, out / "analysis_cytomapper_cart.png")
    _run(app, w, "nhood")
    _shot(viewer, out / "analysis_cytomapper_nhood.png")
    viewer.close()


def xenium(out: Path, app) -> None:
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.analysis.genes import leiden_cell_types, store_cell_types
    from napari_carspatial.io import read_sample

    (s,) = read_sample(REAL / "xenium_crop", image_pixel_size_um=1.7, image_origin_um=(1000, 1000))
    store_cell_types(s.table, leiden_cell_types(s.table, resolution=0.5, seed=0), key="cell_type_rna", overwrite=True)
    viewer, w = _viewer()
    add_sample_layers(viewer, s)
    for lyr in viewer.layers:
        if lyr.name == "morphology_mip":   # the DAPI focus image is enough under the cells
            lyr.visible = False
    viewer.reset_view()
    pump(0.6)
    _shot(viewer, out / "analysis_xenium_no_types.png")   # cell_type_rna is not a name the rule knows
    w.set_cell_type_key("cell_type_rna")
    for pairs in ("cart", "consensus"):
        w.setup.pairs_combo.setCurrentIndex(w.setup.pairs_combo.findData(pairs))
        w.run("ligrec")
        pump(1.8)
    w.tabs.setCurrentWidget(w.setup)
    _shot(viewer, out / "analysis_xenium_ligrec.png")
    _run(app, w, "cooccurrence")
    _shot(viewer, out / "analysis_xenium_cooccurrence.png")
    viewer.close()


def cosmx(out: Path, app) -> None:
    """A real RNA panel with ligand-receptor pairs (mouse brain, 27 cells, liana's mouse consensus)."""
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.analysis.genes import leiden_cell_types, store_cell_types
    from napari_carspatial.io import read_sample

    s = read_sample(REAL / "cosmx_crop", pixel_size_um=0.18)
    s = s[0] if isinstance(s, list) else s
    store_cell_types(s.table, leiden_cell_types(s.table, resolution=1.0, seed=0), key="cell_type_rna", overwrite=True)
    viewer, w = _viewer()
    add_sample_layers(viewer, s)
    viewer.reset_view()
    w.set_cell_type_key("cell_type_rna")
    w.setup.pairs_combo.setCurrentIndex(w.setup.pairs_combo.findData("mouseconsensus"))
    w.setup.min_edges_spin.setValue(3)
    _run(app, w, "ligrec")
    lyr = next(iter(w.session.layers_of(w.sample_id, "labels")), None)
    if lyr is not None:   # the FOV is a corner of a large frame: centre on its cells
        yx = np.asarray(s.table.obsm["spatial"], float)[:, ::-1]
        viewer.camera.center = tuple(np.median(yx, axis=0) * np.asarray(lyr.scale[-2:]))
        viewer.camera.zoom = viewer.camera.zoom * 4
    _shot(viewer, out / "analysis_cosmx_ligrec.png")
    viewer.close()


def draw_regions(viewer, w, polygons: dict[str, np.ndarray], color: str = "#ffd400") -> None:
    """One Shapes layer per region, polygons in level-0 px (y, x), drawn in the sample's geometry
    (what a user gets with the polygon tool over the sample's layers)."""
    scale, translate, units = w.session.geometry(w.sample_id)
    for name, poly in polygons.items():
        viewer.add_shapes([np.asarray(poly, float)], shape_type="polygon", name=name, scale=scale,
                          translate=translate, units=units, edge_color=color, face_color="transparent",
                          edge_width=0.6)
    w.setup.refresh_regions()
    w.setup.set_checked_regions([f"Shapes: {n}" for n in polygons])


def cytomapper_regions(out: Path, app) -> None:
    """Real IMC (pancreas) with its own CellType column: roles mapped in the Roles tab as a user
    would (target = celltype_A, the beta cells; CAR T = the CD8a+ cells by a marker rule), two
    regions drawn with the polygon tool and one drawn over background (no cell inside)."""
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.io import read_sample

    d = REAL / "cytomapper_pancreas_imc"
    s = read_sample(d / "images" / "G01_imc.tiff", mask=d / "masks" / "G01_mask.tiff", table=d / "cells.csv")
    viewer, w = _viewer()
    add_sample_layers(viewer, s)
    w.setup.px_override.setChecked(True)   # IMC: 1 µm per pixel (README); the TIFF does not say so
    w.setup.px_spin.setValue(1.0)
    w.roles.set_types("tumor", ["celltype_A"])
    w.roles.set_rule("car_t", "CD8a+")
    w.roles.set_types("myeloid", ["celltype_C"])
    H, W = s.shape_yx
    draw_regions(viewer, w, {"upper left": np.array([[0, 0], [0, W * 0.85], [H * 0.85, 0]]),
                             "lower right": np.array([[H, W], [H, W * 0.15], [H * 0.15, W]]),
                             "empty corner": np.array([[0, W - 1], [0, W - 3], [2, W - 1]])})
    viewer.reset_view()
    w.tabs.setCurrentWidget(w.roles)
    _shot(viewer, out / "analysis_cytomapper_roles.png")
    for st in ("cart", "nhood", "cooccurrence", "touching"):
        _run(app, w, st)
        if st != "touching":
            w.results.compare_with("upper left", "lower right")
        _shot(viewer, out / f"analysis_cytomapper_{st}.png")
    viewer.close()


def steinbock(out: Path, app) -> None:
    """The steinbock project (no cell types): the dock says how to make them; then a gate
    (Cytokeratin 5+ = epithelial) as the Gating dock would store it, a region drawn, statistics."""
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.analysis.gating import (
        Gate,
        GatingScheme,
        PhenotypeRule,
        apply_rules,
        marker_values,
        suggest_threshold,
    )
    from napari_carspatial.io import read_sample

    samples = read_sample(REAL / "steinbock_imc_testdata")
    s = max(samples, key=lambda x: x.table.n_obs)
    viewer, w = _viewer()
    add_sample_layers(viewer, s)
    viewer.reset_view()
    _shot(viewer, out / "analysis_steinbock_no_types.png")
    a = s.table
    scheme = GatingScheme(gates={}, rules=[])
    for m in ("Cytokeratin 5", "Laminin"):
        scheme.add_gate(Gate(m, suggest_threshold(marker_values(a, m), transform="asinh"), transform="asinh"))
    scheme.rules = [PhenotypeRule("Epithelial", [("Cytokeratin 5", "+")], order=0),
                    PhenotypeRule("Laminin+ stroma", [("Laminin", "+")], order=1)]
    a.obs["cell_type"] = apply_rules(a, scheme)
    w.session.table_changed(w.sample_id, columns=["cell_type"], reason="gating")
    H, W = s.shape_yx
    draw_regions(viewer, w, {"cluster": np.array([[0, 0], [0, W], [H, W], [H, 0]]) * 0.98 + 0.5})
    w.setup.px_override.setChecked(True)
    w.setup.px_spin.setValue(1.0)
    for st in ("nhood", "cooccurrence", "touching"):
        _run(app, w, st)
        _shot(viewer, out / f"analysis_steinbock_{st}.png")
    viewer.close()


def main(outdir: str, which: str = "demo,cytomapper,xenium,cosmx") -> int:
    import napari  # noqa: F401  (the Qt application)
    from qtpy.QtWidgets import QApplication

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    for name in which.split(","):
        {"demo": demo, "cytomapper": cytomapper, "cytomapper_regions": cytomapper_regions,
         "steinbock": steinbock, "xenium": xenium, "cosmx": cosmx}[name](out, app)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
