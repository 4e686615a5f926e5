"""Where Dask work runs: in this process for small jobs, a local cluster for big ones, or a given
scheduler. Used by ``carspatial quantify``; offered to the batch (:func:`pick_scheduler`).

Why a threshold and not always a cluster: the numba kernels release the GIL, so the local
threaded scheduler already uses every core; a ``LocalCluster`` only adds its start-up
(1-3 s with threads, 5-15 s with worker processes on the 2-core test machine) and pays off when
the work is long enough that its memory-aware scheduling, spilling and crash isolation matter:
whole slides, cohorts. One 1024 x 1024 field must not wait seconds for a cluster to start.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

__all__ = ["IN_PROCESS_MAX_BYTES", "Scheduler", "pick_scheduler"]

#: work (bytes of input pixels) up to which :func:`pick_scheduler` stays in this process
IN_PROCESS_MAX_BYTES = 2 * 2**30


@dataclass
class Scheduler:
    """The chosen place to run Dask work; a context manager that closes what it started.

    Attributes
    ----------
    kind
        ``"in-process"`` (local threads, nothing started), ``"local-cluster"`` (a
        ``distributed.LocalCluster`` started here) or ``"address"`` (an existing scheduler).
    scheduler
        What to pass on: ``"threads"`` for in-process work (``dask.compute(scheduler=...)``,
        :func:`~napari_carspatial.analysis.quantify`), else the ``distributed.Client``.
    description
        One line for logs and run records, e.g. ``"in-process (45 MB of pixels < 2.0 GB)"``.
    """

    kind: Literal["in-process", "local-cluster", "address"]
    scheduler: Any
    description: str
    client: Any = None
    cluster: Any = field(default=None, repr=False)

    @property
    def distributed(self) -> bool:
        """Work goes to ``distributed`` workers (inputs must be picklable / re-openable there)."""
        return self.client is not None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def pick_scheduler(work_bytes: int, *, address: str | None = None, workers: int | None = None,
                   threads_per_worker: int = 1, processes: bool = False,
                   in_process_max_bytes: int | None = None) -> Scheduler:
    """Choose where Dask work of ``work_bytes`` runs, and start it if needed.

    Parameters
    ----------
    work_bytes
        Size of the work, in bytes of input pixels (e.g. image level 0 + mask); for a cohort the
        sum over its samples.
    address
        An existing Dask scheduler (``"tcp://host:8786"``): always used when given.
    workers
        Workers of a local cluster (default: ``min(2, CPUs)``).
    threads_per_worker
        Threads per local-cluster worker.
    processes
        Local-cluster workers as processes (crash isolation, no shared GIL) instead of threads.
    in_process_max_bytes
        Threshold; default :data:`IN_PROCESS_MAX_BYTES` or the environment variable
        ``CARSPATIAL_IN_PROCESS_MAX_BYTES``.

    Returns
    -------
    Scheduler
        Use it as a context manager (``with pick_scheduler(n) as s: ...``) so a cluster it
        started is closed.
    """
    if address:
        from distributed import Client

        client = Client(address, timeout="20s")
        return Scheduler("address", client, f"scheduler at {address}", client=client)
    limit = in_process_max_bytes
    if limit is None:
        limit = int(os.environ.get("CARSPATIAL_IN_PROCESS_MAX_BYTES", IN_PROCESS_MAX_BYTES))
    if work_bytes <= limit:
        return Scheduler("in-process", "threads",
                         f"in-process threads ({_fmt(work_bytes)} of pixels <= {_fmt(limit)})")
    from distributed import Client, LocalCluster

    n = workers or max(1, min(2, os.cpu_count() or 1))
    cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=processes,
                           dashboard_address=None, silence_logs=logging.WARNING)
    client = Client(cluster)
    kind = "processes" if processes else "threads"
    return Scheduler("local-cluster", client,
                     f"LocalCluster({n} workers x {threads_per_worker} thread, {kind}; "
                     f"{_fmt(work_bytes)} of pixels > {_fmt(limit)})", client=client, cluster=cluster)
