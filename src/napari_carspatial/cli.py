"""The ``carspatial`` command.

    carspatial demo [--timepoint post|pre] [--seed 0] [--size 4000]   open napari on the demo
    carspatial open PATH [--mask M] [--table T]                         open napari on a sample
    carspatial info PATH [--mask M] [--table T]                         summarise a sample (headless)
    carspatial write-demo OUTDIR [--timepoint post] [--size 1024]      write the demo to files
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("napari_carspatial")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carspatial", description="Review multiplexed CAR T tissue images in napari.")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="open napari with the bundled synthetic demo and the plugin's widgets")
    d.add_argument("--timepoint", choices=["post", "pre", "both"], default="post")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--size", type=int, default=None, help="side length in pixels (default about 4000)")

    o = sub.add_parser("open", help="open napari on a sample (file or folder)")
    o.add_argument("path")
    o.add_argument("--mask")
    o.add_argument("--table")

    i = sub.add_parser("info", help="print what a sample contains (no GUI)")
    i.add_argument("path")
    i.add_argument("--mask")
    i.add_argument("--table")

    w = sub.add_parser("write-demo", help="write the demo as OME-TIFF + mask + h5ad to a folder")
    w.add_argument("outdir")
    w.add_argument("--timepoint", choices=["post", "pre"], default="post")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--size", type=int, default=None)
    for mod in _command_modules():
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
    return p


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


def _summary(sample) -> str:
    shp = sample.shape_yx
    lines = [
        f"{sample.name}",
        f"  size:        {shp[0]} x {shp[1]} px (y x)" if shp else "  size:        -",
        f"  pixel size:  {sample.pixel_size_um:g} um" if sample.pixel_size_um else "  pixel size:  unknown",
        f"  levels:      {len(sample.image)}",
        f"  channels:    {sample.n_channels}: {', '.join(sample.channel_names)}",
        f"  mask:        {'yes' if sample.labels else 'no'}",
        f"  cells:       {sample.n_cells}",
    ]
    if sample.metadata.get("table_source"):
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


def _open_viewer(samples, *, title: str):
    import napari

    from .widgets.channels import ChannelsWidget
    from .widgets.inspector import InspectorWidget
    from .widgets.legend import LegendWidget
    from .widgets.sample_widget import SampleWidget

    viewer = napari.Viewer(title=title)
    from .widgets.progressive import add_samples_progressively

    add_samples_progressively(viewer, list(samples))
    from .widgets.analysis import AnalysisWidget
    from .widgets.curation import CurationWidget
    from .widgets.gating import GatingWidget
    from .widgets.segmentation import SegmentationWidget

    # one tabbed dock on the right; the legend (what the colours mean) is the tab shown first
    docks = [
        (SampleWidget, "Samples"),
        (ChannelsWidget, "Channels"),
        (InspectorWidget, "Cell inspector"),
        (GatingWidget, "Gating"),
        (CurationWidget, "Curation"),
        (SegmentationWidget, "Segmentation"),
        (AnalysisWidget, "Analysis"),
        (LegendWidget, "Legend"),
    ]
    dock = None
    for i, (cls, name) in enumerate(docks):
        dock = viewer.window.add_dock_widget(cls(viewer), name=name, area="right", tabify=i > 0)
    if dock is not None:
        dock.raise_()
    viewer.reset_view()   # fit the slide to the canvas that the docks left
    return viewer


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from .model import SampleError

    try:
        for mod in _command_modules():
            if args.command == mod.NAME:
                return int(mod.run(args) or 0)
        if args.command == "info":
            from .io import read_sample

            res = read_sample(args.path, mask=args.mask, table=args.table)
            for s in res if isinstance(res, list) else [res]:
                _out(_summary(s))
            return 0
        if args.command == "write-demo":
            from .datasets import write_demo

            paths = write_demo(args.outdir, timepoint=args.timepoint, seed=args.seed, size=args.size)
            for k, v in (paths.items() if isinstance(paths, dict) else enumerate(paths)):
                _out(f"{k}: {v}")
            return 0
        if args.command == "demo":
            from .datasets import demo_sample

            tps = ["pre", "post"] if args.timepoint == "both" else [args.timepoint]
            samples = [demo_sample(timepoint=tp, seed=args.seed, size=args.size) for tp in tps]
            import napari

            _fit_when_shown(_open_viewer(samples, title="napari-carspatial demo"))
            napari.run()
            return 0
        if args.command == "open":
            from .io import read_sample

            res = read_sample(args.path, mask=args.mask, table=args.table)
            import napari

            _fit_when_shown(_open_viewer(res if isinstance(res, list) else [res], title=f"napari-carspatial: {args.path}"))
            napari.run()
            return 0
    except SampleError as err:
        log.error("%s", err)
        return 2
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
