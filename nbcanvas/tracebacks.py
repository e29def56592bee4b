"""Remote tracebacks with their source lines back (run stage).

cloudpickle ships notebook functions by value and renames their file ``<dynamic-code>``, so
a worker's traceback has no source lines for them. This process still has the cells in
``linecache``: put each missing line back under its frame.

>>> def f():
...     return 1
>>> text = 'Traceback (most recent call last):\\n  File "<dynamic-code>", line 2, in f\\nValueError'
>>> print(with_source(text, {"f": f.__code__}))  # doctest: +ELLIPSIS
Traceback (most recent call last):
  File "<dynamic-code>", line 2, in f
    ...
ValueError
"""
from __future__ import annotations

import linecache
import re
from types import CodeType
from typing import Any

__all__ = ["with_source", "known_code"]

_FRAME = re.compile(r'^  File "<dynamic-code>", line (\d+), in (\S+)$')


def known_code() -> dict[str, CodeType]:
    """Code objects of every registered task function, by function name."""
    from .app import all_apps
    out: dict[str, CodeType] = {}
    for app in all_apps():
        for t in list(app.tasks.values()):
            code = getattr(t.run, "__code__", None)
            if code is not None:
                out.setdefault(code.co_name, code)
    return out


def with_source(text: str, codes: dict[str, Any] | None = None) -> str:
    """``text`` with the source line added under each ``<dynamic-code>`` frame we can place."""
    if "<dynamic-code>" not in text:
        return text
    codes = known_code() if codes is None else codes
    lines = text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        m = _FRAME.match(line)
        if not m or (i + 1 < len(lines) and lines[i + 1].startswith("    ")):
            continue
        code = codes.get(m.group(2))
        if code is None:
            continue
        src = linecache.getline(code.co_filename, int(m.group(1))).strip()
        if src:
            out.append(f"    {src}")
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")
