"""JupyterLab for the browser tests: a private server, and every process it starts accounted for.

- :func:`start_lab` runs ``sys.executable -m jupyterlab`` (the test's own venv) on a free
  loopback port with a random token, isolated config/data/runtime dirs, quiet user settings
  (no news toast, no autosave, no update check, no extension-manager queries) and its root in a
  scratch copy of the notebooks, so nothing is ever written into the repository.
- Every process the test starts carries ``MARK_ENV=<marker>`` in its environment: the server,
  its kernels and their dask scheduler/nanny/worker processes inherit it from the server, and
  Chromium gets it from ``launch(env=...)``. :func:`marked` finds them all, including any that
  outlived their parent and were re-parented; a :class:`Tracker` also remembers their
  descendants (Chromium's renderers drop the environment) and ends survivors by PID.
- :func:`stop_lab` stops the server by PID: SIGTERM (the server shuts its kernels down, and
  a kernel closes its embedded cluster), then SIGKILL after a grace period.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MARK_ENV = "NBCANVAS_BROWSER_TEST"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab server."""
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    root: Path
    log: Path
    marker: str
    started: float = field(default_factory=time.monotonic)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """``/lab/tree/<path>`` with the token (the first page load sets the login cookie)."""
        return f"{self.base}/lab/tree/{path}?token={self.token}"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"


def _write_settings(settings: Path) -> None:
    def put(plugin: str, data: dict[str, object]) -> None:
        pkg, name = plugin.rsplit(":", 1)
        f = settings / pkg / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(data))
    # "Would you like to get notified about official Jupyter news?" would cover the page;
    # --LabApp.news_url=None does not stop it, this user setting does.
    put("@jupyterlab/apputils-extension:notification", {"fetchNews": "false",
                                                        "checkForUpdates": False})
    # the scratch copy is never saved (and the repository's notebook is never touched at all)
    put("@jupyterlab/docmanager-extension:plugin", {"autosave": False})


def start_lab(root: Path, scratch: Path, marker: str, timeout: float = 45.0) -> Lab:
    """Start JupyterLab serving ``root``; config, logs and settings go to ``scratch``; the
    server and everything it starts carry ``MARK_ENV=marker``."""
    token = secrets.token_hex(16)
    port = free_port()
    settings = scratch / "settings"
    _write_settings(settings)
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(scratch / "config"),
               JUPYTER_DATA_DIR=str(scratch / "data"),
               JUPYTER_RUNTIME_DIR=str(scratch / "runtime"),
               PYDEVD_DISABLE_FILE_VALIDATION="1",
               **{MARK_ENV: marker})
    # the kernels should see what a person's kernel sees, not the test session's settings
    # (tests/conftest.py sets DASK_DISTRIBUTED__WORKER__DAEMON=False for its own clusters)
    for name in ("DASK_DISTRIBUTED__WORKER__DAEMON", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    cmd = [
        sys.executable, "-m", "jupyterlab",
        # another process may take the free port first: the server then tries the next ones,
        # and writes the one it got into runtime/jpserver-<pid>.json
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=20",
        f"--IdentityProvider.token={token}",
        "--ServerApp.allow_root=True",            # root in CI containers; harmless otherwise
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",    # no PyPI queries from the extension manager
        f"--LabApp.workspaces_dir={scratch / 'workspaces'}",
        f"--LabApp.user_settings_dir={settings}",
    ]
    log = scratch / "lab.log"
    with open(log, "wb") as out:
        # a simple command, not `cd ... && jupyter lab &`: proc.pid is the server itself
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    lab = Lab(proc, port, token, root, log, marker)
    info = scratch / "runtime" / f"jpserver-{proc.pid}.json"
    try:
        _wait_ready(lab, info, timeout)
    except BaseException:
        stop_lab(lab)
        raise
    return lab


def _wait_ready(lab: Lab, info: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited early (rc={lab.proc.returncode}):\n"
                               f"{lab.log_tail()}")
        try:
            lab.port = int(json.loads(info.read_text())["port"])
            url = f"{lab.base}/api/status?token={lab.token}"
            with _DIRECT.open(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")


def stop_lab(lab: Lab, grace: float = 20.0) -> None:
    """SIGTERM the server by PID, SIGKILL it if it is still there after ``grace`` seconds."""
    proc = lab.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def marked(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment carries ``MARK_ENV=marker``."""
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get(MARK_ENV) == marker:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


class Tracker:
    """The processes of one test: those marked with ``marker`` and, seen by :meth:`snapshot`
    while they ran, their descendants (Chromium's renderers do not keep the environment)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.seen: dict[int, psutil.Process] = {}

    def snapshot(self) -> int:
        """Remember the marked processes and all their descendants; returns how many."""
        for p in marked(self.marker):
            self.seen.setdefault(p.pid, p)
            try:
                for c in p.children(recursive=True):
                    self.seen.setdefault(c.pid, c)
            except psutil.NoSuchProcess:
                pass
        return len(self.seen)

    def alive(self) -> list[psutil.Process]:
        """Marked processes, and remembered ones still running (same PID *and* start time:
        ``is_running`` is false for a reused PID)."""
        left = {p.pid: p for p in marked(self.marker)}
        for pid, p in self.seen.items():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.setdefault(pid, p)
            except psutil.NoSuchProcess:
                pass
        return list(left.values())

    def reap(self, wait: float = 10.0) -> list[str]:
        """Wait up to ``wait`` s for every process of the test to end, then SIGKILL the rest
        by PID. Returns a description of those that had to be killed (empty: none)."""
        deadline = time.monotonic() + wait
        left = self.alive()
        while left and time.monotonic() < deadline:
            time.sleep(0.25)
            left = self.alive()
        if not left:
            return []
        killed = describe(left)
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)
        return killed


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} {' '.join(p.cmdline())[:160]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            out.append(f"{p.pid} (gone)")
    return out
