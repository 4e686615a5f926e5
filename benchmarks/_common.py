"""Helpers shared by the benchmark modules (not a benchmark itself: no ``bench_`` prefix).

Every ``benchmarks/bench_*.py`` module exposes ``run(quick: bool) -> list[dict]``; each dict is one
result row (see :func:`result`). ``benchmarks/run.py`` runs every module in its own subprocess.

Measurements that need a clean process (peak memory, cold caches, a GUI) can spawn a further
child with :func:`run_child`, which runs ``python <module file> --child <mode> ...`` and reads the
JSON the child writes with :func:`write_child_result`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks")

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "_data"
RESULTS_DIR = BENCH_DIR / "results"
XVFB_SCREEN = "0 1600x1200x24"


def result(
    name: str,
    *,
    ours_s: float | None,
    reference: str | None,
    reference_s: float | None,
    agreement: str,
    target: str,
    met: bool,
    **extras: Any,
) -> dict:
    """One result row in the format ``benchmarks/run.py`` expects.

    ``ratio`` is ``reference_s / ours_s`` (> 1: ours is faster), ``None`` when there is no
    reference. Extras (``peak_mb``, ``notes``, ...) are kept as they are.
    """
    ratio = None
    if reference_s is not None and ours_s:
        ratio = float(reference_s) / float(ours_s)
    row = {
        "name": name,
        "ours_s": None if ours_s is None else float(ours_s),
        "reference": reference,
        "reference_s": None if reference_s is None else float(reference_s),
        "ratio": ratio,
        "agreement": agreement,
        "target": target,
        "met": bool(met),
    }
    row.update(extras)
    return row


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Linux's ``VmHWM`` (``/proc/self/status``) is this process's own high-water mark. ``ru_maxrss``
    is not: it survives ``exec`` and so includes the parent's RSS at fork time, which made child
    measurements report the parent's peak. ``ru_maxrss`` is the fallback elsewhere.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Current resident set size of this process, in MB."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def evict_from_page_cache(path: str | os.PathLike) -> bool:
    """Ask the kernel to drop ``path`` from the page cache (cold-cache timing without root).

    Uses ``posix_fadvise(POSIX_FADV_DONTNEED)``; works for clean pages (the writer fsyncs).
    Returns False where the call is unavailable.
    """
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def free_disk_gb(path: str | os.PathLike) -> float:
    return shutil.disk_usage(path).free / 1e9


def have_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_child(
    module_file: str | os.PathLike,
    mode: str,
    args: list[str] | None = None,
    *,
    gui: bool = False,
    timeout: float = 1800,
) -> dict:
    """Run ``python module_file --child mode ...`` in a fresh process and return its JSON result.

    With ``gui=True`` and no display, the child runs under ``xvfb-run``. Returns
    ``{"error": ...}`` (never raises) when the child fails, so one broken measurement does not hide
    the others.
    """
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [sys.executable, str(module_file), "--child", mode, "--out", out, *(args or [])]
    if gui and not have_display():
        xvfb = shutil.which("xvfb-run")
        if xvfb is None:
            return {"error": "no display and xvfb-run not found; install xvfb or run under a display"}
        cmd = [xvfb, "-a", "-s", f"-screen {XVFB_SCREEN}", *cmd]
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    log.info("child %s: %s", mode, " ".join(cmd))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"child {mode!r} timed out after {timeout:.0f} s"}
    finally:
        wall = time.perf_counter() - t0
    try:
        data = json.loads(Path(out).read_text()) if Path(out).stat().st_size else None
    except (OSError, json.JSONDecodeError):
        data = None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(out)
    if proc.returncode != 0 or data is None:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-6:]
        err = (data or {}).get("error") if isinstance(data, dict) else None
        return {"error": err or f"child {mode!r} exited with {proc.returncode}: " + " | ".join(tail)}
    data.setdefault("child_wall_s", wall)
    return data


def write_child_result(out: str | os.PathLike, data: dict) -> None:
    Path(out).write_text(json.dumps(data, indent=1, default=_json_default))


def _json_default(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def baseline_src(ref: str) -> Path | None:
    """``git archive ref src`` unpacked in ``benchmarks/_data/baseline-<ref>`` (made once; None
    when git cannot): the "before" side of a benchmark measured in the same run."""
    dest = DATA_DIR / f"baseline-{ref}"
    if (dest / "src" / "napari_carspatial" / "__init__.py").is_file():
        return dest / "src"
    dest.mkdir(parents=True, exist_ok=True)
    try:
        arch = subprocess.run(["git", "-C", str(BENCH_DIR.parent), "archive", ref, "src"], check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        log.warning("no baseline source for %s: %s", ref, err)
        return None
    return dest / "src"
