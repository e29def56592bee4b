"""Workflow control on a real cluster: race-free revoke, reattach, forget, retry, monitoring."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbcanvas as nc
from nbcanvas.errors import ResultNotFound

from . import controltasks as t

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
REPS = 20


def _canvas(kind: str):
    if kind == "chain":
        return nc.chain(t.slow.s(0), *[t.slow.s() for _ in range(30)])
    if kind == "group":
        return nc.group(t.slow.s(i) for i in range(40))
    return nc.chord([t.slow.s(i) for i in range(40)])(t.total.s())


@pytest.mark.parametrize("kind", ["chain", "group", "chord"])
def test_no_step_starts_after_revoke_returns(dask_client, kind):
    for rep in range(REPS):
        r = _canvas(kind).delay()
        store = r.handle.store
        assert store.wait(lambda s: s.counts().get("SUCCESS", 0) >= 1 + rep % 3, 30)
        r.revoke()
        returned = time.time()
        with pytest.raises(nc.TaskRevokedError):
            r.get(timeout=60)
        assert store.wait(lambda s: s.finished(), 60)
        starts = [st.started for st in store._states.values() if st.started]
        late = [s for s in starts if s > returned]
        assert not late, f"rep {rep}: {len(late)} steps started after revoke() returned"
        counts = store.counts()
        assert counts["REVOKED"] > 0 and counts.get("FAILURE", 0) == 0
        assert r.state == "REVOKED"


def terminate_a_running_step() -> None:
    """A chain whose first step spins for 60 s is revoked with ``terminate=True`` while that
    step runs: it is interrupted, and the chain ends REVOKED."""
    r = nc.chain(t.spin.s(60), t.slow.s()).delay()
    first = r.parent
    assert r.handle.store.wait(lambda s: s.state(first.id) == "STARTED", 30)
    t0 = time.monotonic()
    r.revoke(terminate=True)
    with pytest.raises(nc.TaskRevokedError):
        r.get(timeout=30)
    assert time.monotonic() - t0 < 30  # the 60 s loop was interrupted
    assert first.state == "REVOKED" and r.state == "REVOKED"


def test_revoke_terminate_interrupts_a_running_step(dask_client):
    terminate_a_running_step()


def test_revoke_terminate_interrupts_a_fan_out_running_in_place(dask_client):
    """A foreach whose tasks the client believes tiny runs them inside its unit, one after
    another: terminate interrupts the one running, and the others never start."""
    from nbcanvas import store
    before = _made(dask_client, "spin")
    saved = dict(store.DURATIONS)
    store.DURATIONS.update({"collect": 1e-5, "spin": 1e-5})  # believed tiny: in place
    try:
        sig = nc.chain(t.collect.s([60, 60, 60]), nc.foreach(t.spin.s())).freeze()
        r = sig.delay()
    finally:
        store.DURATIONS.clear()
        store.DURATIONS.update(saved)
    body = sig.tasks[1].body.id
    st = r.handle.store
    assert st.wait(lambda s: s.state(f"{body}:0") == "STARTED", 30)
    t0 = time.monotonic()
    r.revoke(terminate=True)
    with pytest.raises(nc.TaskRevokedError):
        r.get(timeout=30)
    assert time.monotonic() - t0 < 30  # the 60 s loop was interrupted
    assert st.wait(lambda s: s.finished(), 30)
    assert [st.state(f"{body}:{i}") for i in range(3)] == ["REVOKED"] * 3
    assert all(st.get(f"{body}:{i}").started is None for i in (1, 2))  # never started
    assert _made(dask_client, "spin") == before  # no dask task of spin's: it ran in place


def test_get_timeout_raises_and_cancels_nothing(dask_client):
    r = t.slow.s(1, delay=1.0).delay()
    with pytest.raises(nc.TimeoutError):
        r.get(timeout=0.05)
    with pytest.raises(TimeoutError):  # also the builtin, for plain except clauses
        r.get(timeout=0.01)
    assert r.get(timeout=30) == 2


def test_await_does_not_block_the_event_loop(dask_client):
    async def main():
        r = t.slow.s(1, delay=0.3).delay()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        task = asyncio.ensure_future(ticker())
        value = await r
        task.cancel()
        g = await nc.group(t.slow.s(i) for i in range(3)).delay()
        return value, ticks, g
    value, ticks, g = asyncio.run(main())
    assert value == 2 and g == [1, 2, 3]
    assert ticks >= 5  # the loop kept running while the result was awaited


def test_seed_monitoring_prints_progress_by_id(dask_client, tmp_path, capsys):
    gate = str(tmp_path / "gate")
    workflow = nc.chord([t.long_step.s(i, gate=gate) for i in range(3)])(t.total.s())
    task = workflow.delay()

    def monitor_workflow(workflow_id):  # the seed's function, verbatim but for the app
        result = t.app.AsyncResult(workflow_id)
        print(f"Status: {result.status}")
        print(f"Progress: {result.info}")

    store = task.handle.store
    assert store.wait(lambda s: s.latest is not None and s.latest[1] == "PROGRESS", 30)
    monitor_workflow(task.id)
    out = capsys.readouterr().out
    assert "Status: PROGRESS" in out and "'total': 10" in out, out
    for i in range(10):
        Path(f"{gate}.{i}").touch()
    assert task.get(timeout=60) == 3


def _py(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_reattach_from_another_process(dask_client):
    r = nc.chord([t.slow.s(i) for i in range(4)])(t.total.s()).delay()
    assert r.get(timeout=60) == 10
    addr = dask_client.scheduler.address
    code = f"""
        import nbcanvas as nc
        from distributed import Client
        client = Client({addr!r})
        for _ in range(10):
            r = nc.AsyncResult({r.id!r})
            print("state", r.state, "result", r.get(timeout=30), "info", r.info)
            print("parent", type(r.parent).__name__, len(r.parent.results), r.parent.get())
            print("structure", r.handle.structure["type"])
            nc.events.drop_store(r.handle.id); nc.handle.drop_handle(r.handle)
    """
    out = _py(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines.count("state SUCCESS result 10 info 10") == 10
    assert lines.count("parent GroupResult 4 [1, 2, 3, 4]") == 10
    assert "structure chord" in lines


def test_workflow_started_elsewhere_is_found_here_and_forgotten(dask_client):
    addr = dask_client.scheduler.address
    out = _py(f"""
        import nbcanvas as nc
        from distributed import Client
        from tests.integration import controltasks as t
        client = Client({addr!r})
        r = nc.chain(t.slow.s(1), t.slow.s()).delay()
        r.get(timeout=60)
        print(r.id)
    """)
    assert out.returncode == 0, out.stderr
    wf = out.stdout.split()[-1]
    r = nc.AsyncResult(wf)
    assert r.get(timeout=30) == 3 and r.state == "SUCCESS"
    assert r.parent.get() == 2
    r.forget()
    with pytest.raises(ResultNotFound):
        nc.AsyncResult(wf).get(timeout=5)


def test_group_result_save_and_restore(dask_client):
    g = nc.group(t.slow.s(i) for i in range(3)).delay().save()
    assert g.get(timeout=30) == [1, 2, 3]
    restored = nc.GroupResult.restore(g.id)
    assert restored.get() == [1, 2, 3] and restored.completed_count() == 3


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("mode", ["eager", "cluster"])
def test_retry_runs_only_what_did_not_succeed(dask_client, tmp_path, mode):
    log, flag = tmp_path / "log", str(tmp_path / "flag")
    wf = nc.chain(t.logged.s([], str(log), "a"),
                  nc.group(t.logged.s(str(log), "g1"), t.flaky.s(str(log), "g2", flag),
                           t.logged.s(str(log), "g3")),
                  t.collect.s(), t.logged.s(str(log), "z"))
    r = wf.apply() if mode == "eager" else wf.delay()
    with pytest.raises(OSError):
        r.get(timeout=30)
    assert r.handle.store.wait(lambda s: s.finished(), 30)
    assert sorted(_lines(log)) == ["a", "g1", "g2", "g3"]
    Path(flag).touch()
    again = r.retry()
    assert again.id == r.id
    assert again.get(timeout=30) == [["a", "g1"], ["a", "g2"], ["a", "g3"], "z"]
    ran = _lines(log)
    assert sorted(ran) == ["a", "g1", "g2", "g2", "g3", "z"]  # every success ran exactly once
    assert r.state == "SUCCESS" and r.handle.store.counts() == {"SUCCESS": 6}


def _made(client, name: str) -> int:
    """How many tasks (or batches) of task ``name`` the scheduler has ever had."""
    return client.run_on_scheduler(lambda dask_scheduler: sum(
        sum(p.state_counts.values()) for prefix, p in dask_scheduler.task_prefixes.items()
        if prefix == name or prefix.startswith(f"{name}_batch")))


@pytest.mark.parametrize("in_place", [False, True])
def test_retry_of_a_foreach_fused_into_its_chain_reruns_only_the_failed_element(
        dask_client, tmp_path, in_place):
    """The steps around a foreach share its unit: a retry re-runs that unit, reusing the steps
    and elements that succeeded, whether the fan-out went through dask or ran in place."""
    from nbcanvas import store
    log, flag = tmp_path / "log", str(tmp_path / "flag")
    wf = nc.chain(t.items.s(3, str(log)), nc.foreach(t.flaky_item.s(str(log), flag, 1)),
                  t.collect.s())
    before = _made(dask_client, "flaky_item")
    saved = dict(store.DURATIONS)
    for name in ("items", "flaky_item", "collect"):
        store.DURATIONS.pop(name, None)
        if in_place:
            store.DURATIONS[name] = 1e-5
    try:
        r = wf.delay()
        with pytest.raises(OSError):
            r.get(timeout=30)
        assert r.handle.store.wait(lambda s: s.finished(), 30)
        assert len({row.key for row in r.handle.nodes.values() if row.key}) == 1  # fused
        assert sorted(_lines(log)) == ["e0", "e1", "e2", "items"]
        Path(flag).touch()
        assert r.retry().get(timeout=30) == [0, 10, 20]
    finally:
        store.DURATIONS.clear()
        store.DURATIONS.update(saved)
    assert sorted(_lines(log)) == ["e0", "e1", "e1", "e2", "items"]  # each success ran once
    assert (_made(dask_client, "flaky_item") == before) is in_place  # in place: no dask task


def test_retry_after_revoke_finishes_the_workflow(dask_client):
    r = nc.chain(t.slow.s(0), *[t.slow.s() for _ in range(20)]).delay()
    assert r.handle.store.wait(lambda s: s.counts().get("SUCCESS", 0) >= 2, 30)
    r.revoke()
    with pytest.raises(nc.TaskRevokedError):
        r.get(timeout=60)
    assert r.handle.store.wait(lambda s: s.finished(), 30)
    done_before = r.handle.store.counts()["SUCCESS"]
    assert r.retry().get(timeout=60) == 21
    assert r.handle.store.counts() == {"SUCCESS": 21} and done_before < 21


def test_retry_from_a_reattached_process(dask_client, tmp_path):
    log, flag = tmp_path / "log", str(tmp_path / "flag")
    r = nc.chain(t.logged.s([], str(log), "a"), t.flaky.s(str(log), "b", flag)).delay()
    with pytest.raises(OSError):
        r.get(timeout=30)
    Path(flag).touch()
    out = _py(f"""
        import nbcanvas as nc
        from distributed import Client
        from tests.integration import controltasks  # registers the tasks here
        client = Client({dask_client.scheduler.address!r})
        print(nc.AsyncResult({r.id!r}).retry().get(timeout=60))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "['a', 'b']"
    assert _lines(log) == ["a", "b", "b"]


