"""Trial cohorts: manifest, batch analysis on Dask, statistics, HTML report and a demo cohort.

Headless: no napari, no Qt (the cohort widget lives in ``napari_carspatial.widgets.cohort``).

- :func:`read_manifest`: validated cohort manifest (CSV / YAML).
- :func:`run_batch`: the same analysis over every sample (local Dask cluster or a scheduler).
- :func:`cohort_statistics`: paired Wilcoxon, Mann-Whitney, BH-FDR, effect sizes with CIs.
- :func:`write_report`: one self-contained HTML report.
- :func:`write_demo_cohort`: a synthetic cohort with planted effects.

See ``docs/cohorts.md``.
"""

from .batch import BatchConfig, BatchResult, load_config, process_sample, run_batch
from .demo_cohort import cohort_design, write_demo_cohort
from .manifest import Manifest, ManifestError, read_manifest, write_manifest
from .stats import (
    bh_fdr,
    cohort_statistics,
    group_tests,
    hodges_lehmann,
    paired_tests,
    rank_biserial,
)

__all__ = [
    "BatchConfig", "BatchResult", "Manifest", "ManifestError", "bh_fdr", "cohort_design", "cohort_statistics",
    "group_tests", "hodges_lehmann", "load_config", "paired_tests", "process_sample", "rank_biserial",
    "read_manifest", "run_batch", "write_demo_cohort", "write_manifest", "write_report",
]


def __getattr__(name):
    if name == "write_report":
        from .report import write_report

        return write_report
    raise AttributeError(name)
