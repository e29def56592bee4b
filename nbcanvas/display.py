"""How nbcanvas objects show in a notebook, and whether we are in one (show stage).

A canvas that is a cell's value shows as an SVG diagram next to its deterministic repr.
Showing never writes a file and never raises: without Graphviz's ``dot`` program the cell
shows the repr and how to install Graphviz; any other failure, the repr and one line.
graphviz is imported on first use, so the kernel check costs no import.

>>> from nbcanvas import App
>>> app = App("doc-display")
>>> @app.task(name="tasks.add")
... def add(x, y):
...     return x + y
>>> canvas_mimebundle(add.s(2, 2) | add.s(4), exclude={"image/svg+xml"})
{'text/plain': 'add.s(2, 2) | add.s(4)'}
>>> in_kernel()  # a doctest runs in no kernel
False
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Container
from typing import Any, Final

__all__ = ["INSTALL_HINT", "SVG", "TEXT", "WIDGET", "canvas_mimebundle", "result_mimebundle",
           "render_svg", "in_kernel"]

SVG: Final = "image/svg+xml"
TEXT: Final = "text/plain"
WIDGET: Final = "application/vnd.jupyter.widget-view+json"
INSTALL_HINT: Final = ("(no diagram: Graphviz's dot program is not installed; install it with "
                       "`apt-get install graphviz`, `conda install -c conda-forge graphviz` "
                       "or `brew install graphviz`)")


def canvas_mimebundle(sig: Any, include: Container[str] | None = None,
                      exclude: Container[str] | None = None) -> dict[str, str]:
    """``{"image/svg+xml": svg, "text/plain": repr(sig)}`` for ``sig._repr_mimebundle_``.

    ``include`` / ``exclude`` are IPython's: the mimetypes wanted or not (``None``: no limit).
    Without the ``dot`` program the bundle is the repr and :data:`INSTALL_HINT`.

    >>> from nbcanvas import App
    >>> app = App("doc-display-bundle")
    >>> @app.task(name="tasks.mul")
    ... def mul(x, y):
    ...     return x * y
    >>> bundle = canvas_mimebundle(mul.s(2, 3))
    >>> bundle["text/plain"].splitlines()[0], set(bundle) <= {"image/svg+xml", "text/plain"}
    ('mul.s(2, 3)', True)
    """
    text = repr(sig)
    if not _wanted(SVG, include, exclude):
        return {TEXT: text} if _wanted(TEXT, include, exclude) else {}
    svg, problem = _svg(sig.graph)
    bundle = {SVG: svg} if svg is not None else {}
    if _wanted(TEXT, include, exclude):
        bundle[TEXT] = text if problem is None else f"{text}\n{problem}"
    return bundle


def result_mimebundle(result: Any, include: Container[str] | None = None,
                      exclude: Container[str] | None = None) -> dict[str, Any]:
    """``result._repr_mimebundle_``: in a kernel, the live view (a widget, plus a deterministic
    ``text/plain`` such as ``<nbcanvas live view: chord fetch → aggregate>``); elsewhere, or
    when the widget mimetype is not wanted, ``text/plain`` only: the result's repr.

    >>> from nbcanvas import App
    >>> app = App("doc-display-result")
    >>> @app.task(name="tasks.inc")
    ... def inc(x):
    ...     return x + 1
    >>> result_mimebundle(inc.s(1).apply())["text/plain"].startswith("<AsyncResult: ")  # no kernel
    True
    """
    text = repr(result)
    plain = {TEXT: text} if _wanted(TEXT, include, exclude) else {}
    if not in_kernel() or not _wanted(WIDGET, include, exclude):
        return plain
    try:
        from .widgets import live_view
        bundle = live_view(result)._repr_mimebundle_()
    except Exception as e:  # noqa: BLE001 - a cell shows one line, never a traceback
        first = (str(e).strip().splitlines() or [""])[0]
        return {TEXT: f"{text}\n(no live view: {type(e).__name__}: {first[:200]})"}
    return {k: v for k, v in bundle.items() if _wanted(k, include, exclude)}


def _wanted(mimetype: str, include: Container[str] | None, exclude: Container[str] | None) -> bool:
    return (not include or mimetype in include) and not (exclude and mimetype in exclude)


def render_svg(make_graph: Any) -> tuple[str | None, str | None]:
    """(SVG text of ``make_graph()``, None), or (None, a one-line reason) when it cannot be
    drawn (no graphviz package, no ``dot`` program, a failure while drawing)."""
    try:
        import graphviz
    except ImportError:
        return None, "(no diagram: the graphviz Python package is missing: pip install graphviz)"
    try:
        return make_graph().pipe(format="svg", encoding="utf-8", quiet=True), None
    except graphviz.ExecutableNotFound:
        return None, INSTALL_HINT
    except Exception as e:  # noqa: BLE001 - a cell shows one line, never a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return None, f"(no diagram: {type(e).__name__}: {first[:200]})"


_svg = render_svg


@functools.lru_cache(maxsize=None)
def in_kernel() -> bool:
    """True inside a Jupyter kernel (ipykernel's shell), False in a terminal or plain Python.

    Decided once per process (``in_kernel.cache_clear()`` to ask again): this is the one place
    nbcanvas looks at its environment.

    >>> in_kernel()
    False
    """
    ipython = sys.modules.get("IPython")  # not imported: certainly not in a kernel
    get = getattr(ipython, "get_ipython", None)
    try:
        shell = get() if get is not None else None
    except Exception:  # noqa: BLE001 - a half-initialised IPython is no kernel
        return False
    return shell is not None and any(c.__name__ == "ZMQInteractiveShell"
                                     for c in type(shell).__mro__)
