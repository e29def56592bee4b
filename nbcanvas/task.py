"""Task: a registered function. Calling it runs the function; ``.s()`` builds a signature (stdlib only).

>>> from nbcanvas import App
>>> app = App("doc-task")
>>> @app.task(name="tasks.add")
... def add(x, y):
...     return x + y
>>> add(2, 2), add.s(2, 2), add.si(5, 5), add.s(2)
(4, add.s(2, 2), add.si(5, 5), add.s(2))
>>> add.s(1, 2, 3)
Traceback (most recent call last):
...
TypeError: add(x, y) takes 2 positional arguments but 3 were given: add(1, 2, 3) [task 'tasks.add']
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .arity import ArgSpec
from .errors import Retry
from .shipping import travelling

if TYPE_CHECKING:
    from .app import App
    from .canvas import Signature, chunks, xmap

__all__ = ["Task", "Request"]

_SIGNATURE: list[type[Signature]] = []  # the canvas comes after this module (see _signature)


def _signature() -> type[Signature]:
    """:class:`~nbcanvas.canvas.Signature`, imported on first use (the canvas imports after
    tasks; an import statement in ``task.s()`` took 6 of the 21 ms of building a 10k group)."""
    if not _SIGNATURE:
        from .canvas import Signature
        _SIGNATURE.append(Signature)
    return _SIGNATURE[0]


class Request:
    """What a bound task sees as ``self.request``: ids, retries and the call itself."""

    def __init__(self, id: str | None = None, retries: int = 0, args: tuple = (),
                 kwargs: dict | None = None, workflow_id: str | None = None,
                 hostname: str | None = None, eager: bool = True) -> None:
        self.id = id
        self.retries = retries
        self.args = args
        self.kwargs = kwargs or {}
        self.workflow_id = workflow_id
        self.root_id = workflow_id
        self.hostname = hostname
        self.is_eager = eager

    def __repr__(self) -> str:
        return f"<Request id={self.id!r} retries={self.retries}>"


class Task:
    """A function registered with an :class:`~nbcanvas.App`.

    Options (``max_retries``, ``autoretry_for``, ``retry_backoff``, ``time_limit``,
    ``resources``, ...) are validated when the task is registered.
    """

    def __init__(self, fn: Callable[..., Any], *, app: App, name: str, bind: bool = False,
                 typing: bool = True, options: dict[str, Any] | None = None) -> None:
        self.run = fn
        self.app = app
        self.name = name
        self.bind = bind
        self.typing = typing
        self.options: dict[str, Any] = dict(options or {})
        self.max_retries: int | None = self.options.get("max_retries", 3)
        self.default_retry_delay: float = self.options.get("default_retry_delay", 180)
        self.request = Request()
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__module__ = getattr(fn, "__module__", None)  # type: ignore[assignment]
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__wrapped__ = fn
        self._argspec: ArgSpec | None | bool = False  # False: not computed yet

    def __repr__(self) -> str:
        return f"<@task: {self.name}{' (bound)' if self.bind else ''}>"

    def __reduce__(self):
        # Travel light: function, name and options; never the app or its client.
        return (_rebuild_task, (travelling(self.run), self.name, self.bind, self.typing,
                                self.options))

    @property
    def argspec(self) -> ArgSpec | None:
        """Parameters of the function (without the bound ``self``), computed once."""
        if self._argspec is False:
            self._argspec = ArgSpec.of(self.run, self.bind) if self.typing else None
        return self._argspec  # type: ignore[return-value]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now, like Celery's ``add(2, 2)``."""
        if self.bind:
            return self.run(self, *args, **kwargs)
        return self.run(*args, **kwargs)

    # -- in-process helpers for bound tasks called directly (the runtime has its own) ------
    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None) -> None:
        """Outside a workflow there is nobody to tell: a no-op, as in Celery's eager mode."""

    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None,
              countdown: float | None = None, max_retries: int | None = None,
              **options: Any) -> Retry:
        """Outside a workflow a retry cannot be scheduled: re-raise ``exc`` (or ``Retry``)."""
        if exc is not None:
            raise exc
        raise Retry(exc=exc, when=countdown)

    # -- signatures ------------------------------------------------------------------------
    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of a call, partial or complete: ``add.s(2)`` then ``.delay(3)``."""
        return _signature()._of(self, args, kwargs, {}, False)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: ignores a parent's result and later arguments."""
        return _signature()._of(self, args, kwargs, {}, True)

    def signature(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                  *, immutable: bool = False, **options: Any) -> Signature:
        """``add.signature((2, 2), {}, countdown=1)``."""
        return _signature()(self, args, kwargs, immutable=immutable, **options)

    subtask = signature

    def map(self, it: Iterable[Any]) -> xmap:
        """One task that calls this task on each item in turn (Celery's ``xmap``)."""
        from .canvas import xmap
        return xmap(self, it, star=False)

    def starmap(self, it: Iterable[Any]) -> xmap:
        """Like :meth:`map` with ``fn(*item)`` (Celery's ``xstarmap``)."""
        from .canvas import xmap
        return xmap(self, it, star=True)

    def chunks(self, it: Iterable[Any], n: int) -> chunks:
        """Split ``it`` into chunks of ``n`` argument tuples, one starmap task each."""
        from .canvas import chunks
        return chunks(self, it, n)

    # -- running shortcuts -----------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """``add.delay(2, 2)`` = ``add.s(2, 2).delay()``."""
        return self.s(*args, **kwargs).delay()

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> Any:
        """``add.apply_async((2, 2), countdown=1)``."""
        return self.signature(args, kwargs).apply_async(**options)

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        """Run eagerly in this process; returns a result (see ``Signature.apply``)."""
        return self.signature(args, kwargs).apply(**options)

    def AsyncResult(self, id: str) -> Any:  # noqa: N802 - Celery's name
        """Re-attach to a result by id."""
        return self.app.AsyncResult(id)


def _rebuild_task(fn: Callable[..., Any], name: str, bind: bool, typing: bool,
                  options: dict[str, Any]) -> Task:
    from .app import default_app
    existing = default_app.tasks.get(name)
    if existing is not None and existing.run is fn:
        return existing
    t = Task(fn, app=default_app, name=name, bind=bind, typing=typing, options=options)
    default_app.tasks.setdefault(name, t)
    return t
