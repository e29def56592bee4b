"""Fixtures of the browser tests: a private JupyterLab, Debian's Chromium through Playwright,
and a check that every process the test started is gone afterwards (also when it failed).

Set-up order (teardown runs in reverse): ``budget`` → ``procs`` → ``browser`` → ``lab`` →
``page``. ``procs`` tears down last: it waits for every process the test started (server,
kernels, their dask processes, the Playwright driver, Chromium) to end, kills survivors by PID
and then fails the test with their command lines.
"""
from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import MARK_ENV, Lab, Tracker, start_lab, stop_lab

# helper modules, not tests (and no doctests): don't import them during --doctest-modules
collect_ignore = ["lab.py", "notebook.py"]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"
# full-window pictures of every run (and of failures); NOT copied by `make screenshots`,
# which takes only build/*.png (the README crops, written with NBCANVAS_SCREENSHOTS=1)
SHOTS = BUILD / "browser"
CHROMIUM = os.environ.get("NBCANVAS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container without general internet access: no sandbox, no GPU, and no
# background networking (Chromium would keep trying to reach Google services otherwise).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
#: seconds for all the waits of one test; pytest-timeout (120 s) is the hard stop behind it,
#: and the rest is left to teardown (server SIGTERM, leftover-process check)
BUDGET = 90.0


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def procs() -> Iterator[Tracker]:
    """The processes of the test: a random value of ``NBCANVAS_BROWSER_TEST`` goes into the
    environment of every process the test starts; at teardown none of them may be left."""
    tracker = Tracker(secrets.token_hex(8))
    yield tracker
    killed = tracker.reap(wait=15)
    if killed:
        pytest.fail("processes started by the browser test were still running after it "
                    "stopped everything (killed now by PID):\n  " + "\n  ".join(killed))


@pytest.fixture
def budget() -> Any:
    from .notebook import Budget
    return Budget(BUDGET)


@pytest.fixture
def browser(procs: Tracker, tmp_path: Path) -> Iterator[Any]:
    """Debian's Chromium (never a Playwright download), headless; its config and cache dirs
    (crash reports...) in the test's scratch dir."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; `make test` "
                    "installs it when run as root; or set NBCANVAS_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # The Playwright driver (node) copies os.environ when it starts: mark it too.
    saved = os.environ.get(MARK_ENV)
    os.environ[MARK_ENV] = procs.marker
    try:
        pw = sync_api.sync_playwright().start()
    finally:
        if saved is None:
            os.environ.pop(MARK_ENV, None)
        else:
            os.environ[MARK_ENV] = saved
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"), **{MARK_ENV: procs.marker})
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True, timeout=30_000, env=env)
    except BaseException:
        pw.stop()
        raise
    try:
        yield browser
    finally:
        procs.snapshot()
        try:
            browser.close()
        finally:
            pw.stop()


@pytest.fixture
def lab(procs: Tracker, tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on a scratch copy of notebooks/ (the repository's files are never opened)."""
    root = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    server = start_lab(root, tmp_path, marker=procs.marker)
    try:
        yield server
    finally:
        procs.snapshot()  # the kernel and its dask processes, while they are still there
        stop_lab(server)


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Any, lab: Lab) -> Iterator[Any]:
    """A fresh page (1280×1100); on failure a full-window screenshot and the server log go to
    build/browser/."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100},
                                  device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.console_errors = errors  # type: ignore[attr-defined]
    for old in SHOTS.glob(f"{request.node.name}-FAILED*"):
        old.unlink()  # from an earlier run
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            SHOTS.mkdir(parents=True, exist_ok=True)
            name = request.node.name
            try:
                page.screenshot(path=str(SHOTS / f"{name}-FAILED.png"), timeout=10_000)
            except Exception:  # noqa: BLE001 - the screenshot is only a help
                pass
            (SHOTS / f"{name}-FAILED-lab.log").write_text(lab.log_tail(20_000))
            (SHOTS / f"{name}-FAILED-console.txt").write_text("\n".join(errors))
        context.close()
