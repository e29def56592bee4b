"""Celery+Redis and Celery eager: the venv, the Redis server, the worker, the driver.

1. ``bench/.celery-venv`` gets ``celery[redis]`` (``python -m venv`` + pip), once: a stamp file
   holding the requirement keeps it between runs.
2. ``redis-server`` on a free loopback port, no persistence; a prefork worker with concurrency 2.
3. ``bench.celery_driver`` runs the workloads with the venv's python (``redis`` mode, then
   ``eager`` mode) and writes JSON.
4. Worker and Redis are stopped by PID (SIGTERM, then SIGKILL) in a ``finally``.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import Sizes
from .common import ROOT, Cell, Procs, free_port, log, na

__all__ = ["run_celery", "ensure_venv", "celery_env", "start_redis", "start_worker",
           "CELERY_REQUIREMENT", "VENV"]

CELERY_REQUIREMENT = "celery[redis]>=5.4,<6"
VENV = ROOT / "bench" / ".celery-venv"
DRIVER_TIMEOUT = 900.0


def ensure_venv(venv: Path = VENV) -> Path:
    """The venv's python, creating the venv and installing Celery if needed."""
    py = venv / "bin" / "python"
    stamp = venv / ".bench-installed"
    if py.exists() and stamp.exists() and stamp.read_text().strip() == CELERY_REQUIREMENT:
        return py
    log(f"creating {venv.relative_to(ROOT)} with {CELERY_REQUIREMENT} (once; about a minute)")
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    CELERY_REQUIREMENT], check=True, timeout=900)
    stamp.write_text(CELERY_REQUIREMENT + "\n")
    return py


def celery_env() -> dict[str, str]:
    """The environment of the Celery venv's processes: the repo importable, this venv's
    settings left out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONHOME", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(procs: Procs, logdir: Path) -> int:
    """``redis-server`` on a free loopback port (no RDB, no AOF); returns the port."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (Debian/Ubuntu: apt-get install "
                           "redis-server; `make bench` installs it)")
    port = free_port()
    with open(logdir / "redis.log", "w") as logf:
        p = procs.start("redis-server", [exe, "--port", str(port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", str(logdir)],
                        stdout=logf, stderr=subprocess.STDOUT)
    end = time.monotonic() + 20
    while not _redis_ping(port):
        if p.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"redis-server did not start: {_tail(logdir / 'redis.log')}")
        time.sleep(0.05)
    return port


def start_worker(procs: Procs, py: Path, env: dict[str, str], logdir: Path) -> Any:
    """``celery -A bench.celery_app worker --pool prefork --concurrency 2`` (driver pings it)."""
    with open(logdir / "worker.log", "w") as logf:
        return procs.start("celery worker", [str(py), "-m", "celery", "-A", "bench.celery_app",
                                             "worker", "--pool", "prefork", "--concurrency", "2",
                                             "--loglevel", "WARNING", "-n", "bench@%h"],
                           cwd=str(ROOT), env=env, stdout=logf, stderr=subprocess.STDOUT)


def _tail(path: Path, n: int = 1200) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _drive(procs: Procs, py: Path, env: dict[str, str], mode: str, s: Sizes, repeat: int,
           logdir: Path) -> dict[str, Cell]:
    out = logdir / f"{mode}.json"
    p = procs.start(f"celery driver ({mode})",
                    [str(py), "-m", "bench.celery_driver", "--mode", mode, "--sizes",
                     json.dumps(s.to_dict()), "--repeat", str(repeat), "--out", str(out)],
                    cwd=str(ROOT), env=env)
    try:
        rc = p.wait(DRIVER_TIMEOUT)
    except subprocess.TimeoutExpired:
        procs.stop(p)
        raise RuntimeError(f"the Celery driver ({mode}) took more than {DRIVER_TIMEOUT:g} s") \
            from None
    procs.stop(p)
    if rc != 0 or not out.exists():
        raise RuntimeError(f"the Celery driver ({mode}) exited with {rc}")
    return json.loads(out.read_text())


def run_celery(s: Sizes, repeat: int) -> dict[str, dict[str, Cell]]:
    """``{"celery-redis": cells, "celery-eager": cells}`` (error cells if something failed)."""
    results: dict[str, dict[str, Cell]] = {}
    try:
        py = ensure_venv()
    except Exception as e:  # noqa: BLE001
        msg = f"error: could not set up {VENV.name}: {type(e).__name__}: {e}"
        return {"celery-redis": {"_error": na(msg)}, "celery-eager": {"_error": na(msg)}}
    logdir = Path(tempfile.mkdtemp(prefix="nbcanvas-bench-celery-"))
    env = celery_env()
    with Procs() as procs:  # stops redis and the worker however this ends
        try:
            port = start_redis(procs, logdir)
            env["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            log(f"redis-server on 127.0.0.1:{port}")
            worker = start_worker(procs, py, env, logdir)
            results["celery-redis"] = _drive(procs, py, env, "redis", s, repeat, logdir)
            if worker.poll() is not None:
                log(f"the Celery worker exited early: {_tail(logdir / 'worker.log')}")
        except Exception as e:  # noqa: BLE001
            log(f"Celery+Redis failed: {e}\nworker log: {_tail(logdir / 'worker.log')}")
            results["celery-redis"] = {"_error": na(f"error: {type(e).__name__}: {e}")}
        try:
            results["celery-eager"] = _drive(procs, py, env, "eager", s, repeat, logdir)
        except Exception as e:  # noqa: BLE001
            results["celery-eager"] = {"_error": na(f"error: {type(e).__name__}: {e}")}
    shutil.rmtree(logdir, ignore_errors=True)
    return results
