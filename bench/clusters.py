"""The LocalClusters the bench runs on: 2 worker processes × 1 thread, as nbcanvas's embedded one.

``worker_saturation`` is dask's ``distributed.scheduler.worker-saturation``: ``"inf"`` (nbcanvas's
embedded setting, "tuned") or ``1.1`` (dask's default).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .common import log

__all__ = ["local_cluster", "quiet_distributed", "N_WORKERS"]

N_WORKERS = 2


def quiet_distributed() -> None:
    """Only errors from distributed's loggers (cluster start/stop chatter would hide the table)."""
    for name in ("distributed", "distributed.nanny", "distributed.worker", "distributed.scheduler",
                 "distributed.core", "distributed.comm", "distributed.batched"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def local_cluster(worker_saturation: str | float = "inf") -> Iterator[Any]:
    """A ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` and its Client.

    The client is not made the default one (nbcanvas must not find it by accident), and both
    are closed on the way out, whatever happens.
    """
    import dask
    from distributed import Client, LocalCluster
    quiet_distributed()
    os.environ.pop("DASK_SCHEDULER_ADDRESS", None)
    with dask.config.set({"distributed.scheduler.worker-saturation": worker_saturation}):
        cluster = LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
    client = None
    try:
        client = Client(cluster, set_as_default=False)
        client.wait_for_workers(N_WORKERS, timeout=60)
        log(f"LocalCluster up ({N_WORKERS} processes × 1 thread, "
            f"worker-saturation {worker_saturation}) at {cluster.scheduler_address}")
        yield client
    finally:
        try:
            if client is not None:
                client.close()
        finally:
            cluster.close()
