"""The ``run`` fixture: every semantic test runs once per engine ("runner").

A runner is a function ``runner(canvas, **apply_kwargs) -> result`` that sends the canvas
and returns its AsyncResult/GroupResult (``args``, ``kwargs``, ``link``, ``link_error`` as
``apply``/``apply_async`` take them). Only ``"eager"`` is here. To add another runner, put a
module named ``runner_<name>.py`` next to this file that calls :func:`register`; it is
imported at collection time, and every test using ``run`` is parametrized with it too.
``NBCANVAS_RUNNERS=eager,cluster`` selects a subset.

Tests that only make sense for some runners are marked ``@pytest.mark.runners("cluster")``;
they are skipped for the others.
"""
from __future__ import annotations

import importlib
import os
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

Runner = Callable[..., Any]

#: name -> runner. Extend with :func:`register` (from a ``runner_<name>.py`` module).
RUNNERS: dict[str, Runner] = {}
#: name -> fixtures the runner needs (e.g. the session's LocalCluster client).
NEEDS: dict[str, tuple[str, ...]] = {}
#: runners used only by tests that name them with ``@pytest.mark.runners(...)``
ON_REQUEST: set[str] = set()


def register(name: str, runner: Runner, needs: tuple[str, ...] = (),
             default: bool = True) -> None:
    """Add a runner: ``register("cluster", lambda canvas, **kw: canvas.apply_async(**kw))``.

    ``default=False``: only tests marked ``@pytest.mark.runners(name)`` use it.
    """
    RUNNERS[name] = runner
    NEEDS[name] = needs
    if not default:
        ON_REQUEST.add(name)


def _eager(canvas: Any, **apply_kwargs: Any) -> Any:
    return canvas.apply(**apply_kwargs)


register("eager", _eager)

for _mod in sorted(pathlib.Path(__file__).parent.glob("runner_*.py")):
    importlib.import_module(f"{__package__}.{_mod.stem}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "runners(*names): run this semantic test only with these runners")


def _selected() -> list[str]:
    want = os.environ.get("NBCANVAS_RUNNERS")
    if not want:
        return list(RUNNERS)
    names = [n.strip() for n in want.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        raise pytest.UsageError(f"NBCANVAS_RUNNERS names unknown runners {unknown}; "
                                f"known: {sorted(RUNNERS)}")
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "run" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("runners")
        asked = set(marker.args) if marker is not None else set()
        names = [n for n in _selected() if n not in ON_REQUEST or n in asked]
        metafunc.parametrize("run", names, indirect=True)


@pytest.fixture
def runner_name(request: pytest.FixtureRequest) -> str:
    """The name of the runner of the current test."""
    return request.node.callspec.params["run"]


@pytest.fixture
def run(request: pytest.FixtureRequest) -> Runner:
    """``run(canvas, **apply_kwargs)`` sends ``canvas`` with the current runner."""
    name = request.param
    marker = request.node.get_closest_marker("runners")
    if marker is not None and name not in marker.args:
        pytest.skip(f"only for runners {marker.args}")
    for fixture in NEEDS.get(name, ()):
        request.getfixturevalue(fixture)
    return RUNNERS[name]


@pytest.fixture(autouse=True)
def _seed_app_is_current() -> None:
    """Names like ``signature("tasks.add")`` resolve in the seed's app, as in the tutorial
    (other test modules register apps of their own)."""
    from .seedtasks import app
    app.set_current()


@pytest.fixture
def log(tmp_path: pathlib.Path) -> str:
    """A per-test file for side-effect records (see ``seedtasks.records``)."""
    return str(tmp_path / "records.jsonl")


def _settle(result: Any, timeout: float = 30.0) -> Any:
    store = result.handle.store
    if not store.wait(lambda s: s.finished(), timeout):
        raise TimeoutError(f"workflow {result.handle.id} did not finish in {timeout}s: "
                           f"{dict(store.counts())}")
    return result


@pytest.fixture
def settle() -> Callable[..., Any]:
    """``settle(result)``: wait until every step of the workflow (callbacks included) is in a
    final state, so side effects can be counted. An eager result is settled already; a
    cluster one waits on its state store's events (with a timeout)."""
    return _settle
