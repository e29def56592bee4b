"""Argument checks at build time: the fast equivalent of ``inspect.Signature.bind`` (stdlib only).

>>> def add(x, y): return x + y
>>> spec = ArgSpec.of(add, bind=False)
>>> spec.check("add", (1, 2, 3), {})
Traceback (most recent call last):
...
TypeError: add(x, y) takes 2 positional arguments but 3 were given: add(1, 2, 3)
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

__all__ = ["ArgSpec", "call_repr"]

_P = inspect.Parameter


def call_repr(name: str, args: tuple, kwargs: Mapping[str, Any], limit: int = 60) -> str:
    """``name(1, 2, k=3)`` with long reprs cut, for error messages and labels."""
    def short(v: Any) -> str:
        r = repr(v)
        return r if len(r) <= limit else r[: limit - 1] + "…"
    parts = [short(a) for a in args] + [f"{k}={short(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


@dataclass(frozen=True)
class ArgSpec:
    """What a task function accepts, precomputed once per task."""

    positional: tuple[str, ...]       # names that can be given by position, in order
    required: frozenset[str]          # parameters without a default (excluding *args/**kw)
    keyword_only: frozenset[str]
    positional_only: frozenset[str]
    var_positional: bool
    var_keyword: bool
    text: str                         # "(x, y)" for messages

    @classmethod
    def of(cls, fn: Callable[..., Any], bind: bool) -> ArgSpec | None:
        """The spec of ``fn`` (the bound ``self`` left out), or None if it can't be inspected."""
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return None
        params = list(sig.parameters.values())
        if bind and params and params[0].kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD):
            params = params[1:]
        pos = tuple(p.name for p in params if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD))
        required = frozenset(p.name for p in params if p.default is _P.empty
                             and p.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD))
        text = "(" + ", ".join(str(p) for p in params) + ")"
        return cls(pos, required,
                   frozenset(p.name for p in params if p.kind is _P.KEYWORD_ONLY),
                   frozenset(p.name for p in params if p.kind is _P.POSITIONAL_ONLY),
                   any(p.kind is _P.VAR_POSITIONAL for p in params),
                   any(p.kind is _P.VAR_KEYWORD for p in params), text)

    @cached_property
    def complete_counts(self) -> tuple[float, float]:
        """(lo, hi): a call of ``n`` positional values and no keywords binds, every required
        parameter given, exactly when ``lo <= n <= hi`` (``check(..., complete=True)`` would
        pass); ``lo`` is infinite if a keyword-only parameter is required.

        >>> def f(a, b=1, *rest): pass
        >>> ArgSpec.of(f, bind=False).complete_counts
        (1, inf)
        """
        if self.required & self.keyword_only:
            return float("inf"), 0
        need = [i + 1 for i, p in enumerate(self.positional) if p in self.required]
        return (need[-1] if need else 0,
                float("inf") if self.var_positional else len(self.positional))

    def check(self, name: str, args: tuple, kwargs: Mapping[str, Any], *, extra: int = 0,
              complete: bool = False) -> None:
        """Raise ``TypeError`` naming the task if ``args`` (after ``extra`` prepended values)
        and ``kwargs`` cannot be bound; with ``complete`` every required parameter must be given."""
        n = len(args) + extra
        if n > len(self.positional) and not self.var_positional:
            self._fail(name, args, kwargs, extra,
                       f"takes {len(self.positional)} positional argument"
                       f"{'s' if len(self.positional) != 1 else ''} but {n} "
                       f"{'was' if n == 1 else 'were'} given", tag_short=False)
        by_pos = self.positional[:n]
        if kwargs:
            for k in kwargs:
                if k in by_pos:
                    self._fail(name, args, kwargs, extra, f"got multiple values for argument {k!r}")
                if k in self.positional_only or (k not in self.positional and k not in
                                                 self.keyword_only and not self.var_keyword):
                    self._fail(name, args, kwargs, extra,
                               f"got an unexpected keyword argument {k!r}")
        if complete and (n < len(self.required) or self.keyword_only or kwargs):
            missing = [p for p in (*self.positional, *sorted(self.keyword_only))
                       if p in self.required and p not in by_pos and p not in kwargs]
            if missing:
                self._fail(name, args, kwargs, extra,
                           f"is missing required argument{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(map(repr, missing))}")

    def _fail(self, name: str, args: tuple, kwargs: Mapping[str, Any], extra: int, what: str,
              tag_short: bool = True) -> None:
        """Raise the TypeError (the message is built only when there is an error)."""
        short = name.rsplit(".", 1)[-1]
        where = call_repr(short, args, kwargs)
        if extra:
            where += f" with {extra} more argument{'s' if extra > 1 else ''} prepended"
        tag = f" [task {name!r}]" if (tag_short or name != short) else ""
        raise TypeError(f"{short}{self.text} {what}: {where}{tag}")
