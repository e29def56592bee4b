"""Where workflows run: explicit client, current client, env address, embedded cluster, CLI."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbcanvas as nc
from nbcanvas.cluster import connection
from tests.waiting import dask_cli, scheduler_address, stop_processes, wait_until

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]

app = nc.App("it-cluster", set_as_current=False)


@app.task(name="it.add")
def add(x, y):
    return x + y


@app.task(name="it.tsum")
def tsum(xs):
    return sum(xs)


def test_explicit_client_wins(dask_client):
    other = nc.App("explicit", client=dask_client, set_as_current=False)
    assert connection(other).client is dask_client
    assert (add.s(1, 2) | add.s(3)).delay().get(timeout=30) == 6


def test_current_client_used(dask_client):
    assert connection(app).client is dask_client  # dask_client is the current Client


def test_connect_refuses_garbage():
    with pytest.raises(nc.ImproperlyConfigured):
        nc.App("bad", set_as_current=False).connect(42)


def test_dead_address_fails_fast_and_clearly():
    bad = nc.App("dead", address="tcp://127.0.0.1:9", set_as_current=False)
    t0 = time.monotonic()
    with pytest.raises(nc.ImproperlyConfigured, match="could not reach a dask scheduler"):
        connection(bad)
    assert time.monotonic() - t0 < 30  # bounded by the connect timeout, not a hang


def _run(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    # faulthandler: a crash (one exit with work in flight died of SIGSEGV once, in finalisation)
    # shows its threads' stacks in the assertion message
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_embedded_cluster_started_on_first_use_and_closed_quietly():
    code = """
        import nbcanvas as nc
        @nc.task
        def add(x, y):
            return x + y
        r = (add.s(2, 2) | add.s(4)).delay()
        print("result", r.get(timeout=60))
        print("empty", nc.group([]).delay().get(timeout=60))  # done at once: not "running"
        from nbcanvas.cluster import connection
        from nbcanvas.embedded import _embedded
        print("workers", len(_embedded[0].workers))
        client, conn = nc.connect(), connection()
        # this process's client talks to the scheduler in memory; other processes use TCP,
        # the worker processes nbtcp:// (nbcanvas.comm), which they find by its entry point
        print("comms", client.scheduler.address.split("://")[0], conn.address.split("://")[0],
              client.scheduler_info()["address"] == conn.address)
        print("worker comms", sorted({type(c.comm).__name__ for c in
                                      _embedded[0].scheduler.stream_comms.values()}),
              sorted({a.split("://")[0] for a in _embedded[0].scheduler.workers}))
        # ... through a Unix socket beside each loopback listener (nbcanvas.localsock)
        socks = [c.comm._stream.transport.get_extra_info("socket")
                 for c in _embedded[0].scheduler.stream_comms.values()]
        print("worker sockets", sorted({s.family.name for s in socks}))
        # a worker process packs its messages from a small buffer (nbcanvas.leansend), the
        # kernel, whose malloc is dask's default, as distributed does
        def packer():
            import distributed.protocol.core as core
            return type(core.msgpack).__name__
        import distributed.protocol.core as core
        print("packers", sorted(set(client.run(packer).values())), type(core.msgpack).__name__)
        print("dashboard", client.dashboard_link.startswith("http://"))
        sched = _embedded[0].scheduler  # no stream keeps copies of what it sent
        streams = [client.scheduler_comm, sched.client_comms[client.id],
                   *sched.stream_comms.values()]
        print("message logs", sum(len(s.recent_message_log) for s in streams), len(streams))
        async def loop_kind():
            import asyncio
            return type(asyncio.get_running_loop()).__module__.split(".")[0]
        kinds = set(client.run(loop_kind).values())
        kinds.add(type(client.loop.asyncio_loop).__module__.split(".")[0])
        print("loops", sorted(kinds))
        @nc.task
        def upto(n):
            return list(range(n))
        @nc.task
        def inc(x):  # not timed yet: its fan-out goes through dask, not in place
            return x + 1
        # a fan-out made at run time goes through a worker's own client: no batching delay
        # there either, nor on the scheduler's stream back to it
        print("fan-out", (upto.s(6) | nc.foreach(inc.s())).delay().get(timeout=60))
        @nc.task
        def big(n):  # over 64 MiB: a worker process sends it to the scheduler in shards
            import numpy as np
            return np.ones(n, dtype="int64")
        x = big.delay(9_000_000).get(timeout=60)
        print("big", x.nbytes, int(x.sum()))
        def own(dask_worker):
            c = getattr(dask_worker, "_client", None)
            return None if c is None else c.scheduler_comm.interval
        owns = [v for v in client.run(own).values() if v is not None]
        print("worker clients", len(owns) > 0, set(owns), len(sched.client_comms) > 1,
              {s.interval for s in sched.client_comms.values()})
        # at exit the worker processes go quiet before the cluster closes
        import logging
        from nbcanvas.embedded import _quiet_workers
        _quiet_workers(client)
        print("quiet workers", set(client.run(
            lambda: logging.getLogger("distributed.worker").level).values()))
    """
    env = {"DASK_SCHEDULER_ADDRESS": ""}
    out = _run(code, env)
    assert out.returncode == 0, out.stderr
    assert "result 8" in out.stdout and "empty []" in out.stdout
    from dask.system import CPU_COUNT
    assert f"workers {CPU_COUNT}" in out.stdout
    assert "comms inproc tcp True" in out.stdout and "dashboard True" in out.stdout
    assert "worker comms ['LeanComm'] ['nbtcp']" in out.stdout, out.stdout
    assert "worker sockets ['AF_UNIX']" in out.stdout, out.stdout
    assert "packers ['SmallPacker'] module" in out.stdout, out.stdout
    assert f"message logs 0 {2 + CPU_COUNT}" in out.stdout
    assert "loops ['uvloop']" in out.stdout  # the scheduler's thread and every worker
    assert "fan-out [1, 2, 3, 4, 5, 6]" in out.stdout
    assert "big 72000000 9000000" in out.stdout, out.stderr[-2000:]  # whole, not truncated
    assert "worker clients True {0.0} True {0.0}" in out.stdout, out.stdout
    assert f"quiet workers {{{logging.CRITICAL + 1}}}" in out.stdout, out.stdout
    assert "Traceback" not in out.stderr and "ERROR" not in out.stderr, out.stderr
    assert "nbcanvas:" not in out.stderr  # nothing was left running


@pytest.mark.skipif(shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"),
                    reason="needs taskset (util-linux) to limit the process to one core")
def test_embedded_cluster_has_a_worker_per_core_this_process_may_use():
    """As in a container with a CPU quota (Binder): the host's core count is not ours."""
    code = textwrap.dedent("""
        import os
        import nbcanvas as nc
        from nbcanvas.embedded import _embedded
        nc.connect()
        print("allowed", len(os.sched_getaffinity(0)), "host", os.cpu_count(),
              "workers", len(_embedded[0].workers))
    """)
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "DASK_SCHEDULER_ADDRESS": ""})
    assert out.returncode == 0, out.stderr
    assert f"allowed 1 host {os.cpu_count()} workers 1" in out.stdout, out.stdout


