"""``carspatial cohort-demo OUT/``: write a synthetic trial cohort with planted effects."""

from __future__ import annotations

import sys

NAME = "cohort-demo"
HELP = "write a synthetic CAR T trial cohort (patients pre/post, planted effects, manifest, config)"


def add_arguments(parser) -> None:
    parser.add_argument("outdir", help="output folder")
    parser.add_argument("--patients", type=int, default=10, help="patients, each pre + post (default 10)")
    parser.add_argument("--size", type=int, default=1000, help="slide edge in pixels at 1 µm/px (default 1000)")
    parser.add_argument("--no-image", action="store_true", help="write only masks and tables (faster, smaller)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", action="store_true",
                        help="also run the batch (local Dask cluster) and write the report to OUT/results")


def run(args) -> int:
    from ..cohort.demo_cohort import write_demo_cohort

    paths = write_demo_cohort(args.outdir, n_patients=args.patients, size=args.size, image=not args.no_image,
                              seed=args.seed)
    for k in ("manifest", "config", "gating"):
        sys.stdout.write(f"{k}: {paths[k]}\n")
    if args.run:
        from ..cohort.batch import run_batch
        from ..cohort.report import write_report

        res = run_batch(paths["manifest"], paths["config"], paths["folder"] / "results")
        sys.stdout.write(f"report: {write_report(res.out, seed=args.seed)}\n")
        return 0 if not len(res.failed) else 1
    sys.stdout.write(f"next: carspatial batch {paths['manifest']} --config {paths['config']} "
                     f"-o {paths['folder'] / 'results'}\n")
    return 0
