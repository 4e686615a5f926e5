"""The ``carspatial`` command.

    carspatial demo [--timepoint post|pre] [--seed 0] [--size 4000]   open napari on the demo
    carspatial open PATH [--mask M] [--table T]                         open napari on a sample
    carspatial info PATH [--mask M] [--table T]                         summarise a sample (headless)
    carspatial write-demo OUTDIR [--timepoint post] [--size 1024]      write the demo to files
    carspatial analyze | batch | quantify | ...                         subcommands in ``commands/``

One place for every subcommand (:func:`main`):

* user errors - bad input (:class:`~napari_carspatial.model.SampleError`), a missing file or
  folder, a missing optional package, bad arguments - print one ``ERROR`` line that names the file
  and the problem, exit status 2;
* internal failures print one ``ERROR internal error ...`` line, exit status 1; the traceback only
  with ``-v``;
* logging: the commands' own INFO lines and every warning once (``-q``: warnings and errors
  only; ``-v``: DEBUG, the analysis modules' INFO lines and library messages); libraries
  (distributed, tornado, numba, matplotlib, ...) at WARNING, Python warnings hidden unless ``-v``;
* ``carspatial --version``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import types

log = logging.getLogger("napari_carspatial")

#: exit status of user errors (bad input, missing file / column / package, bad arguments)
EXIT_USER = 2
#: exit status of internal failures
EXIT_INTERNAL = 1
#: libraries whose INFO lines drown the progress bars
NOISY_LOGGERS = ("distributed", "tornado", "bokeh", "asyncio", "numba", "matplotlib", "PIL", "fsspec",
                 "urllib3", "napari", "vispy", "in_n_out", "app_model", "npe2", "h5py", "numcodecs",
                 "zarr", "anndata", "squidpy", "spatialdata", "xarray_schema", "datashader", "ome_zarr")
#: optional packages -> the extra that brings them
EXTRAS = {"distributed": "all", "squidpy": "squidpy", "spatialdata": "all", "spatialdata_io": "all",
          "readimc": "all", "napari": "all", "PyQt6": "all", "qtpy": "all", "sklearn": "all",
          "shapely": "all", "liana": "all", "ome_zarr": "all"}


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


class _Parser(argparse.ArgumentParser):
    """argparse with one ``ERROR`` line (and exit status 2) for bad arguments."""

    def error(self, message):  # noqa: D102 - argparse API
        sys.stderr.write(f"ERROR {self.prog}: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USER)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return v


# --------------------------------------------------------------------------- built-in commands
def _summary(sample) -> str:
    from .model.pixel_size import pixel_size_info

    shp = sample.shape_yx
    px = pixel_size_info(sample)
    lines = [
        f"{sample.name}",
        f"  size:        {shp[0]} x {shp[1]} px (y x)" if shp else "  size:        -",
        f"  pixel size:  {px.value:g} um ({px.source})" if px.value else "  pixel size:  unknown",
        f"  levels:      {len(sample.image)}",
        f"  channels:    {sample.n_channels}: {', '.join(sample.channel_names)}",
        f"  mask:        {'yes' if sample.labels else 'no'}",
        f"  cells:       {sample.n_cells}" if sample.table is not None else
        f"  cells:       no table{'' if sample.labels else ' (no mask either)'}",
    ]
    if sample.table is not None and sample.metadata.get("table_source"):
        lines[-1] += f" ({sample.metadata['table_source']})"
    cmeta = sample.metadata.get("channel_metadata") or []
    tags = [m.get("metal") or m.get("mass") or m.get("fluorophore") for m in cmeta]
    if cmeta and any(tags):
        lines.append("  channel tags: " + ", ".join(f"{m.get('name')} ({t})" if t else str(m.get("name"))
                                                for m, t in zip(cmeta, tags, strict=False)))
    for k, v in sample.metadata.items():
        if k in ("table_source", "channel_metadata"):
            continue
        lines.append(f"  {k + ':':<12} {v}")
    return "\n".join(lines)


def _fit_when_shown(viewer) -> None:
    """Fit the slide once the window has its final size (the docks narrow the canvas)."""
    from qtpy.QtCore import QTimer

    QTimer.singleShot(400, viewer.reset_view)


def _open_viewer(samples, *, title: str, workflow: str = "Review"):
    """A viewer showing ``samples`` (visible channels first) with the docks of ``workflow``.

    The class list (Legend) stays at the top of the right column, the workflow's docks are tabs
    below it (see :mod:`napari_carspatial.widgets.workflows`; the Legend switches workflows).
    """
    import napari

    from .widgets.progressive import add_samples_progressively
    from .widgets.workflows import apply_workflow

    viewer = napari.Viewer(title=title)
    samples = list(samples)
    # many small acquisitions (a steinbock / IMC folder) become one montage with each tile named
    add_samples_progressively(viewer, samples)
    apply_workflow(viewer, workflow)
    viewer.reset_view()   # fit the slide to the canvas that the docks left
    return viewer


def _args_demo(p):
    p.add_argument("--timepoint", choices=["post", "pre", "both"], default="post")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_positive_int, default=None, help="side length in pixels (default about 4000)")


def _run_demo(args) -> int:
    from .datasets import demo_sample

    tps = ["pre", "post"] if args.timepoint == "both" else [args.timepoint]
    samples = [demo_sample(timepoint=tp, seed=args.seed, size=args.size) for tp in tps]
    import napari

    _fit_when_shown(_open_viewer(samples, title="napari-carspatial demo"))
    napari.run()
    return 0


def _args_sample(p):
    p.add_argument("path")
    p.add_argument("--mask")
    p.add_argument("--table")


def _run_open(args) -> int:
    from .io import read_sample

    # layers first: a mask without a table is measured by the Samples dock in a worker
    res = read_sample(args.path, mask=args.mask, table=args.table, measure=False)
    import napari

    _fit_when_shown(_open_viewer(res if isinstance(res, list) else [res], title=f"napari-carspatial: {args.path}"))
    napari.run()
    return 0


def _run_info(args) -> int:
    from .io import read_sample

    res = read_sample(args.path, mask=args.mask, table=args.table)
    for s in res if isinstance(res, list) else [res]:
        _out(_summary(s))
    return 0


def _args_write_demo(p):
    p.add_argument("outdir")
    p.add_argument("--timepoint", choices=["post", "pre"], default="post")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_positive_int, default=None)


def _run_write_demo(args) -> int:
    from .datasets import write_demo

    paths = write_demo(args.outdir, timepoint=args.timepoint, seed=args.seed, size=args.size)
    for k, v in (paths.items() if isinstance(paths, dict) else enumerate(paths)):
        _out(f"{k}: {v}")
    return 0


#: the commands defined here (the others live in ``commands/``), in the modules' shape
BUILTINS = {
    "demo": types.SimpleNamespace(NAME="demo", HELP="open napari with the bundled synthetic demo and the plugin's widgets",
                                  add_arguments=_args_demo, run=_run_demo),
    "open": types.SimpleNamespace(NAME="open", HELP="open napari on a sample (file or folder)",
                                  add_arguments=_args_sample, run=_run_open),
    "info": types.SimpleNamespace(NAME="info", HELP="print what a sample contains (no GUI)",
                                  add_arguments=_args_sample, run=_run_info),
    "write-demo": types.SimpleNamespace(NAME="write-demo", HELP="write the demo as OME-TIFF + mask + h5ad to a folder",
                                        add_arguments=_args_write_demo, run=_run_write_demo),
}


def _command_modules() -> list:
    """Subcommand modules in ``napari_carspatial.commands`` (see its docstring)."""
    import importlib
    import pkgutil

    from . import commands

    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        if all(hasattr(mod, a) for a in ("NAME", "HELP", "add_arguments", "run")):
            mods.append(mod)
    return mods


def commands() -> dict:
    """Every subcommand: ``{name: object with NAME, HELP, add_arguments(parser), run(args)}``."""
    out = dict(BUILTINS)
    for mod in _command_modules():
        out[mod.NAME] = mod
    return out


def _version() -> str:
    from . import __version__

    return __version__


def _parser(cmds: dict | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog="carspatial", description="Review multiplexed CAR T tissue images in napari.")
    p.add_argument("--version", action="version", version=f"carspatial {_version()}")
    _verbosity(p)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, cmd in (cmds or commands()).items():
        sp = sub.add_parser(name, help=cmd.HELP, description=cmd.HELP)
        _verbosity(sp, default=argparse.SUPPRESS)
        cmd.add_arguments(sp)
    return p


def _verbosity(p, default=None) -> None:
    g = p.add_mutually_exclusive_group()
    kw = {} if default is None else {"default": default}
    g.add_argument("-v", "--verbose", action="store_true", help="debug output and tracebacks", **kw)
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only", **kw)


# --------------------------------------------------------------------------- logging
class _OneLine(logging.Formatter):
    """``LEVEL message`` on one line (newlines in messages become spaces)."""

    def format(self, record):
        s = super().format(record)
        if record.exc_info or record.stack_info:
            return s
        return " ".join(s.split("\n"))


class _Terminal(logging.Filter):
    """What reaches the terminal: the commands' own INFO lines (the analysis modules' INFO lines go
    to log files such as batch.log only), warnings once each, everything with ``-v``."""

    def __init__(self, *, verbose: bool, quiet: bool):
        super().__init__()
        self.verbose, self.quiet = verbose, quiet
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        if record.levelno >= logging.WARNING:
            msg = record.getMessage()
            key = "pixel size" if ("no pixel size known" in msg or "pixel size unknown" in msg) else msg
            if key in self.seen:
                return False
            self.seen.add(key)
            return True
        if self.quiet:
            return False
        return record.name in ("napari_carspatial", "napari_carspatial.cli") or \
            record.name.startswith("napari_carspatial.commands")


def configure_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Log setup of the command line: see the module docstring."""
    if not verbose:
        # distributed reads its log levels from the dask config when it is first imported
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_carspatial", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._carspatial = True
    handler.setFormatter(_OneLine("%(levelname)s %(message)s"))
    handler.addFilter(_Terminal(verbose=verbose, quiet=quiet))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose else logging.ERROR)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _missing_package(err: ImportError) -> str | None:
    name = (getattr(err, "name", None) or "").split(".")[0]
    if not name or name == "napari_carspatial":
        return None
    extra = EXTRAS.get(name, "all")
    return (f"this command needs the optional package {name!r}, which is not installed: "
            f"pip install 'napari-carspatial[{extra}]'")


def main(argv: list[str] | None = None) -> int:
    cmds = commands()
    try:
        args = _parser(cmds).parse_args(argv)
    except SystemExit as stop:  # --help, --version, bad arguments (one ERROR line already printed)
        return int(stop.code or 0)
    verbose = bool(getattr(args, "verbose", False))
    configure_logging(verbose=verbose, quiet=bool(getattr(args, "quiet", False)))
    from .model import SampleError

    try:
        return int(cmds[args.command].run(args) or 0)
    except SampleError as err:
        log.error("%s", _one_line(err))
        return EXIT_USER
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError) as err:
        where = err.filename or ""
        log.error("%s%s", f"{where}: " if where else "", _one_line(err.strerror or err))
        return EXIT_USER
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as err:  # noqa: BLE001 - the one place internal failures become an exit status
        msg = _missing_package(err) if isinstance(err, ImportError) else None
        if msg is not None:
            log.error("%s", msg)
            if verbose:
                log.exception("import failed")
            return EXIT_USER
        log.error("internal error in `carspatial %s`: %s: %s%s", args.command, type(err).__name__,
                  _one_line(err)[:400], "" if verbose else " (run with -v for the traceback)")
        if verbose:
            log.exception("traceback")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
