"""nbcanvas.display: how canvases show in a notebook, and the kernel check."""
from __future__ import annotations

import shutil
import sys
import types
from collections.abc import Callable, Iterator

import pytest

import nbcanvas as nc
from nbcanvas import chord, group
from nbcanvas.display import INSTALL_HINT, canvas_mimebundle, in_kernel



def needs_dot(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test ``needs_dot`` and skip it without Graphviz's ``dot`` binary."""
    skip = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot binary")
    return pytest.mark.needs_dot(skip(test))


app = nc.App("test-display")


@app.task(name="tasks.fetch_user_data")
def fetch_user_data(user_id):
    return {"user_id": user_id, "posts": 10}


@app.task(name="tasks.aggregate_stats")
def aggregate_stats(results):
    return len(results)


def workflow() -> nc.Signature:
    return chord([fetch_user_data.s(i) for i in range(1, 6)])(aggregate_stats.s())


@needs_dot
def test_bundle_has_svg_and_the_repr() -> None:
    sig = workflow()
    bundle = sig._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "text/plain"}
    assert bundle["text/plain"] == repr(sig)
    assert "<svg" in bundle["image/svg+xml"] and "aggregate_stats(◦)" in bundle["image/svg+xml"]
    assert bundle == canvas_mimebundle(sig)  # deterministic


@needs_dot
def test_showing_writes_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    canvas_mimebundle(workflow())
    assert list(tmp_path.iterdir()) == []


@needs_dot
def test_big_group_shows_collapsed() -> None:
    svg = canvas_mimebundle(group(fetch_user_data.s(i) for i in range(10_000)))["image/svg+xml"]
    assert "fetch_user_data × 10,000" in svg and svg.count('class="node"') == 1


def test_include_and_exclude_are_honoured() -> None:
    sig = workflow()
    assert canvas_mimebundle(sig, include={"text/plain"}) == {"text/plain": repr(sig)}
    assert canvas_mimebundle(sig, exclude={"image/svg+xml"}) == {"text/plain": repr(sig)}
    assert canvas_mimebundle(sig, exclude={"image/svg+xml", "text/plain"}) == {}


def test_without_dot_the_cell_shows_the_repr_and_how_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # the real graphviz package finds no dot binary
    sig = workflow()
    bundle = sig._repr_mimebundle_()
    assert set(bundle) == {"text/plain"}
    text = bundle["text/plain"]
    assert text.splitlines()[0] == repr(sig) and text.endswith(INSTALL_HINT)
    for how in ("apt-get install graphviz", "conda install -c conda-forge graphviz",
                "brew install graphviz"):
        assert how in text
    assert "Traceback" not in text
    assert "aggregate_stats" in sig.to_dot()  # the DOT text needs no binary
    assert sig.graph().source == sig.to_dot()


def test_any_other_failure_is_one_line() -> None:
    class Broken:
        def graph(self) -> None:
            raise ValueError("no layout\nsecond line")

        def __repr__(self) -> str:
            return "Broken()"

    bundle = canvas_mimebundle(Broken())
    assert bundle == {"text/plain": "Broken()\n(no diagram: ValueError: no layout)"}


# -- kernel detection ---------------------------------------------------------------------------
@pytest.fixture
def fresh_kernel_check() -> Iterator[None]:
    in_kernel.cache_clear()
    yield
    in_kernel.cache_clear()


def _fake_ipython(monkeypatch: pytest.MonkeyPatch, class_name: str | None) -> None:
    shell = type(class_name, (), {})() if class_name else None
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)


def test_not_in_a_kernel_under_pytest(fresh_kernel_check) -> None:
    assert in_kernel() is False


@pytest.mark.parametrize("shell, expected", [("ZMQInteractiveShell", True),
                                             ("TerminalInteractiveShell", False), (None, False)])
def test_kernel_is_told_by_the_shell(fresh_kernel_check, monkeypatch, shell, expected) -> None:
    _fake_ipython(monkeypatch, shell)
    assert in_kernel() is expected


def test_kernel_check_is_decided_once(fresh_kernel_check, monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert in_kernel() is False
    _fake_ipython(monkeypatch, "ZMQInteractiveShell")
    assert in_kernel() is False  # cached
    in_kernel.cache_clear()
    assert in_kernel() is True


def test_a_subclass_of_the_kernel_shell_counts(fresh_kernel_check, monkeypatch) -> None:
    base = type("ZMQInteractiveShell", (), {})
    shell = type("Shell", (base,), {})()  # e.g. a hosted notebook's own shell
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)
    assert in_kernel() is True
