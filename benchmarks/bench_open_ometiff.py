"""Opening a large pyramidal multiplexed OME-TIFF: time to first frame and peak memory.

Data: a synthetic 30-channel pyramidal OME-TIFF written once into ``benchmarks/_data`` (reused
while valid). Full run: 30 x 12000 x 12000 uint16 (8.64 GB at level 0, 11.5 GB with the pyramid),
uncompressed, 512 x 512 tiles, sub-IFD levels halving down to <= 1024 px, channel names and
``PhysicalSizeX/Y = 0.5 µm`` in the OME-XML. ``quick``: 30 x 4096 x 4096 (1.0 GB at level 0).
It is generated tile by tile, so writing needs a few MB of memory.

Measurements, each in a fresh process with the file evicted from the page cache first
(``posix_fadvise(DONTNEED)``: a cold open, as after copying a slide from a server):

* ``open_ometiff_headless``: ``napari_carspatial.io.read_sample(path)`` plus contrast limits of
  every channel computed from the smallest pyramid level. Time and peak RSS.
* ``open_ometiff_first_frame``: under Xvfb, an open ``napari.Viewer`` (created before the clock
  starts), then ``read_sample`` + ``napari_carspatial._napari.layers.add_sample_layers`` until the
  canvas has drawn a frame with every visible layer loaded. Time and peak RSS of the process
  (viewer, Qt, Mesa software GL included). Targets: < 3 s, < 1.5 GB.

Full runs add the same pixels *without* a pyramid (a 9.1 GB flat tiled OME-TIFF): the first open
(``*_flat``: no cache yet, lazy strided levels; memory only), the pyramid-cache build that the
first open triggers (``open_ometiff.pyramid_cache_build_flat``: one cold read of the file,
peak RSS < 1.5 GB; :mod:`napari_carspatial.io.pyramid_cache`), and every later open
(``*_flat_cached``: < 3 s, < 1.5 GB). The cache lives in a private ``_data/pyramid_cache``,
emptied before the flat rows.

Reference: napari's own reading path for this file, i.e. the builtin reader (``napari_builtins``,
imageio -> tifffile), which reads level 0 of all channels eagerly. It needs the whole level 0 in
RAM, so it only runs when free memory is > 2.5x level 0; otherwise the reference is plain
``tifffile.imread`` of level 0 of ONE channel (labelled as such). The reference measures reading
only (no viewer), so for the first-frame row it is a lower bound of napari's own path.

Run on its own: ``python benchmarks/bench_open_ometiff.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DATA_DIR,
    current_rss_mb,
    evict_from_page_cache,
    free_disk_gb,
    peak_rss_mb,
    result,
    run_child,
    write_child_result,
)

log = logging.getLogger("benchmarks.open_ometiff")

FORMAT_VERSION = 1
TILE = 512
PIXEL_SIZE_UM = 0.5
MARKERS = [
    "DAPI", "CD3", "CD4", "CD8", "CAR-idiotype", "CD19", "CD20", "CD45", "CD68", "CD163",
    "CD11b", "CD15", "PanCK", "MSLN", "PSMA", "PD-1", "PD-L1", "LAG-3", "TIM-3", "Ki-67",
    "GZMB", "FOXP3", "CD31", "SMA", "Vimentin", "HLA-DR", "CD11c", "CD56", "E-cadherin", "Collagen IV",
]
SIZES = {
    # name: (channels, y, x)
    "full": (30, 12000, 12000),
    "quick": (30, 4096, 4096),
    "full_flat": (30, 12000, 12000),  # same pixels, no pyramid (many CODEX/MCMICRO exports)
}
FLAT = {"full_flat"}
TARGET_FIRST_FRAME_S = 3.0
TARGET_PEAK_MB = 1536.0


# ---------------------------------------------------------------------------- synthetic data
def level_shapes(shape_yx: tuple[int, int], max_small: int = 1024) -> list[tuple[int, int]]:
    """Level-0 shape, then halved (rounding up) until both sides are <= ``max_small``."""
    shapes = [tuple(shape_yx)]
    while max(shapes[-1]) > max_small:
        y, x = shapes[-1]
        shapes.append(((y + 1) // 2, (x + 1) // 2))
    return shapes


class _Texture:
    """Cheap deterministic tissue-like texture: smooth 'tissue' envelope x 'cells' + noise.

    Every term is separable (outer product of 1-D profiles), so a 512 x 512 tile costs a few
    vector operations; any pyramid level is evaluated directly at its own resolution.
    """

    def __init__(self, n_channels: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.base = rng.uniform(80, 400, n_channels).astype(np.float32)
        self.amp = rng.uniform(1500, 20000, n_channels).astype(np.float32)
        # envelope: period 2000-5000 level-0 px; cells: period 14-40 px
        self.env_f = rng.uniform(2 * np.pi / 5000, 2 * np.pi / 2000, (n_channels, 2)).astype(np.float32)
        self.cell_f = rng.uniform(2 * np.pi / 40, 2 * np.pi / 14, (n_channels, 2)).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, (n_channels, 4)).astype(np.float32)
        self.noise = rng.integers(0, 600, (16, TILE, TILE), dtype=np.uint16).astype(np.float32)

    def tile(self, c: int, y0: int, x0: int, h: int, w: int, scale: int) -> np.ndarray:
        ys = (np.arange(y0, y0 + h, dtype=np.float32) * scale)
        xs = (np.arange(x0, x0 + w, dtype=np.float32) * scale)
        fy, fx = self.env_f[c]
        gy, gx = self.cell_f[c]
        p = self.phase[c]
        env = np.outer(0.5 + 0.5 * np.sin(fy * ys + p[0]), 0.5 + 0.5 * np.sin(fx * xs + p[1]))
        # cells are finer than a pixel at coarse levels: attenuate like averaging would
        cell_amp = 1.0 / scale
        cells = np.outer(0.5 + 0.5 * np.sin(gy * ys + p[2]), 0.5 + 0.5 * np.sin(gx * xs + p[3]))
        img = self.base[c] + self.amp[c] * env * (1 - cell_amp + cell_amp * cells) ** 2
        k = (c * 7919 + (y0 // TILE) * 31 + (x0 // TILE) * 17 + scale) % len(self.noise)
        img += self.noise[k, :h, :w]
        out = np.zeros((TILE, TILE), np.uint16)  # full tile, zero-padded at the edges
        out[:h, :w] = np.clip(img, 0, 65535)
        return out

    def tiles(self, n_channels: int, shape_yx: tuple[int, int], scale: int):
        ny, nx = shape_yx
        for c in range(n_channels):
            for y0 in range(0, ny, TILE):
                for x0 in range(0, nx, TILE):
                    yield self.tile(c, y0, x0, min(TILE, ny - y0), min(TILE, nx - x0), scale)


def data_path(size: str) -> Path:
    c, y, x = SIZES[size]
    flat = "_flat" if size in FLAT else ""
    return DATA_DIR / f"synthetic_{c}ch_{y}x{x}{flat}_v{FORMAT_VERSION}.ome.tif"


def file_levels(size: str) -> list[tuple[int, int]]:
    """(Y, X) of every level written to the file for ``size``."""
    c, y, x = SIZES[size]
    return [(y, x)] if size in FLAT else level_shapes((y, x))


def _expected_meta(size: str) -> dict:
    c, y, x = SIZES[size]
    return {"format_version": FORMAT_VERSION, "shape": [c, y, x], "levels": [list(s) for s in file_levels(size)],
            "tile": TILE, "pixel_size_um": PIXEL_SIZE_UM, "channel_names": MARKERS[:c]}


def is_valid(path: Path, size: str) -> bool:
    """The cached file exists, finished writing (sidecar), and has the expected pyramid."""
    side = path.with_suffix(".json")
    if not (path.exists() and side.exists()):
        return False
    try:
        meta = json.loads(side.read_text())
        if {k: meta.get(k) for k in _expected_meta(size)} != _expected_meta(size):
            return False
        if path.stat().st_size != meta.get("file_size"):
            return False
        import tifffile

        with tifffile.TiffFile(path) as tf:
            s = tf.series[0]
            return [list(lv.shape) for lv in s.levels] == [[meta["shape"][0], *lv] for lv in meta["levels"]]
    except Exception as err:  # noqa: BLE001 - any problem means: regenerate
        log.warning("cached %s is not valid (%s); regenerating", path, err)
        return False


def ensure_data(size: str) -> Path:
    """Write the synthetic OME-TIFF for ``size`` unless a valid cached copy exists."""
    import tifffile

    path = data_path(size)
    if is_valid(path, size):
        log.info("reusing %s (%.2f GB)", path, path.stat().st_size / 1e9)
        return path
    c, y, x = SIZES[size]
    shapes = file_levels(size)
    need_gb = sum(c * a * b * 2 for a, b in shapes) / 1e9 * 1.02
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    free = free_disk_gb(DATA_DIR)
    if free < need_gb + 5:
        raise RuntimeError(f"{DATA_DIR}: {free:.1f} GB free, need {need_gb:.1f} GB (+5 GB margin) for {path.name}")
    tmp = path.with_name(path.name + ".partial")
    tex = _Texture(c)
    t0 = time.perf_counter()
    log.info("writing %s: %d levels %s, %.1f GB", path.name, len(shapes), shapes, need_gb)
    metadata = {
        "axes": "CYX",
        "Channel": {"Name": MARKERS[:c]},
        "PhysicalSizeX": PIXEL_SIZE_UM, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": PIXEL_SIZE_UM, "PhysicalSizeYUnit": "µm",
    }
    opts = {"dtype": np.uint16, "tile": (TILE, TILE), "photometric": "minisblack", "compression": None}
    with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tw:
        tw.write(tex.tiles(c, shapes[0], 1), shape=(c, *shapes[0]), subifds=len(shapes) - 1,
                 metadata=metadata, **opts)
        for lvl, shp in enumerate(shapes[1:], start=1):
            tw.write(tex.tiles(c, shp, 2**lvl), shape=(c, *shp), subfiletype=1, metadata=None, **opts)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    meta = _expected_meta(size) | {"file_size": path.stat().st_size, "write_s": time.perf_counter() - t0}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    log.info("wrote %s (%.2f GB) in %.0f s", path, meta["file_size"] / 1e9, meta["write_s"])
    return path


# ---------------------------------------------------------------------------- child processes
def _read_sample_fn():
    """``napari_carspatial.io.read_sample`` (a clear error while it does not exist yet)."""
    try:
        from napari_carspatial.io import read_sample
    except ImportError as err:
        raise RuntimeError(f"napari_carspatial.io.read_sample is not available ({err})") from None
    return read_sample


def _one_sample(result):
    return result[0] if isinstance(result, (list, tuple)) else result


def _describe_pyramid(sample) -> dict:
    info = {"levels": [list(map(int, lv.shape)) for lv in sample.image]}
    lv0 = sample.image[0]
    if hasattr(lv0, "chunksize"):
        info["level0_chunksize"] = list(map(int, lv0.chunksize))
        info["level0_chunk_mb"] = float(np.prod(lv0.chunksize) * lv0.dtype.itemsize / 2**20)
    return info


def _agreement(sample, path: str, smallest) -> str:  # noqa: C901
    """Does what the reader returns match what was written? (checked after the clock stopped)"""
    import tifffile

    c = SIZES_BY_PATH(path)
    problems = []
    if list(sample.channel_names) != MARKERS[:c]:
        problems.append(f"names {list(sample.channel_names)[:3]}...")
    if sample.pixel_size_um is None or abs(float(sample.pixel_size_um) - PIXEL_SIZE_UM) > 1e-9:
        problems.append(f"pixel size {sample.pixel_size_um}")
    with tifffile.TiffFile(path) as tf:
        levels = tf.series[0].levels
        if len(levels) == 1:  # flat file: the reader may add a lazy pyramid; compare a corner of level 0
            import zarr

            z = zarr.open(tf.series[0].aszarr(level=0), mode="r")
            for ch in (0, c - 1):
                if not np.array_equal(np.asarray(sample.image[0][ch, :1024, :1024]), z[ch, :1024, :1024]):
                    problems.append(f"level 0 channel {ch} differs from tifffile")
            cached = len(sample.image) > 1 and "from-zarr" in str(getattr(sample.image[1], "name", ""))
            if cached:  # lower levels from the pyramid cache: the smallest one must be level 0 strided
                f = 2 ** (len(sample.image) - 1)
                if not np.array_equal(np.asarray(sample.image[-1][0, :128, :128]), z[0, : 128 * f: f, : 128 * f: f]):
                    problems.append("cached smallest level differs from tifffile level 0 strided")
            extra = (f", {len(sample.image) - 1} lower levels from the pyramid cache" if cached else
                     f", reader added {len(sample.image) - 1} lazy levels" if len(sample.image) > 1 else "")
            return ("names, 0.5 µm, level-0 pixels == tifffile" + extra) if not problems else \
                "MISMATCH: " + "; ".join(problems)
        if len(sample.image) != len(levels):
            problems.append(f"{len(sample.image)} levels, file has {len(levels)}")
        else:
            ref = levels[-1].asarray()
            if not np.array_equal(np.asarray(smallest), ref):
                problems.append("smallest level differs from tifffile")
    return "names, 0.5 µm, levels, pixels == tifffile" if not problems else "MISMATCH: " + "; ".join(problems)


def SIZES_BY_PATH(path: str) -> int:  # noqa: N802 - channels of a generated file
    for size in SIZES:
        if Path(path).name == data_path(size).name:
            return SIZES[size][0]
    return len(MARKERS)


def _evict(path: str) -> None:
    """Cold start: the slide and any pyramid-cache files it may be read from."""
    evict_from_page_cache(path)
    root = os.environ.get("CARSPATIAL_CACHE_DIR")
    if root and Path(root).exists():
        for f in Path(root).rglob("*"):
            if f.is_file():
                evict_from_page_cache(f)


def child_headless(path: str, warm: bool) -> dict:
    t_imp = time.perf_counter()
    read_sample = _read_sample_fn()
    import_s = time.perf_counter() - t_imp
    if not warm:
        _evict(path)
    base_mb = current_rss_mb()
    load = os.getloadavg()[0]
    c0 = time.process_time()
    t0 = time.perf_counter()
    sample = _one_sample(read_sample(path))
    t_read = time.perf_counter()
    # the product's path: colours, contrast (histogram percentiles of at most 16 blocks of the
    # smallest level) and default visibility, exactly what opening in napari computes
    from napari_carspatial._napari.layers import channel_plan

    limits = np.asarray(channel_plan(sample)["contrast_limits"])
    t1 = time.perf_counter()
    cpu = time.process_time() - c0
    peak = peak_rss_mb()
    # untimed: the whole smallest level, for the pixel agreement check against tifffile
    smallest_np = np.asarray(min(sample.image, key=lambda a: a.shape[-1] * a.shape[-2]))
    return {
        "total_s": t1 - t0, "cpu_s": cpu, "read_sample_s": t_read - t0, "contrast_s": t1 - t_read, "import_s": import_s,
        "peak_mb": peak, "baseline_mb": base_mb, "cache": "warm" if warm else "cold",
        "loadavg_1min": load, "limits_example": limits[:3].round(1).tolist(), **_describe_pyramid(sample),
        "agreement": _agreement(sample, path, smallest_np),
    }


def child_cache_build(path: str) -> dict:
    """First open of a flat slide: build its pyramid cache (cold file), time and peak memory."""
    from napari_carspatial.io import pyramid_cache as pc
    from napari_carspatial.io.tiff import read_tiff

    evict_from_page_cache(path)
    base_mb = current_rss_mb()
    load = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    level0 = read_tiff(path).levels[0]
    entry = pc.build_pyramid_cache(path, level0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    levels = pc.cached_levels(path, level0)
    ok = levels is not None
    if ok:  # the cached smallest level equals tifffile's level 0, strided, on a corner of two channels
        import tifffile
        import zarr

        f = 2 ** (len(levels) - 1)
        with tifffile.TiffFile(path) as tf:
            z = zarr.open(tf.series[0].aszarr(level=0), mode="r")
            for ch in (0, int(level0.shape[0]) - 1):
                ok &= bool(np.array_equal(np.asarray(levels[-1][ch, :128, :128]), z[ch, : 128 * f: f, : 128 * f: f]))
    size_mb = sum(p.stat().st_size for p in Path(entry).rglob("*") if p.is_file()) / 2**20
    return {"total_s": wall, "cpu_s": cpu, "peak_mb": peak_rss_mb(), "baseline_mb": base_mb, "loadavg_1min": load,
            "levels": [list(map(int, lv.shape)) for lv in (levels or [])], "cache_mb": size_mb,
            "agreement_ok": bool(ok), "entry": str(entry)}


def child_gui(path: str, warm: bool, screenshot: str | None) -> dict:
    import napari
    from qtpy.QtWidgets import QApplication

    read_sample = _read_sample_fn()
    # what users get (carspatial open / the Samples dock): visible channels and outlines first,
    # hidden channels added in batches right after the first frame
    from napari_carspatial.widgets.progressive import add_samples_progressively

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    t_end = time.perf_counter() + 2.0
    while time.perf_counter() < t_end:  # let the window map and draw its empty canvas
        app.processEvents()
        time.sleep(0.01)
    draws: list[float] = []
    # napari has no public "frame drawn" event; the vispy canvas draw event is the truth here.
    canvas = viewer.window._qt_viewer.canvas
    canvas.events.draw.connect(lambda event: draws.append(time.perf_counter()), position="last")
    if not warm:
        _evict(path)
    base_mb = current_rss_mb()
    load = os.getloadavg()[0]

    c0 = time.process_time()
    t0 = time.perf_counter()
    sample = _one_sample(read_sample(path))
    t_read = time.perf_counter()
    all_in: list[float] = []
    layers = add_samples_progressively(viewer, [sample], on_done=lambda: all_in.append(time.perf_counter()))
    t_added = time.perf_counter()
    n_draws = len(draws)
    deadline = t_added + 300
    t_first = None
    while time.perf_counter() < deadline:
        app.processEvents()
        visible = [ly for ly in viewer.layers if ly.visible]
        if len(draws) > n_draws and all(ly.loaded for ly in visible):
            t_first = time.perf_counter()
            cpu = time.process_time() - c0
            break
        time.sleep(0.001)
    if t_first is None:
        raise RuntimeError("no frame was drawn within 300 s of adding the layers")
    while not all_in and time.perf_counter() < deadline:   # the hidden channels arrive
        app.processEvents()
        time.sleep(0.001)
    all_channels_s = (all_in[0] - t0) if all_in else None
    n_channel_layers = sum(1 for ly in viewer.layers if ly.__class__.__name__ == "Image")
    peak = peak_rss_mb()

    img_layers = [ly for ly in layers if ly.visible and getattr(ly, "multiscale", False)]
    shot = viewer.screenshot(canvas_only=True, flash=False)
    rgb = np.asarray(shot)[..., :3]
    nonempty = bool(rgb.std() > 1.0 and (rgb.reshape(-1, 3).max(axis=0) > 30).any())
    if screenshot:
        try:
            import imageio.v3 as iio

            iio.imwrite(screenshot, np.asarray(shot))
        except Exception as err:  # noqa: BLE001 - the screenshot file is a convenience
            log.warning("could not save screenshot %s: %s", screenshot, err)
    after_mb = current_rss_mb()
    info = {
        "first_frame_s": t_first - t0, "cpu_s": cpu, "read_sample_s": t_read - t0, "add_layers_s": t_added - t_read,
        "draw_wait_s": t_first - t_added, "peak_mb": peak, "baseline_mb": base_mb,
        "all_channels_s": all_channels_s, "n_channel_layers": n_channel_layers,
        "rss_after_screenshot_mb": after_mb, "cache": "warm" if warm else "cold", "loadavg_1min": load,
        "n_layers": len(layers), "n_visible": sum(ly.visible for ly in layers),
        "data_levels_shown": sorted({int(ly.data_level) for ly in img_layers}),
        "screenshot_nonempty": nonempty, "screenshot_shape": list(rgb.shape), "screenshot": screenshot,
        **_describe_pyramid(sample),
    }
    try:
        from qtpy import API_NAME

        info["qt_api"] = API_NAME
        from napari.settings import get_settings

        info["napari_async"] = bool(get_settings().experimental.async_)
    except Exception:  # noqa: BLE001 - informative only
        pass
    viewer.close()
    return info


def child_reference(path: str, level0_bytes: int) -> dict:
    """napari's builtin reader when level 0 fits in RAM comfortably, else tifffile of one channel."""
    import psutil

    avail = psutil.virtual_memory().available
    evict_from_page_cache(path)
    base_mb = current_rss_mb()
    if avail > 1.5 * level0_bytes + 2e9:  # it peaks at ~1.03x level 0; keep a margin for others
        import npe2

        npe2.PluginManager.instance().discover()  # registers napari's builtin reader ("napari")
        label = "napari builtin reader (imageio->tifffile, eager: level 0, all channels), read only"
        t0 = time.perf_counter()
        data = npe2.read([path], plugin_name="napari", stack=False)
        t1 = time.perf_counter()
        shapes = [list(np.shape(d[0])) for d in data]
    else:
        import tifffile

        label = "tifffile.imread level 0 of ONE channel (napari builtin reader would need all of level 0 in RAM)"
        t0 = time.perf_counter()
        arr = tifffile.imread(path, series=0, level=0, key=0)
        t1 = time.perf_counter()
        shapes = [list(arr.shape)]
    return {"reference": label, "time_s": t1 - t0, "loadavg_1min": os.getloadavg()[0],
            "peak_mb": peak_rss_mb(), "baseline_mb": base_mb,
            "shapes": shapes, "available_gb": avail / 1e9}