def test_reattach_from_a_second_jupyter_kernel(dask_client):
    """A real second kernel (ipykernel via jupyter_client) finds the workflow by id, 10/10."""
    from jupyter_client.manager import start_new_kernel
    r = nc.chain(t.slow.s(1), nc.group(t.slow.s(), t.slow.s()), t.total.s()).delay()
    assert r.get(timeout=60) == 6
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    try:
        code = textwrap.dedent(f"""
            import nbcanvas as nc
            from distributed import Client
            client = Client({dask_client.scheduler.address!r})
            ok = 0
            for _ in range(10):
                r = nc.AsyncResult({r.id!r})
                ok += (r.get(timeout=30) == 6 and r.state == "SUCCESS"
                       and r.parent.get() == [3, 3] and r.parent.parent.get() == 2)
                nc.handle.drop_handle(r.handle); nc.events.drop_store(r.handle.id)
            print("reattached", ok)
        """)
        out: list[str] = []
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda m: out.append(
            m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "reattached 10" in "".join(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_task_sends_to_its_own_cluster_and_waits_off_the_pool(dask_client):
    # delay() inside a task goes to the cluster the task runs on (it used to try to start an
    # embedded LocalCluster inside the worker process and fail)
    assert t.scheduler_seen.delay().get(timeout=60) == dask_client.scheduler.address
    # more tasks waiting on subtasks than worker threads: each waiting thread leaves the pool
    # (secede/rejoin), so the subtasks still find threads; before, this deadlocked until the
    # inner get() timed out
    n = 2 * sum(dask_client.nthreads().values())
    r = nc.group(t.add_one_via_subtask.s(i) for i in range(n)).delay()
    assert r.get(timeout=120) == [i + 1 for i in range(n)]


def test_reattach_keeps_the_events_sent_while_it_looks_the_workflow_up(dask_client, tmp_path,
                                                                       monkeypatch):
    import nbcanvas.submit as submit
    from nbcanvas.cluster import connection
    from tests.waiting import wait_until
    gate = str(tmp_path / "gate")
    r = t.long_step.delay(1, steps=1, gate=gate)
    wf, conn = r.handle.id, connection(t.app)
    assert r.handle.store.wait(lambda s: s.state(r.id) == "PROGRESS", 60)
    nc.events.drop_store(wf)  # as if this were another process that never saw it
    nc.handle.drop_handle(r.handle)
    real = submit.register_store

    def late(store):  # the step ends between the lookup and the store's registration
        Path(f"{gate}.0").touch()
        wait_until(lambda: conn.rpc("nbcanvas_lookup", id=wf)["states"][r.id][0] == "SUCCESS",
                   60, "the step's end in the scheduler's record")
        return real(store)
    monkeypatch.setattr(submit, "register_store", late)
    again = nc.AsyncResult(r.id)
    assert again.handle.store.state(r.id) == "SUCCESS"  # its done event came in the gap
    assert again.get(timeout=60) == 1
    again.forget()