def test_the_kernel_keeps_its_environment_when_worker_processes_start():
    """dask's nannies set OMP_NUM_THREADS=1 (and MKL's, OpenBLAS's, malloc's trim threshold,
    PYTHONHASHSEED) in the spawning process's environment and leave them: in a kernel, NumPy
    imported afterwards would run on one thread. The worker processes keep them (a value the
    user set is kept everywhere); the kernel gets its own back, after a restart too."""
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED")
    code = f"""
        import os
        import nbcanvas as nc
        from nbcanvas.embedded import _embedded
        KEYS = {keys!r}
        @nc.task
        def env():
            return [os.environ.get(k) for k in KEYS]
        print("workers", env.delay().get(timeout=60))
        print("kernel", [os.environ.get(k) for k in KEYS])
        client = _embedded[1]
        client.restart_workers(list(client.scheduler_info()["workers"]), timeout=60)
        print("restarted", env.delay().get(timeout=60))
        print("kernel", [os.environ.get(k) for k in KEYS])
    """
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env.update({"MKL_NUM_THREADS": "3", "DASK_SCHEDULER_ADDRESS": ""})
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=180, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    workers = "['1', '3', '1', '65536', '6640']"
    assert lines == [f"workers {workers}", "kernel [None, '3', None, None, None]",
                     f"restarted {workers}", "kernel [None, '3', None, None, None]"], out.stdout


