"""Live views in a notebook: the state-coloured diagram and progress bars (show stage).

``view_model`` and friends (``nbcanvas.widgets.model``) need no widgets: the text progress
line uses them too. The ipywidgets-based names load on first use.

>>> from nbcanvas.widgets import format_meta
>>> format_meta({"step": 2, "total": 5})
'step 2/5'
"""
from __future__ import annotations

from typing import Any

from .model import Bar, Source, ViewModel, format_meta, format_seconds, source_of, view_model
from .pace import Pacer

__all__ = ["Bar", "Source", "ViewModel", "format_meta", "format_seconds", "source_of",
           "view_model", "Pacer", "LiveView", "live_view", "live_views", "WorkflowListView",
           "observe_overhead"]

_LAZY = {"LiveView": "live", "live_view": "live", "live_views": "live",
         "WorkflowListView": "listing", "observe_overhead": "overhead"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
