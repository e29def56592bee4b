"""Shared fixtures: a real LocalCluster (2 worker processes, 1 thread each) per test session."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("DASK_DISTRIBUTED__WORKER__DAEMON", "False")
# distributed logs every worker start and stop at INFO; keep test output about the tests.
logging.getLogger("distributed").setLevel(logging.ERROR)


def cluster_comm() -> dict[str, str]:
    """``NBCANVAS_TEST_COMM=nbtcp`` runs the test clusters over nbcanvas.comm's ``nbtcp://``
    (as the embedded cluster's worker processes talk), instead of distributed's ``tcp://``."""
    scheme = os.environ.get("NBCANVAS_TEST_COMM", "").strip()
    return {"protocol": f"{scheme}://"} if scheme else {}


@pytest.fixture(scope="session")
def dask_client() -> Iterator[object]:
    """A real LocalCluster with two worker processes, as the standards ask."""
    import dask
    from distributed import Client, LocalCluster
    with dask.config.set({"distributed.scheduler.worker-saturation": "inf"}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR,
                               **cluster_comm())
        client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def threads_client() -> Iterator[object]:
    """nbcanvas's own embedded cluster with ``nbcanvas.embedded.pool: threads`` (its workers in
    this process), started as a notebook starts it; its client."""
    import dask

    from nbcanvas import cluster, embedded
    with dask.config.set({"nbcanvas.embedded.pool": "threads"}):
        client = embedded.start()
        cluster._for_client(client, embedded=True)
    client.wait_for_workers(2, timeout=60)
    yield client
    cluster.close_embedded()


def by_value(*modules: object) -> None:
    """Pickle the functions of ``modules`` by value (test modules are not importable on workers)."""
    import cloudpickle
    for m in modules:
        cloudpickle.register_pickle_by_value(m)
