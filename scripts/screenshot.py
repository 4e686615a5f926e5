"""Take screenshots of the plugin on the demo (run under Xvfb): python scripts/screenshot.py OUT.png

Options: --timepoint post|pre, --size N, --canvas-only, --zoom Z (camera zoom), --center Y X (µm).
"""

from __future__ import annotations

import argparse

from _shots import add_docks, new_viewer, pump


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

    from napari_carspatial._napari.inspect import camera
    from napari_carspatial._napari.layers import add_sample_layers
    from napari_carspatial.datasets import demo_sample

    viewer = new_viewer(title="napari-carspatial demo")
    sample = demo_sample(timepoint=a.timepoint, size=a.size)
    add_sample_layers(viewer, sample)
    names = [n.strip() for n in a.widgets.split(",")]
    docks = add_docks(viewer, *(n for n in names if n in ("samples", "channels", "inspector")))
    cam = camera(viewer)
    if a.center:
        cam.center = tuple(a.center)
    if a.zoom:
        cam.zoom = a.zoom
    if a.inspect is not None and "inspector" in docks:
        docks["inspector"].show_cell(a.inspect, center=True)
    pump(4, step=0.05)
    viewer.screenshot(a.out, canvas_only=a.canvas_only, flash=False)
    viewer.close()


if __name__ == "__main__":
    main()
