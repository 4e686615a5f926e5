"""``carspatial pyramid IMAGE``: build the multiscale cache of a slide stored without a pyramid."""

from __future__ import annotations

import logging
import sys

NAME = "pyramid"
HELP = "cache the lower levels of a flat (pyramid-less) slide so that later opens are fast"

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("image", help="flat OME-TIFF / TIFF")
    parser.add_argument("--clear", action="store_true", help="delete every cached pyramid instead")


def run(args) -> int:
    import time

    from ..io import pyramid_cache as pc
    from ..io.tiff import read_tiff

    if args.clear:
        n = pc.clear_pyramid_cache()
        sys.stdout.write(f"removed {n} cached pyramid(s) from {pc.cache_root()}\n")
        return 0
    level0 = read_tiff(args.image).levels[0]
    if not pc.needs_pyramid_cache(level0):
        sys.stdout.write(f"{args.image}: small enough ({level0.shape[-2]} x {level0.shape[-1]} px), no cache needed\n")
        return 0
    t0 = time.perf_counter()
    entry = pc.build_pyramid_cache(args.image, level0)
    sys.stdout.write(f"{args.image}: pyramid cached in {time.perf_counter() - t0:.1f} s at {entry}\n")
    return 0
