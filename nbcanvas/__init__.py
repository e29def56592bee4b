"""nbcanvas: Celery's canvas, Jupyter-first, on dask.distributed.

>>> import nbcanvas as nc
>>> @nc.task(name="demo.add")
... def add(x, y):
...     return x + y
>>> (add.s(2, 2) | add.s(4)).apply().get()
8

Importing nbcanvas loads no dask, distributed, graphviz or ipywidgets: the run and show
stages load on first use.
"""
from __future__ import annotations

from typing import Any

from . import states
from .task import Task  # before `task` below: the submodule must not shadow it
from .app import App, current_app, default_app, task
from .canvas import Signature, branch, chain, chord, chunks, foreach, group, signature, xmap
from .errors import (ChordError, ImproperlyConfigured, MaxRetriesExceededError, NotRegistered,
                     RemoteError, Retry, SoftTimeLimitExceeded, TaskRevokedError,
                     TimeLimitExceeded, TimeoutError)

__version__ = "0.1.0"

__all__ = [
    "App", "Task", "task", "current_app", "default_app", "Signature", "signature", "chain",
    "group", "chord", "chunks", "xmap", "foreach", "branch", "AsyncResult", "GroupResult",
    "progress", "workflows", "connect", "states", "TimeoutError", "TaskRevokedError",
    "NotRegistered", "ImproperlyConfigured", "Retry", "MaxRetriesExceededError",
    "TimeLimitExceeded", "SoftTimeLimitExceeded", "ChordError", "RemoteError", "__version__",
]

# Names of the run and show stages, loaded on first access (PEP 562) so that
# `import nbcanvas` stays light.
_LAZY = {
    "AsyncResult": ("nbcanvas.result", "AsyncResult"),
    "GroupResult": ("nbcanvas.result", "GroupResult"),
    "progress": ("nbcanvas.progress", "progress"),
    "workflows": ("nbcanvas.workflows", "workflows"),
    "connect": ("nbcanvas.cluster", "connect"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbcanvas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
