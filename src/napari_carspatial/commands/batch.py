"""``carspatial batch MANIFEST --config ANALYSIS.yaml -o RESULTS/``: the analysis over a cohort."""

from __future__ import annotations

import logging
import sys

NAME = "batch"
HELP = "run the analysis over every sample of a cohort manifest (Dask), then statistics and an HTML report"

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("manifest", help="cohort manifest (CSV / YAML; see docs/cohorts.md)")
    parser.add_argument("--config", "-c", default=None, help="analysis config YAML (default: built-in defaults)")
    parser.add_argument("-o", "--out", default="results", help="results folder (default: ./results)")
    parser.add_argument("--scheduler", default=None,
                        help="address of an existing Dask scheduler (tcp://host:8786); 'sequential' runs in "
                             "this process; default: a local cluster")
    parser.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default 2)")
    parser.add_argument("--force", action="store_true", help="recompute samples that already finished")
    parser.add_argument("--no-report", action="store_true", help="skip statistics and the HTML report")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap confidence intervals")
    parser.add_argument("--review", default=None,
                        help="review project folder (carspatial project): adds reader agreement to the report")


def run(args) -> int:
    from ..cohort.batch import run_batch

    res = run_batch(args.manifest, args.config, args.out, scheduler=args.scheduler, workers=args.workers,
                    force=args.force, progress=not args.no_progress)
    out = sys.stdout
    out.write(f"{len(res.done)} sample(s) analysed, {len(res.skipped)} skipped (finished before), "
              f"{len(res.failed)} failed in {res.seconds:.1f} s on {res.scheduler}\n")
    out.write(f"metrics: {res.out / 'metrics.csv'} ({len(res.metrics)} rows)\n")
    if len(res.failed):
        out.write(f"failures: {res.out / 'failures.csv'}\n")
        for r in res.failed.itertuples():
            out.write(f"  {r.sample} ({r.stage}): {r.error}\n")
    if not args.no_report and len(res.metrics):
        from ..cohort.report import write_report

        rep = write_report(res.out, seed=args.seed, review=args.review)
        out.write(f"statistics: {res.out / 'statistics.csv'}\nreport: {rep}\n")
    return 0 if not len(res.failed) else 1
