"""pick_scheduler: in this process below the threshold, a local cluster above, a given address always."""

from __future__ import annotations

import dask.array as da

from napari_carspatial.analysis.scheduling import pick_scheduler


def test_small_work_stays_in_process(monkeypatch):
    monkeypatch.delenv("CARSPATIAL_IN_PROCESS_MAX_BYTES", raising=False)
    with pick_scheduler(50_000_000) as s:
        assert s.kind == "in-process" and s.scheduler == "threads" and not s.distributed
        assert "in-process" in s.description and "50 MB" in s.description
        assert int(da.ones(10, chunks=5).sum().compute(scheduler=s.scheduler)) == 10
    monkeypatch.setenv("CARSPATIAL_IN_PROCESS_MAX_BYTES", "10")
    with pick_scheduler(0) as s:
        assert s.kind == "in-process"


def test_big_work_starts_a_local_cluster_and_closes_it():
    with pick_scheduler(10, in_process_max_bytes=0, workers=1) as s:
        assert s.kind == "local-cluster" and s.distributed
        assert s.client.submit(lambda x: x + 1, 1).result() == 2
        cluster = s.cluster
        address = s.client.scheduler.address
        with pick_scheduler(0, address=address) as other:  # an address wins over the size
            assert other.kind == "address" and other.client.submit(sum, [1, 2]).result() == 3
    assert cluster.status.name == "closed" and s.client is None