def test_exit_with_workflows_in_flight_says_so_once_instead_of_logging_errors():
    code = """
        import time
        import nbcanvas as nc
        @nc.task
        def slow(x):
            time.sleep(30)
            return x
        @nc.task
        def add(x, y):
            return x + y
        print("warm", add.delay(1, 1).get(timeout=60))
        rs = [slow.delay(i) for i in range(10)] + [add.delay(i, 1) for i in range(200)]
        rs[0].state  # the first is at least sent
    """
    out = _run(code, {"DASK_SCHEDULER_ADDRESS": ""})
    assert out.returncode == 0, out.stderr
    assert "warm 2" in out.stdout
    assert "Traceback" not in out.stderr and "ERROR" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("nbcanvas: ")]
    assert len(lines) == 1, out.stderr
    count = int(lines[0].split()[1])
    assert 10 <= count <= 210 and "were stopped with the embedded cluster" in lines[0]


def test_a_kernel_killed_hard_leaves_no_worker_processes():
    """A kernel killed with SIGKILL (as Jupyter does to one that does not shut down in time)
    cannot close its embedded cluster: its worker processes must still go, not run on as
    orphans (distributed's worker processes exit when their parent's pipe closes)."""
    code = textwrap.dedent("""
        import os, signal
        import nbcanvas as nc
        @nc.task
        def pid():
            return os.getpid()
        print("workers", *sorted(set(nc.group(pid.s() for _ in range(20)).delay().get(timeout=60))),
              flush=True)
        signal.pause()  # an idle kernel, until the test kills it
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         cwd=ROOT, env={**os.environ, "DASK_SCHEDULER_ADDRESS": ""})
    try:
        line = p.stdout.readline()  # the kernel's own deadline: get(timeout=60)
        assert line.startswith("workers "), f"the kernel printed {line!r}"
        pids = [int(x) for x in line.split()[1:]]
        assert pids and os.getpid() not in pids and p.pid not in pids
        assert all(_running(q) for q in pids)
    finally:
        p.kill()
        p.wait(timeout=30)

    wait_until(lambda: not any(_running(q) for q in pids), 30,
               "the killed kernel's worker processes exiting")


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for a parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture()
def cli_cluster(tmp_path):
    """A scheduler and two workers started with the `dask` CLI, as a user would."""
    cli = dask_cli()
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [subprocess.Popen([cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        address = scheduler_address(sched_file, procs[0])
        for _ in range(2):
            procs.append(subprocess.Popen([cli, "worker", address, "--nthreads", "1",
                                           "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        from distributed import Client
        with Client(address, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=60)
        yield address
    finally:
        stop_processes(procs)


def test_cli_started_scheduler_runs_seed_workflows(cli_cluster, monkeypatch):
    from tests.integration import clitasks
    cli = nc.App("cli-run", address=cli_cluster, set_as_current=False)
    cli.tasks.update(clitasks.app.tasks)
    # the tasks' own app runs them: on the CLI cluster too (without this, it used whatever
    # this process had: the session's client, or an embedded cluster started here, which
    # then kept a later threads-pool test from starting its own)
    monkeypatch.setattr(clitasks.app, "_target", cli_cluster)
    monkeypatch.setattr(clitasks.app, "_runtime", None)
    try:
        assert connection(cli).nthreads == 2
        assert connection(clitasks.app).address == cli_cluster
        assert clitasks.add.s(2, 2).delay().get(timeout=60) == 4
        g = nc.group(clitasks.process_image.s(i) for i in range(1, 6)).delay()
        assert g.get(timeout=60) == [f"processed_image_{i}" for i in range(1, 6)]
        c = nc.chord([clitasks.add.s(i, i) for i in range(5)])(clitasks.tsum.s()).delay()
        assert c.get(timeout=60) == 20
    finally:
        connection(cli).client.close()
        connection(clitasks.app).client.close()


def test_env_address_used(cli_cluster, monkeypatch):
    out = _run("""
        import nbcanvas as nc
        from tests.integration.clitasks import add
        print("result", add.s(20, 22).delay().get(timeout=60))
        print("addr", nc.connect().scheduler.address)
    """, env={"DASK_SCHEDULER_ADDRESS": cli_cluster})
    assert out.returncode == 0, out.stderr
    assert "result 42" in out.stdout and f"addr {cli_cluster}" in out.stdout
