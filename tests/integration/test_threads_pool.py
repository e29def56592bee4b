"""The embedded cluster with ``nbcanvas.embedded.pool: threads``: workers in this process.

The semantic suite runs on it too (the "threads" runner in tests/semantics); here is what
differs from worker processes: addresses, revoke with terminate, tasks that send workflows,
re-attaching from another process, and changing the pool while it runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import pytest

import nbcanvas as nc
from nbcanvas import embedded
from nbcanvas.cluster import scheduler_address

from . import controltasks as t
from .test_control import terminate_a_running_step

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def on_threads(threads_client) -> Iterator[object]:
    """The control tasks' app runs on the threads pool for these tests only."""
    saved = (t.app._target, t.app._runtime)
    t.app.connect(threads_client)
    yield threads_client
    t.app._target, t.app._runtime = saved


def _py(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "DASK_SCHEDULER_ADDRESS": ""})


def test_workers_share_this_process_and_reach_the_scheduler_in_memory(threads_client):
    assert set(threads_client.run(os.getpid).values()) == {os.getpid()}
    from dask.system import CPU_COUNT
    assert len(threads_client.scheduler_info()["workers"]) == CPU_COUNT
    worker_comms = threads_client.run(lambda dask_worker: dask_worker.scheduler.address)
    assert {a.split("://")[0] for a in worker_comms.values()} == {"inproc"}
    assert threads_client.scheduler.address.startswith("inproc://")
    # what other processes are given is TCP, as with worker processes
    assert threads_client.scheduler_info()["address"].startswith("tcp://")
    assert scheduler_address(threads_client).startswith("tcp://")


def test_another_process_reattaches_over_tcp(threads_client):
    r = nc.chord([t.slow.s(i) for i in range(4)])(t.total.s()).delay()
    assert r.get(timeout=60) == 10
    out = _py(f"""
        import nbcanvas as nc
        app = nc.App("elsewhere", address={threads_client.scheduler_info()["address"]!r})
        r = app.AsyncResult({r.id!r})
        print("state", r.state, "result", r.get(timeout=30), "parent", r.parent.get())
    """)
    assert out.returncode == 0, out.stderr
    assert "state SUCCESS result 10 parent [1, 2, 3, 4]" in out.stdout


def test_terminate_interrupts_the_running_step_and_the_workers_go_on(threads_client):
    terminate_a_running_step()
    # each of the two workers got the revoke; the step's thread was interrupted once, and
    # every worker thread still runs tasks (two steps that wait for each other need both)
    n = sum(threads_client.nthreads().values())
    assert nc.group(t.spin.s(0.2) for _ in range(n)).delay().get(timeout=60)
    assert threads_client.run(lambda dask_worker: dask_worker.state.executing_count) == {
        w: 0 for w in threads_client.scheduler_info()["workers"]}


def test_a_task_sends_to_this_cluster_and_waits_off_the_pool(threads_client):
    from distributed.client import _get_global_client
    current = _get_global_client()  # the session's other cluster, or none
    assert t.scheduler_seen.delay().get(timeout=60) == threads_client.scheduler.address
    n = 2 * sum(threads_client.nthreads().values())
    r = nc.group(t.add_one_via_subtask.s(i) for i in range(n)).delay()
    assert r.get(timeout=120) == [i + 1 for i in range(n)]
    assert nc.chain(t.collect.s([1, 2]), nc.foreach(t.slow.s())).delay().get(timeout=60) == [2, 3]
    # the tasks went through this process's in-memory client: no worker made a client of its
    # own and set it as this process's default (as dask's get_client() does)
    assert _get_global_client() is current
    assert set(threads_client.run(lambda dask_worker: dask_worker._client is not None and
                                  dask_worker._client.scheduler.address).values()) == {
        threads_client.scheduler.address}


def test_a_task_runs_the_notebooks_own_function_with_its_globals(threads_client):
    """The workers live here: a task's function is not pickled but sent as itself, so what it
    uses is the notebook's -- a lock (which cannot be pickled), a list it appends to."""
    lock, seen = threading.Lock(), []

    def note(x):
        with lock:
            seen.append(x)
        return x
    app = nc.App("threads-own", set_as_current=False)
    app.connect(threads_client)
    task = app.task(note, name="threads.note")
    assert nc.group(task.s(i) for i in range(6)).delay().get(timeout=60) == list(range(6))
    assert sorted(seen) == list(range(6))
    seen.clear()  # foreach: the canvas decided on the cluster carries the task too
    assert nc.chain(task.s("ab"), nc.foreach(task.s())).delay().get(timeout=60) == ["a", "b"]
    assert sorted(seen) == ["a", "ab", "b"]


