"""Take screenshots of the plugin on the demo (run under Xvfb): python scripts/screenshot.py OUT.png

Options: --timepoint post|pre, --size N, --canvas-only, --zoom Z (camera zoom), --center Y X (µm).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--timepoint", default="post")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--canvas-only", action="store_true")
    p.add_argument("--zoom", type=float, default=None)
    p.add_argument("--center", type=float, nargs=2, default=None)
    p.add_argument("--widgets", default="samples", help="comma list: samples,channels,inspector")
    p.add_argument("--inspect", type=int, default=None, help="cell id to pin in the inspector")
    a = p.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_carspatial._napari.inspect import camera
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.datasets import demo_sample

    viewer = napari.Viewer(title="napari-carspatial demo")
    viewer.window.resize(1600, 1000)
    sample = demo_sample(timepoint=a.timepoint, size=a.size)
    add_sample_layers(viewer, sample)
    docks = {}
    for name in a.widgets.split(","):
        name = name.strip()
        if name == "samples":
            from napari_carspatial.widgets.sample_widget import SampleWidget

            docks[name] = SampleWidget(viewer)
        elif name == "channels":
            from napari_carspatial.widgets.channels import ChannelsWidget

            docks[name] = ChannelsWidget(viewer)
        elif name == "inspector":
            from napari_carspatial.widgets.inspector import InspectorWidget

            docks[name] = InspectorWidget(viewer)
        if name in docks:
            viewer.window.add_dock_widget(docks[name], name=name.capitalize(), area="right")
    cam = camera(viewer)
    if a.center:
        cam.center = tuple(a.center)
    if a.zoom:
        cam.zoom = a.zoom
    if a.inspect is not None and "inspector" in docks:
        docks["inspector"].show_cell(a.inspect, center=True)
    app = QApplication.instance()
    t0 = time.time()
    while time.time() - t0 < 4:
        app.processEvents()
        time.sleep(0.05)
    viewer.screenshot(a.out, canvas_only=a.canvas_only, flash=False)
    viewer.close()


if __name__ == "__main__":
    main()
