"""Run every benchmark of the project: ``python benchmarks/run.py [--quick] [--only PATTERN]``.

Discovers ``benchmarks/bench_*.py``; each module exposes ``run(quick: bool) -> list[dict]`` whose
rows carry ``name``, ``ours_s``, ``reference``, ``reference_s``, ``ratio`` (reference_s / ours_s,
None without a reference), ``agreement``, ``target``, ``met`` and optional extras (``peak_mb``, ...).
Every module runs in its own subprocess, so memory numbers are not polluted by other benchmarks
and one crash does not stop the rest (a crashed module is reported as a failed row with its
error). Prints a table and writes ``benchmarks/results/latest.json`` and ``latest.md`` (a
``--quick`` or ``--only`` run writes them to ``benchmarks/_data/results/`` instead, so the
committed results always come from a full run of every benchmark).

Exit status: 0 when every row met its target, 1 otherwise, 2 when nothing matched ``--only``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fnmatch
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
#: where --quick / --only runs write (git-ignored)
PARTIAL_DIR = BENCH_DIR / "_data" / "results"
REQUIRED = ("name", "ours_s", "reference", "reference_s", "ratio", "agreement", "target", "met")
COLUMNS = ("name", "ours", "reference", "ratio", "agreement", "target", "met")

# Runs inside the per-module subprocess: import the module by file, call run(quick), dump JSON.
_CHILD = r"""
import importlib.util, json, logging, sys, traceback
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
path, quick, out = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
sys.path.insert(0, str(__import__("pathlib").Path(path).parent))
try:
    spec = importlib.util.spec_from_file_location(__import__("pathlib").Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.run(quick=quick)
    payload = {"rows": rows}
except BaseException as err:
    payload = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
with open(out, "w") as fh:
    json.dump(payload, fh, default=str)
"""


def discover(only: str | None = None) -> list[Path]:
    """``bench_*.py`` files, sorted; ``only`` is a glob or substring matched against the stem."""
    files = sorted(BENCH_DIR.glob("bench_*.py"))
    if only:
        pat = only if any(ch in only for ch in "*?[") else f"*{only}*"
        files = [f for f in files if fnmatch.fnmatch(f.stem, pat) or fnmatch.fnmatch(f.stem.removeprefix("bench_"), pat)]
    return files


def _failed_row(module: str, error: str) -> dict:
    return {"name": f"{module} (crashed)", "ours_s": None, "reference": None, "reference_s": None,
            "ratio": None, "agreement": "n/a", "target": "runs", "met": False, "error": error,
            "module": module}


def _normalize(row: dict, module: str) -> dict:
    row = dict(row)
    missing = [k for k in REQUIRED if k not in row]
    for k in missing:
        row[k] = None
    if missing:
        row["met"] = False
        row["error"] = (row.get("error") or "") + f" row lacks fields {missing}"
    if row.get("ratio") is None and row.get("reference_s") and row.get("ours_s"):
        row["ratio"] = float(row["reference_s"]) / float(row["ours_s"])
    row["met"] = bool(row["met"])
    row.setdefault("module", module)
    return row


def run_module(path: Path, quick: bool, timeout: float, verbose: bool = True) -> tuple[list[dict], float]:
    """Run one benchmark module in a fresh interpreter; never raises."""
    module = path.stem
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), "1" if quick else "0", out],
        cwd=BENCH_DIR.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        start_new_session=True,  # its own process group: a timeout also ends its children (Xvfb, ...)
    )
    killed: list[bool] = []

    def _kill():  # a hung benchmark must not hang the whole run
        killed.append(True)
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, _kill)
    timer.start()
    tail: list[str] = []
    try:
        for line in proc.stdout:  # stream the module's log, keep the end for error messages
            if verbose:
                print(f"    {line.rstrip()}", flush=True)
            tail = (tail + [line.rstrip()])[-8:]
        proc.wait()
    finally:
        timer.cancel()
    timed_out = bool(killed)
    try:
        payload = json.loads(Path(out).read_text())
    except (OSError, json.JSONDecodeError):
        if timed_out:
            payload = {"error": f"timed out after {timeout:.0f} s"}
        else:
            payload = {"error": f"exited with status {proc.returncode} without results: " + " | ".join(tail)}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(out)
    wall = time.perf_counter() - t0
    if "error" in payload:
        tb = payload.get("traceback", "")
        err = payload["error"] + (f"\n{tb.strip().splitlines()[-3:]}" if tb else "")
        return [_failed_row(module, err)], wall
    rows = payload.get("rows")
    if not isinstance(rows, list) or not rows:
        return [_failed_row(module, f"run() returned {type(rows).__name__}, expected a non-empty list of dicts")], wall
    return [_normalize(r, module) if isinstance(r, dict) else _failed_row(module, f"bad row {r!r}") for r in rows], wall


# ---------------------------------------------------------------------------- formatting
def _fmt_s(x) -> str:
    if x is None:
        return "-"
    x = float(x)
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def _cells(row: dict) -> list[str]:
    ours = _fmt_s(row.get("ours_s"))
    if row.get("peak_mb") is not None:
        ours += f" / {float(row['peak_mb']):.0f} MB"
    if row.get("cpu_s") is not None and row.get("ours_s") is not None:
        ours += f" (cpu {_fmt_s(row['cpu_s'])})"
    ref = row.get("reference") or "-"
    if row.get("reference_s") is not None:
        ref = f"{ref}: {_fmt_s(row['reference_s'])}"
        if row.get("reference_peak_mb") is not None:
            ref += f" / {float(row['reference_peak_mb']):.0f} MB"
    ratio = "-" if row.get("ratio") is None else f"{float(row['ratio']):.2f}x"
    agreement = str(row.get("agreement") or "-")
    if row.get("error"):
        agreement = f"ERROR: {str(row['error']).splitlines()[0][:160]}"
    return [str(row["name"]), ours, ref, ratio, agreement, str(row.get("target") or "-"), "yes" if row["met"] else "NO"]


def table_text(rows: list[dict]) -> str:
    cells = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [min(max(len(c[i]) for c in cells), 70) for i in range(len(COLUMNS))]

    def line(c):
        return " | ".join((v if len(v) <= 70 else v[:67] + "...").ljust(w) for v, w in zip(c, widths, strict=False))

    return "\n".join([line(cells[0]), "-+-".join("-" * w for w in widths), *map(line, cells[1:])])


def table_markdown(rows: list[dict], meta: dict) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = [
        "# Benchmark results",
        "",
        (f"{meta['when']} on {meta['machine']} — {'quick' if meta['quick'] else 'full'} run, "
        f"{meta['n_met']}/{meta['n_rows']} targets met. Generated by `python benchmarks/run.py"
        f"{' --quick' if meta['quick'] else ''}`; see `benchmarks/README.md`. Load average (1/5/15 min) "
        f"at start {meta['loadavg_start']}, at end {meta['loadavg_end']} on {os.cpu_count()} CPUs."),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    out += ["| " + " | ".join(esc(c) for c in _cells(r)) + " |" for r in rows]
    notes = [r for r in rows if r.get("data") or r.get("error")]
    if notes:
        out += ["", "Notes:", ""]
        for r in notes:
            if r.get("data"):
                out.append(f"- `{r['name']}`: data {r['data']}")
            if r.get("error"):
                out.append(f"- `{r['name']}`: error `{str(r['error']).splitlines()[0]}`")
    return "\n".join(out) + "\n"


def _machine() -> str:
    try:
        import psutil

        mem = f", {psutil.virtual_memory().total / 2**30:.0f} GB RAM"
    except ImportError:
        mem = ""
    return f"{platform.node() or 'host'} ({platform.system()} {platform.machine()}, {os.cpu_count()} CPUs{mem}, Python {platform.python_version()})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run every benchmarks/bench_*.py and write benchmarks/results/latest.{json,md}.")
    p.add_argument("--quick", action="store_true", help="small inputs (minutes, not tens of minutes)")
    p.add_argument("--only", metavar="PATTERN", help="run only modules whose name matches (substring or glob)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per module (default 3600)")
    p.add_argument("--no-write", action="store_true", help="print the table only, do not write results/")
    p.add_argument("-q", "--silent", action="store_true", help="do not stream the benchmarks' own log lines")
    args = p.parse_args(argv)

    files = discover(args.only)
    if not files:
        print(f"no benchmarks match {args.only!r} in {BENCH_DIR}", file=sys.stderr)
        return 2
    rows: list[dict] = []
    timings = {}
    load_start = os.getloadavg()
    for f in files:
        print(f"[bench] {f.stem} ({'quick' if args.quick else 'full'}) ...", flush=True)
        mod_rows, wall = run_module(f, args.quick, args.timeout, verbose=not args.silent)
        timings[f.stem] = wall
        print(f"[bench] {f.stem}: {len(mod_rows)} row(s) in {wall:.1f} s", flush=True)
        rows.extend(mod_rows)

    print()
    print(table_text(rows))
    n_met = sum(r["met"] for r in rows)
    meta = {
        "when": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": _machine(),
        "quick": args.quick,
        "only": args.only,
        "modules": {k: round(v, 1) for k, v in timings.items()},
        "n_rows": len(rows),
        "n_met": n_met,
        # the machine may be shared: timings under load are slower than on an idle machine
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        meta["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True,
                                        text=True, check=True).stdout.strip()
    print(f"\n{n_met}/{len(rows)} targets met")
    if not args.no_write:
        # Only a full run of every module may replace the committed results; quick or partial
        # runs go to the git-ignored data folder so they never overwrite them by accident.
        out_dir = RESULTS_DIR if not (args.quick or args.only) else PARTIAL_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "latest.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1, default=str) + "\n")
        (out_dir / "latest.md").write_text(table_markdown(rows, meta))
        print(f"wrote {out_dir / 'latest.json'} and latest.md")
    return 0 if n_met == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
