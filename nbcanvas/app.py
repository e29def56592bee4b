"""The App: a task registry, task options and where work runs (stdlib only).

>>> app = App("demo")
>>> @app.task
... def add(x, y):
...     return x + y
>>> add.name, add(2, 3), app.get_task("add") is add
('nbcanvas.app.add', 5, True)
"""
from __future__ import annotations

import difflib
import math
import threading
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, overload

from .errors import ImproperlyConfigured, NotRegistered
from .options import check_task_options

if TYPE_CHECKING:
    from .task import Task

__all__ = ["App", "default_app", "current_app", "task", "lookup_task", "all_apps",
           "expiry_seconds"]

_lock = threading.RLock()
_apps: weakref.WeakSet[App] = weakref.WeakSet()
_current: list[App] = []


def expiry_seconds(value: Any) -> float | None:
    """Celery's ``result_expires`` as seconds: None or 0 mean "never" (as in Celery).

    >>> expiry_seconds(90), expiry_seconds(timedelta(minutes=2)), expiry_seconds(0)
    (90.0, 120.0, None)
    >>> expiry_seconds("1h")
    Traceback (most recent call last):
    ...
    nbcanvas.errors.ImproperlyConfigured: result_expires is '1h'; give seconds (a number) or a datetime.timedelta, or None to keep results until forget()
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ImproperlyConfigured(
            f"result_expires is {value!r}; give seconds (a number) or a datetime.timedelta, "
            f"or None to keep results until forget()")
    if seconds < 0 or math.isnan(seconds):
        raise ImproperlyConfigured(f"result_expires is {value!r}: it cannot be negative")
    return seconds if seconds > 0 and math.isfinite(seconds) else None


class App:
    """A registry of tasks and the settings of where they run.

    ``client`` (a ``distributed.Client``) or ``address`` (a scheduler address) fixes where
    workflows run; without them nbcanvas uses a current Client, ``DASK_SCHEDULER_ADDRESS``
    or an embedded LocalCluster. ``fusion`` and ``batching`` switch the two compile-time
    optimisations (both on by default; results and states are the same either way).
    ``result_expires`` (Celery's setting: seconds or a ``timedelta``; None or 0, the default,
    keeps them until ``forget()``): how long after a workflow finishes its results and its
    record stay on the cluster before they are forgotten for you.

    >>> App("expiring", result_expires=timedelta(hours=1), set_as_current=False).result_expires
    3600.0
    >>> App("forever", result_expires=0, set_as_current=False).result_expires is None
    True
    """

    def __init__(self, main: str = "default", *, client: Any = None, address: str | None = None,
                 fusion: bool = True, batching: bool = True, set_as_current: bool = True,
                 result_expires: float | timedelta | None = None) -> None:
        if client is not None and address is not None:
            raise ImproperlyConfigured("App(): give client= or address=, not both")
        self.main = main
        self.tasks: dict[str, Task] = {}
        self.fusion = fusion
        self.batching = batching
        self.result_expires = result_expires  # type: ignore[assignment]
        self._target: Any = client if client is not None else address
        self._runtime: Any = None  # the connection object, owned by nbcanvas.cluster
        with _lock:
            _apps.add(self)
            if set_as_current:
                _current.append(self)

    def __repr__(self) -> str:
        return f"<App {self.main!r}: {len(self.tasks)} tasks>"

    def __reduce__(self):  # an App never travels with its client; workers get a bare one
        # (that keeps result_expires: a workflow a task sends expires as the task's app says)
        return (_bare_app, (self.main, self.result_expires))

    @property
    def result_expires(self) -> float | None:
        """Seconds a finished workflow's results are kept (None: until ``forget()``)."""
        return self._result_expires

    @result_expires.setter
    def result_expires(self, value: float | timedelta | None) -> None:
        self._result_expires = expiry_seconds(value)

    def set_current(self) -> App:
        """Make this the current app again (Celery's ``app.set_current()``): names are looked
        up here first, and ``nc.connect()`` connects this app."""
        with _lock:
            if self in _current:
                _current.remove(self)
            _current.append(self)
        return self

    # -- tasks -----------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...
    @overload
    def task(self, fn: None = None, /, **options: Any) -> Callable[[Callable[..., Any]], Task]: ...
    @overload
    def task(self, fn: Callable[..., Any], /, **options: Any) -> Task: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register ``fn`` as a task: ``@app.task``, ``@app.task(name=..., bind=True, ...)``
        or ``app.task(fn, name=...)``."""
        from .task import Task  # same stage; here to keep task.py free to import app.py

        name = options.pop("name", None)
        bind = bool(options.pop("bind", False))
        typing = bool(options.pop("typing", True))

        def register(f: Callable[..., Any]) -> Task:
            if not callable(f):
                raise TypeError(f"@task needs a function, got {f!r}")
            qual = name or _default_name(f)
            opts = check_task_options(options, where=f"task {qual!r}")
            t = Task(f, app=self, name=qual, bind=bind, typing=typing, options=opts)
            with _lock:
                self.tasks[qual] = t  # re-running a notebook cell replaces the task
            return t

        return register(fn) if fn is not None else register

    def get_task(self, name: str) -> Task:
        """The task registered as ``name``, or the only one whose short name is ``name``."""
        found = _find([self], name)
        if found is None:
            raise _not_found(name, [self])
        return found

    # -- where it runs (kept opaque here; nbcanvas.cluster gives it meaning) ---------------
    def connect(self, target: Any) -> App:
        """Run this app's workflows on ``target``: a scheduler address or a ``distributed.Client``.

        Returns the app, so ``app = App("x").connect("tcp://10.0.0.5:8786")`` reads well.
        """
        if not (isinstance(target, str) or hasattr(target, "scheduler")):
            raise ImproperlyConfigured(
                f"connect() takes a scheduler address like 'tcp://host:8786' or a "
                f"distributed.Client, got {target!r}")
        self._target = target
        self._runtime = None
        return self

    def AsyncResult(self, id: str) -> Any:  # noqa: N802 - Celery's name
        """Re-attach to a task or workflow by id (see ``nbcanvas.AsyncResult``)."""
        from .result import AsyncResult  # run stage, reached only when asked

        return AsyncResult(id, app=self)

    def GroupResult(self, id: str) -> Any:  # noqa: N802 - Celery's name
        """Re-attach to a group result by id (``GroupResult.restore``)."""
        from .result import GroupResult

        return GroupResult.restore(id, app=self)


def _default_name(f: Callable[..., Any]) -> str:
    """``"<module>.<qualname>"``; a callable without them (a partial, an instance) needs name=."""
    qual = getattr(f, "__qualname__", None)
    module = getattr(f, "__module__", None)
    if not isinstance(qual, str) or not isinstance(module, str):
        raise TypeError(f"@task: {f!r} has no __module__/__qualname__ to name it by; "
                        f"give a name: app.task(fn, name='tasks.my_task')")
    return f"{module}.{qual}"


def _bare_app(main: str, result_expires: float | None = None) -> App:
    return App(main, set_as_current=False, result_expires=result_expires)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _find(apps: list[App], name: str) -> Task | None:
    for a in apps:
        found = a.tasks.get(name)
        if found is not None:
            return found
    with _lock:  # another thread may register a task meanwhile (a worker thread unpickling one)
        hits = {t.name: t for a in apps for t in a.tasks.values() if _short(t.name) == name}
    if len(hits) == 1:
        return next(iter(hits.values()))
    if len(hits) > 1:
        raise NotRegistered(
            f"task name {name!r} is ambiguous: it matches {', '.join(sorted(map(repr, hits)))}; "
            f"use the full name")
    return None


def _not_found(name: str, apps: list[App]) -> NotRegistered:
    with _lock:
        names = sorted({t for a in apps for t in a.tasks})
    pool = names + sorted({_short(n) for n in names})
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    listed = f" (registered: {', '.join(map(repr, names[:10]))}{'…' if len(names) > 10 else ''})"
    return NotRegistered(f"no task named {name!r}{hint}{listed if names else ''}")


def all_apps() -> list[App]:
    """Every live app, the current one first."""
    with _lock:
        cur = current_app()
        return [cur] + [a for a in list(_apps) if a is not cur]


def lookup_task(name: str) -> Task:
    """Find a task by full or short name in the current app, then in every other app."""
    apps = all_apps()
    found = _find(apps, name)
    if found is None:
        raise _not_found(name, apps)
    return found


default_app = App("default", set_as_current=False)


def current_app() -> App:
    """The app created last (Celery's ``current_app``), else the default app."""
    with _lock:
        while _current:
            return _current[-1]
        return default_app


def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``@nc.task``: register on the default app (see ``App.task``).

    >>> @task(name="demo.mul")
    ... def mul(x, y):
    ...     return x * y
    >>> mul.s(2, 3)
    mul.s(2, 3)
    """
    return default_app.task(fn, **options) if fn is not None else default_app.task(**options)
