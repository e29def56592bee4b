"""Fixtures of the reliability suite: dedicated clusters that a test may break.

The session's ``dask_client`` (tests/conftest.py) runs the workflows that do not hurt their
cluster; a test that kills a worker, restarts one, starves one of memory or kills the scheduler
gets a cluster of its own, and its own ``App(client=...)`` (``rtasks.tasks_for``), so nothing
it breaks is seen by another test. Every wait has a timeout.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import cluster_comm
from tests.waiting import dask_cli, scheduler_address, stop_processes

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def local_cluster(n_workers: int = 2, config: dict[str, Any] | None = None,
                  **kwargs: Any) -> Iterator[Any]:
    """A LocalCluster of its own (worker processes under nannies) and a client for it that is
    not the default one (the session's client stays current for the other tests)."""
    import dask
    from distributed import Client, LocalCluster
    with dask.config.set({"distributed.scheduler.worker-saturation": "inf", **(config or {})}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.CRITICAL,
                               **{**cluster_comm(), **kwargs})
        client = Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(n_workers, timeout=60)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=20)
        with contextlib.suppress(Exception):
            cluster.close(timeout=20)


class CliCluster:
    """A scheduler and workers started with the ``dask`` CLI, as separate processes."""

    def __init__(self, tmp: Path, n_workers: int = 2) -> None:
        cli = dask_cli()
        sched_file = tmp / "scheduler.json"
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.scheduler = subprocess.Popen(
            [cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
             ":0", "--scheduler-file", str(sched_file)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers: list[subprocess.Popen[bytes]] = []
        try:
            address = scheduler_address(sched_file, self.scheduler)
        except AssertionError as e:
            self.stop()
            raise RuntimeError(f"the dask scheduler did not start: {e}") from None
        self.address: str = address
        for _ in range(n_workers):
            self.workers.append(subprocess.Popen(
                [cli, "worker", address, "--nthreads", "1", "--no-dashboard"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def kill_scheduler(self) -> None:
        self.scheduler.send_signal(signal.SIGKILL)
        self.scheduler.wait(timeout=30)

    def stop(self) -> None:
        # Workers of a dead scheduler have nothing to hand over: no graceful shutdown.
        sig = signal.SIGKILL if self.scheduler.poll() is not None else signal.SIGTERM
        stop_processes([self.scheduler, *self.workers], sig)


@pytest.fixture
def cli_cluster(tmp_path: Path) -> Iterator[Callable[..., CliCluster]]:
    """``cli_cluster(n_workers=2)``: start a CLI cluster; stopped at the end of the test."""
    started: list[CliCluster] = []

    def start(n_workers: int = 2) -> CliCluster:
        c = CliCluster(tmp_path, n_workers)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


@pytest.fixture
def quiet_distributed() -> Iterator[None]:
    """A test that breaks a cluster on purpose: distributed's expected complaints stay out of
    the output (its loggers are restored afterwards)."""
    names = ["distributed", "distributed.client", "distributed.nanny", "distributed.worker",
             "distributed.scheduler", "distributed.core", "distributed.comm"]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def settle(result: Any, timeout: float = 60.0) -> Any:
    """Wait until every step of the workflow (callbacks included) is in a final state."""
    store = result.handle.store
    if not store.wait(lambda s: s.finished(), timeout):
        raise TimeoutError(f"workflow {result.handle.id} did not finish in {timeout} s: "
                           f"{dict(store.counts())}")
    return result


def chain_states(result: Any) -> list[str]:
    """States from the last step of a chain back to its first (walking ``.parent``)."""
    states, node = [], result
    while node is not None:
        states.append(node.state)
        node = node.parent
    return states
