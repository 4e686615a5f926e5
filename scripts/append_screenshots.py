"""Screenshots of issue 14's segmentation round (engineer "append"): split, merge and close on the
real steinbock folder (copied to a temporary folder first: the edit's working copy is written next
to the mask), in the Segment workflow at 1600 x 1000.

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1600x1200x24" python scripts/append_screenshots.py docs/images

Writes ``append_split.png`` (after "Split by line"), ``append_merge.png`` (after "Merge") and
``append_closed.png`` (the region closed: its layers parked at the bottom of the layer list) and
``append_reopened.png`` (a second region reuses them). Uses ``scripts/ux_screenshots.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ux_screenshots as ux  # noqa: E402

log = logging.getLogger("append_screenshots")


def _shoot(viewer, out: Path, name: str) -> Path:
    ux.pump(1.0)
    path = out / f"append_{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    log.warning("wrote %s", path)
    return path


def main() -> None:
    import numpy as np

    from napari_carspatial.io import read_sample
    from napari_carspatial.widgets import workflows

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="append_shots_"))
    os.environ["CARSPATIAL_CACHE_DIR"] = str(scratch / "cache")
    os.environ["CARSPATIAL_CONFIG_DIR"] = str(scratch / "config")
    folder = scratch / "steinbock_imc_testdata"
    shutil.copytree(ux.REAL / "steinbock_imc_testdata", folder)
    res = read_sample(folder)
    samples = res if isinstance(res, list) else [res]
    viewer = ux._viewer(samples, workflow="Segment")
    seg = ux._raise(viewer, "Segmentation")
    seg.sample_box.setCurrentIndex(0)
    ux.pump(0.5)
    s = seg.sample
    t = s.table
    log.warning("sample %s: %d cells, markers %s", s.name, t.n_obs, list(t.var_names)[:5])
    H, W = s.labels[0].shape
    px = s.pixel_size_um or 1.0
    # a region over the most crowded part of the slide (the montage's centre may be background)
    yx = np.asarray(t.obsm["spatial"], float)[:, ::-1]
    crowd = [(np.hypot(*(yx - p).T) < 30).sum() for p in yx]
    cy, cx = yx[int(np.argmax(crowd))]
    y0, x0 = int(max(0, cy - 40)), int(max(0, cx - 40))
    seg.region_view.edit_rect(y0, x0, y0 + 80, x0 + 80, wait=True)
    ux._zoom(viewer, ((y0 + 40) * px, (x0 + 40) * px), 9.0)
    ux.pump(1.0)
    data = seg.region.data
    ids, counts = np.unique(data[20:60, 20:60], return_counts=True)
    counts[ids == 0] = 0
    cell = int(ids[np.argmax(counts)])
    ys, xs = np.nonzero(data == cell)
    xm = (xs.min() + xs.max()) / 2
    n0 = s.table.n_obs
    seg.ops.split_by_line(np.array([[ys.min() - 2, xm], [ys.max() + 2, xm]]), cell)
    seg.commit_view.wait()
    ux.pump(0.5)
    log.warning("split %d: %s; table %d -> %d", cell, seg.commit_view.result_label.text(), n0, s.table.n_obs)
    _shoot(viewer, out, "split")
    # merge two neighbours of another cell
    data = seg.region.data
    rest = [int(i) for i in np.unique(data[10:70, 10:70]) if i and i != cell]
    a = rest[len(rest) // 2]
    ring = np.zeros_like(data, bool)
    ring[np.nonzero(data == a)] = True
    from scipy import ndimage as ndi

    near = np.unique(data[ndi.binary_dilation(ring, iterations=2) & ~ring])
    b = next(int(i) for i in near if i and i != a)
    seg.tools.select_cells([a, b])
    seg.ops.merge()
    seg.commit_view.wait()
    ux.pump(0.5)
    log.warning("merge %d + %d: %s; table %d", a, b, seg.commit_view.result_label.text(), s.table.n_obs)
    _shoot(viewer, out, "merge")
    seg.region_view.close_region()
    seg.commit_view.wait()
    ux.pump(0.5)
    log.warning("layers after the close: %s", [ly.name for ly in viewer.layers])
    viewer.layers.selection.active = seg.session.labels_layer(seg.sid)
    legend = workflows.find_widget(viewer, workflows.CLASS_LIST)
    legend.workflow.layers_box.setChecked(True)     # napari's layer list, as a user would look
    _shoot(viewer, out, "closed")
    seg.region_view.edit_rect(y0 + 20, x0 + 20, y0 + 100, x0 + 100, wait=True)
    ux.pump(0.5)
    log.warning("layers after a second region: %s", [ly.name for ly in viewer.layers])
    _shoot(viewer, out, "reopened")
    seg.region_view.close_region()
    seg.commit_view.wait()
    viewer.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    main()