def test_a_worker_from_elsewhere_gets_functions_pickled_again(threads_client):
    """A worker started in another process may join the embedded scheduler over TCP: while it
    is there, functions are pickled on the client again, so one that cannot be pickled is
    refused by delay() instead of failing on the scheduler's way to that worker."""
    from nbcanvas.shipping import runs_here
    from tests.waiting import dask_cli, stop_processes, wait_until
    here = len(threads_client.scheduler_info()["workers"])
    assert runs_here(threads_client)
    cli = dask_cli()
    proc = subprocess.Popen([cli, "worker", scheduler_address(threads_client), "--nthreads",
                             "1", "--no-dashboard", "--resources", "outside=1"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = nc.App("threads-outside", set_as_current=False)
    app.connect(threads_client)
    lock = threading.Lock()

    def pid_of(x):
        return x, os.getpid()

    def guarded(x):
        with lock:
            return x
    try:
        threads_client.wait_for_workers(here + 1, timeout=60)
        assert not runs_here(threads_client)
        x, pid = app.task(pid_of, name="outside.pid_of").s(7).set(queue="outside").delay().get(
            timeout=60)
        assert x == 7 and pid != os.getpid()  # ran there (its nanny's child), by value
        with pytest.raises(TypeError, match="task 'guarded': its function cannot be sent"):
            app.task(guarded, name="outside.guarded").s(1).set(queue="outside").delay()
    finally:
        stop_processes([proc])
    wait_until(lambda: len(threads_client.scheduler_info()["workers"]) == here, 30,
               "the outside worker leaving")
    assert runs_here(threads_client)


def test_a_forgotten_workflow_leaves_no_copy_in_this_process(threads_client):
    """Scheduler, workers and client all live here and talk in memory: distributed's streams
    would keep their last 1,000 messages whole (records, graphs, event batches)."""
    import gc
    r = nc.chord([t.slow.s(i, 0.0) for i in range(300)])(t.total.s()).delay()
    wf = r.id
    assert r.get(timeout=60) == sum(range(1, 301))
    r.forget()
    del r

    def copies() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects()
                   if isinstance(o, dict) and o.get("id") == wf and "structure" in o)

    # a message may still be on its way through a stream handler on the cluster's thread (the
    # futures' release follows the forget): what is kept for good never goes, so wait a while
    deadline = time.monotonic() + 10
    while copies() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert copies() == 0
    scheduler = threads_client.cluster.scheduler
    streams = [threads_client.scheduler_comm, scheduler.client_comms[threads_client.id],
               *scheduler.stream_comms.values(),
               *(w.batched_stream for w in threads_client.cluster.workers.values())]
    assert [len(s.recent_message_log) for s in streams] == [0] * len(streams)


def test_asking_for_another_pool_while_it_runs_is_refused(threads_client):
    with dask.config.set({"nbcanvas.embedded.pool": "processes"}):
        with pytest.raises(nc.ImproperlyConfigured, match="already runs with threads"):
            embedded.start()
    with dask.config.set({"nbcanvas.embedded.pool": "threads"}):
        assert embedded.start() is threads_client
    assert embedded.start() is threads_client  # config unset: whatever runs


def test_a_notebook_process_picks_the_pool_from_the_environment():
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os
        import nbcanvas as nc
        @nc.task
        def pid():
            return os.getpid()
        print("same process", pid.delay().get(timeout=60) == os.getpid())
        client = nc.connect()
        print("address", client.scheduler_info()["address"].split("://")[0])
    """)], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "DASK_SCHEDULER_ADDRESS": "", "DASK_NBCANVAS__EMBEDDED__POOL": "threads"})
    assert out.returncode == 0, out.stderr
    assert "same process True" in out.stdout and "address tcp" in out.stdout
    assert "Traceback" not in out.stderr and "ERROR" not in out.stderr, out.stderr


def test_exit_does_not_wait_for_running_tasks():
    """The workers are threads of this process: dask would wait for their running tasks when
    it closes them (dask gives up after about a minute; this exits in a few seconds, and a
    subprocess timeout well above that catches the hang)."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import time
        import nbcanvas as nc
        @nc.task
        def slow(x):
            time.sleep(600)
            return x
        rs = [slow.delay(i) for i in range(4)]
        assert rs[0].handle.store.wait(lambda s: s.state(rs[0].id) == "STARTED", 60)
        print("running")
    """)], capture_output=True, text=True, timeout=45, cwd=ROOT,
        env={**os.environ, "DASK_SCHEDULER_ADDRESS": "", "DASK_NBCANVAS__EMBEDDED__POOL": "threads"})
    assert out.returncode == 0, out.stderr
    assert "running" in out.stdout
    assert "Traceback" not in out.stderr and "ERROR" not in out.stderr, out.stderr
    assert "4 workflow(s) still running at exit were stopped" in out.stderr


def test_a_step_of_closing_that_fails_still_stops_the_event_loop():
    """At exit under load one step of closing can fail; the cluster's event loop thread must
    not be left running while the interpreter finalises (a daemon thread inside the event
    loop's C code at that point can crash the process). The failure is injected."""
    out = _py("""
        import threading
        import nbcanvas as nc
        from nbcanvas import embedded
        @nc.task
        def add(x, y):
            return x + y
        print("sum", add.delay(1, 2).get(timeout=60))
        client = embedded.running()
        def fails(*args, **kwargs):
            raise RuntimeError("injected: closing the client failed")
        client.close = fails
        embedded.close()
        print("loops", [t.name for t in threading.enumerate() if t.name == "IO loop"])
    """)
    assert "sum 3" in out.stdout, out.stderr
    assert "loops []" in out.stdout, out.stdout + out.stderr
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