# ---------------------------------------------------------------------------- benchmark entry
def _fmt_mb(x) -> str:
    return "?" if x is None else f"{x:.0f} MB"


def _repeat(measure, n: int, key: str) -> dict:
    """Run a cold measurement ``n`` times (the machine may be shared): the median run's details,
    plus every time, the largest peak and the load average seen."""
    runs = [measure() for _ in range(n)]
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    ok.sort(key=lambda r: r[key])
    med = dict(ok[(len(ok) - 1) // 2])
    med["all_s"] = [round(r[key], 3) for r in ok]
    med["all_cpu_s"] = [round(r.get("cpu_s", float("nan")), 3) for r in ok]
    med["peak_mb"] = max(r["peak_mb"] for r in ok)
    med["loadavg_1min"] = [r.get("loadavg_1min") for r in ok]
    if len(ok) < len(runs):
        med["failed_runs"] = [r["error"] for r in runs if "error" in r]
    return med


def run(quick: bool = False) -> list[dict]:
    """Rows for the pyramidal file; in a full run also for the same pixels without a pyramid."""
    here = str(Path(__file__).resolve())
    size = "quick" if quick else "full"
    path = ensure_data(size)
    c, y, x = SIZES[size]
    ref = run_child(here, "reference", [str(path), "--level0-bytes", str(c * y * x * 2)])
    target = f"< {TARGET_FIRST_FRAME_S:g} s, peak RSS < {TARGET_PEAK_MB / 1024:g} GB"
    rows = _measure(here, size, path, ref, repeats=1 if quick else 3, suffix="", target=target, time_counts=True)
    if not quick:
        import shutil

        flat = ensure_data("full_flat")
        # a private, empty pyramid cache: the first open below is the uncached one
        os.environ["CARSPATIAL_CACHE_DIR"] = str(DATA_DIR / "pyramid_cache")
        shutil.rmtree(DATA_DIR / "pyramid_cache", ignore_errors=True)
        rows += _measure(here, "full_flat", flat, ref, repeats=1, suffix="_flat",
                         target=f"peak RSS < {TARGET_PEAK_MB / 1024:g} GB (time informative: no pyramid in the file)",
                         time_counts=False, warm=False)
        b = run_child(here, "cache", [str(flat)])
        name = "open_ometiff.pyramid_cache_build_flat"
        tgt = f"peak RSS < {TARGET_PEAK_MB / 1024:g} GB (first open; time = one cold read of the file)"
        if "error" in b:
            rows.append(result(name, ours_s=None, reference=None, reference_s=None, agreement="n/a", target=tgt,
                               met=False, error=b["error"]))
        else:
            rows.append(result(
                name, ours_s=b["total_s"], reference=None, reference_s=None,
                agreement=(f"cached levels {b['levels'][1:]} == tifffile level 0 strided: {b['agreement_ok']}; "
                           f"{b['cache_mb']:.0f} MB on disk"),
                target=tgt, met=bool(b["agreement_ok"] and b["peak_mb"] < TARGET_PEAK_MB), peak_mb=b["peak_mb"],
                cpu_s=b["cpu_s"], details=b))
        rows += _measure(here, "full_flat", flat, ref, repeats=3, suffix="_flat_cached",
                         target=f"< {TARGET_FIRST_FRAME_S:g} s, peak RSS < {TARGET_PEAK_MB / 1024:g} GB "
                                "(second open on: pyramid cache)", time_counts=True, warm=False)
    return rows


def _measure(here: str, size: str, path: Path, ref: dict, *, repeats: int, suffix: str, target: str,
             time_counts: bool, warm: bool = True) -> list[dict]:
    c, y, x = SIZES[size]
    file_gb = path.stat().st_size / 1e9
    data_desc = f"{c}x{y}x{x} uint16, {len(file_levels(size))} level(s) in the file, {file_gb:.2f} GB file"
    shot = str(DATA_DIR / f"first_frame_{size}{suffix}.png")
    head = _repeat(lambda: run_child(here, "headless", [str(path)]), repeats, "total_s")
    gui = _repeat(lambda: run_child(here, "gui", [str(path), "--screenshot", shot], gui=True), repeats,
                  "first_frame_s")
    gui_warm = run_child(here, "gui", [str(path), "--warm"], gui=True) if warm and "error" not in gui else {}

    ref_label = ref.get("reference") or f"reference failed: {ref.get('error')}"
    ref_s = ref.get("time_s")
    common = {"data": data_desc, "file_gb": round(file_gb, 2), "quick": size == "quick",
              "reference_peak_mb": ref.get("peak_mb")}

    def ok(t, peak):
        return peak < TARGET_PEAK_MB and (t < TARGET_FIRST_FRAME_S or not time_counts)

    rows = []
    name = f"open_ometiff.headless{suffix}"
    if "error" in head:
        rows.append(result(name, ours_s=None, reference=ref_label, reference_s=ref_s,
                           agreement="n/a", target=target, met=False, error=head["error"], **common))
    else:
        rows.append(result(
            name, ours_s=head["total_s"], reference=ref_label, reference_s=ref_s,
            agreement=head["agreement"], target=target, met=ok(head["total_s"], head["peak_mb"]),
            peak_mb=head["peak_mb"], cpu_s=head.get("cpu_s"), details=head, **common))

    name = f"open_ometiff.first_frame{suffix}"
    if "error" in gui:
        rows.append(result(name, ours_s=None, reference=ref_label, reference_s=ref_s,
                           agreement="n/a", target=target, met=False, error=gui["error"], **common))
    else:
        agreement = ("frame drawn, non-empty" if gui["screenshot_nonempty"] else "frame drawn but EMPTY")
        agreement += f", level {gui['data_levels_shown']} shown"
        if gui.get("all_channels_s") is not None:
            agreement += f"; all {gui['n_channel_layers']} channel layers in at {gui['all_channels_s']:.2f} s"
        rows.append(result(
            name, ours_s=gui["first_frame_s"], reference=ref_label + " (lower bound)",
            reference_s=ref_s, agreement=agreement, target=target,
            met=ok(gui["first_frame_s"], gui["peak_mb"]) and gui["screenshot_nonempty"],
            peak_mb=gui["peak_mb"], cpu_s=gui.get("cpu_s"), warm_first_frame_s=gui_warm.get("first_frame_s"),
            all_channels_s=gui.get("all_channels_s"),
            warm_peak_mb=gui_warm.get("peak_mb"), details=gui, **common))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 GB file instead of 8.6 GB")
    p.add_argument("--generate", choices=sorted(SIZES), help="only write (or validate) the data file")
    p.add_argument("--child", choices=["headless", "gui", "reference", "cache"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--screenshot", help=argparse.SUPPRESS)
    p.add_argument("--level0-bytes", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.child:
        try:
            if args.child == "headless":
                data = child_headless(args.path, args.warm)
            elif args.child == "gui":
                data = child_gui(args.path, args.warm, args.screenshot)
            elif args.child == "cache":
                data = child_cache_build(args.path)
            else:
                data = child_reference(args.path, args.level0_bytes)
        except Exception as err:  # noqa: BLE001 - reported to the parent as a failed measurement
            log.exception("child %s failed", args.child)
            data = {"error": f"{type(err).__name__}: {err}"}
        write_child_result(args.out, data)
        return 0
    if args.generate:
        print(ensure_data(args.generate))
        return 0
    print(json.dumps(run(args.quick), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
