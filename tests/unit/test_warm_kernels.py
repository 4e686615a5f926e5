"""napari's numba kernels are compiled by our warm-up thread, not by the first lasso or split.

napari's own warm-up (``Shapes.__init__``) compiles other numba signatures than a drawn shape
uses: on a fresh install the first lasso compiled for ~10 s on the GUI thread. The check runs in a
fresh interpreter (nothing drawn yet in it), so a signature the warm-up misses shows up as new.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json
import numba
import numpy as np
from napari.layers import Shapes
from napari.layers.shapes import _accelerated_triangulate_numba as kernels  # test-only probe

from napari_carspatial._napari.layers import WARM_SHAPE_TYPES, warm_shape_kernels

def signatures():
    return {n: sorted(map(str, f.signatures)) for n in dir(kernels)
            if isinstance(f := getattr(kernels, n), numba.core.registry.CPUDispatcher)}

warm_shape_kernels()
before = signatures()
# what a user draws: a lasso (float64 world coordinates, many vertices), the Regions tab's
# rectangle and ellipse, a path; each into a new layer, as the docks add theirs
t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
lasso = np.stack([500 + 80 * np.sin(t), 700 + 80 * np.cos(t)], 1)
box = np.array([[10.5, 20.25], [40.0, 90.0]])
for kind, data in (("polygon", lasso), ("rectangle", box), ("ellipse", box), ("path", lasso[:10])):
    Shapes([data], shape_type=kind, edge_width=2.0, face_color="transparent")
after = signatures()
new = {n: sorted(set(after[n]) - set(before.get(n, []))) for n in after}
print(json.dumps({"types": list(WARM_SHAPE_TYPES), "n_before": sum(map(len, before.values())),
                  "new": {n: v for n, v in new.items() if v}}))
"""


def test_the_warm_up_compiles_every_signature_a_drawn_shape_uses():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(res["types"]) >= {"polygon", "rectangle", "ellipse", "path"}
    assert res["n_before"] > 0            # the warm-up did compile (or load) napari's kernels
    assert res["new"] == {}, f"compiled after the warm-up: {res['new']}"


EDIT_PROBE = r"""
import json
import numba
import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import _accelerated_cmap as kernels  # test-only probe

from napari_carspatial._napari.layers import WARM_EDIT_DTYPES, warm_contour_edit_kernels, warm_label_kernels

def signatures():
    return {n: sorted(map(str, f.signatures)) for n in dir(kernels)
            if isinstance(f := getattr(kernels, n), numba.core.registry.CPUDispatcher)}

warm_label_kernels()
warm_contour_edit_kernels()
before = signatures()
# what a segmentation edit region does: a mask block in a labels layer drawn with contours,
# a split's new cell written into it
for dt in (np.uint32, np.uint16, np.int32):
    layer = Labels(np.random.default_rng(0).integers(0, 50, (256, 300)).astype(dt))
    layer.contour = 1
    yy, xx = np.mgrid[40:90, 60:130]
    layer.data_setitem((yy.ravel(), xx.ravel()), 77)
after = signatures()
new = {n: sorted(set(after[n]) - set(before.get(n, []))) for n in after}
print(json.dumps({"dtypes": [np.dtype(d).name for d in WARM_EDIT_DTYPES], "n_before": sum(map(len, before.values())),
                  "new": {n: v for n, v in new.items() if v}}))
"""


def test_the_warm_up_compiles_what_an_edit_of_a_contoured_mask_uses():
    out = subprocess.run([sys.executable, "-c", EDIT_PROBE], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"uint32", "uint16", "int32"} <= set(res["dtypes"])
    assert res["n_before"] > 0
    assert res["new"] == {}, f"compiled after the warm-up: {res['new']}"
