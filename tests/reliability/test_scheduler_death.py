"""The scheduler dies (issue 12: 6): ``.get(timeout=...)`` raises a clear error, never hangs.

A scheduler and two workers started with the ``dask`` CLI; the scheduler process is killed
(SIGKILL) while a workflow runs. Every result of a workflow lives on the cluster, so it is
lost: ``.get()`` raises ``nbcanvas.errors.WorkflowLost`` naming the workflow and the
scheduler's address -- at once when the client has already noticed, and within the ``get``
timeout (plus slack) in any case -- and ``delay()`` refuses to send until the client is
connected again.
"""
from __future__ import annotations

import threading
import time

import pytest

import nbcanvas as nc
from nbcanvas.errors import WorkflowLost

from .rtasks import tasks_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SLACK = 20.0  # a loaded machine; the bound is "no hang", not speed


@pytest.fixture
def running(cli_cluster, tmp_path, quiet_distributed):
    """A workflow blocked in a step on a CLI cluster: (cluster, client, tasks, result)."""
    from distributed import Client
    cluster = cli_cluster(2)
    # The client gives up reconnecting after 10 s (distributed's default is 30 s).
    client = Client(cluster.address, set_as_default=False, timeout=10)
    client.wait_for_workers(2, timeout=60)
    app = nc.App("sched-death", client=client, set_as_current=False)
    t = tasks_for(app, "sd")
    r = (t.add.si(1, 2) | t.gate.si(str(tmp_path / "never"), 120) | t.add.s(1)).delay()
    gate_id = r.parent.id
    assert r.handle.store.wait(lambda s: s.state(gate_id) == "STARTED", 60)
    try:
        yield cluster, client, t, r
    finally:
        client.close(timeout=10)


def _assert_lost(error: BaseException, result, address: str) -> None:
    assert isinstance(error, WorkflowLost), repr(error)
    text = str(error)
    assert result.handle.id in text and address in text, text
    assert "connection to the scheduler" in text, text


@pytest.mark.timeout(120)
def test_get_with_timeout_after_the_scheduler_died(running):
    cluster, client, t, r = running
    cluster.kill_scheduler()
    for _ in range(2):  # and again: the second call is as clear as the first
        t0 = time.monotonic()
        with pytest.raises(WorkflowLost) as info:
            r.get(timeout=5)
        assert time.monotonic() - t0 < 5 + SLACK
        _assert_lost(info.value, r, cluster.address)
    with pytest.raises(WorkflowLost):
        r.parent.get(timeout=5)
    # No timeout at all: still an error, not a hang (bounded by this test's timeout).
    with pytest.raises(WorkflowLost):
        r.get()


@pytest.mark.timeout(120)
def test_get_blocked_while_the_scheduler_dies(running):
    cluster, client, t, r = running
    outcome: list[BaseException | None] = []
    waiting = threading.Event()

    def wait_for_it() -> None:
        waiting.set()
        try:
            r.get(timeout=60)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - checked below
            outcome.append(e)

    waiter = threading.Thread(target=wait_for_it, daemon=True)
    waiter.start()
    assert waiting.wait(30)
    cluster.kill_scheduler()
    waiter.join(60 + SLACK)
    assert outcome, "get(timeout=60) was still blocked after its timeout"
    _assert_lost(outcome[0], r, cluster.address)  # WorkflowLost, not nc.TimeoutError


@pytest.mark.timeout(120)
def test_delay_refused_while_the_scheduler_is_gone(running):
    cluster, client, t, r = running
    cluster.kill_scheduler()
    with pytest.raises(WorkflowLost):
        r.get(timeout=5)  # by now the client knows
    with pytest.raises(WorkflowLost, match=r"not connected to the scheduler at .* nothing was "
                                           r"sent"):
        t.add.s(1, 2).delay()
