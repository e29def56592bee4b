"""How task functions travel in a graph (stdlib only).

By default a task's function is pickled with the graph, by value for notebook functions
(cloudpickle), so that workers in other processes run the code the notebook has now.

When the whole cluster lives in this very process -- the embedded cluster with its threads
pool: scheduler and workers in the kernel, reached in memory -- the function travels as
itself: a token that this process turns back into the same function object. A task then
runs the notebook's own function with its own globals: a module-level lock, cache or list is
the notebook's, not a copy (and a lock, which cannot be pickled, no longer stops the task from
being sent). It also skips pickling the function on every ``delay()`` and unpickling it on the
scheduler (0.1-0.3 ms of a single task's round trip). Arguments are still pickled: a task
gets a copy of them, as on any pool.

Not with worker processes, even though the scheduler is here too: it would pickle the
function for them when it hands the task out, and one that cannot be pickled would fail
there, late, instead of in ``delay()``. For the same reason, while a worker started in
another process has joined the threads pool's scheduler, functions are pickled as usual.

>>> import pickle
>>> def double(x):
...     return 2 * x
>>> with in_this_process():
...     data = pickle.dumps(travelling(double))
>>> pickle.loads(data) is double
True
>>> import json  # outside ``in_this_process()``: the function, if pickle finds it by name
>>> travelling(json.dumps) is json.dumps
True
>>> type(travelling(double)).__name__  # else by value (cloudpickle), as dask would end up
'ByValue'
"""
from __future__ import annotations

import itertools
import sys
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["in_this_process", "travelling", "AsItself", "ByValue", "Shipped", "workers_here",
           "runs_here"]

#: set (in this thread's context) while a graph whose reader is this process is pickled
_HERE: ContextVar[bool] = ContextVar("nbcanvas_graph_read_here", default=False)
#: names this process among others (a pid can be reused, on another machine too)
_PROCESS = uuid.uuid4().hex
#: token -> function; a token is never reused, and a function no longer referenced drops out
_FUNCTIONS: weakref.WeakValueDictionary[int, Callable[..., Any]] = weakref.WeakValueDictionary()
_TOKENS: weakref.WeakKeyDictionary[Callable[..., Any], int] = weakref.WeakKeyDictionary()
_COUNTER = itertools.count(1)
#: clients whose scheduler lives in this process -> whether every worker does too, right now
_CLIENTS: weakref.WeakKeyDictionary[Any, Callable[[], bool]] = weakref.WeakKeyDictionary()


def workers_here(client: Any, check: Callable[[], bool]) -> None:
    """Mark ``client``: its scheduler runs in this process, and ``check()`` says whether every
    worker does too (a worker started elsewhere may join it: then graphs are pickled as usual)."""
    _CLIENTS[client] = check


def runs_here(client: Any) -> bool:
    """Whether graphs sent with ``client`` are read only in this process."""
    check = _CLIENTS.get(client)
    return check is not None and check()


@contextmanager
def in_this_process() -> Iterator[None]:
    """Within this block (this thread only), :func:`travelling` functions pickle as tokens."""
    reset = _HERE.set(True)
    try:
        yield
    finally:
        _HERE.reset(reset)


def travelling(fn: Callable[..., Any]) -> Any:
    """What to pickle in place of ``fn``: within :func:`in_this_process` a token for it
    (functions that cannot be weakly referenced stay themselves); else ``fn`` itself, or
    :class:`ByValue` when pickle cannot find it by name (see there)."""
    if not _HERE.get():
        if type(fn) is Shipped:  # passed on as it came (by value once, not wrapped again)
            return fn
        return fn if _found_by_name(fn) else ByValue(fn)
    try:
        token = _TOKENS.get(fn)
        if token is None:
            token = next(_COUNTER)
            _TOKENS[fn] = token
            _FUNCTIONS[token] = fn
    except TypeError:  # e.g. a builtin or a callable object without __weakref__
        return fn
    return AsItself(token, getattr(fn, "__qualname__", repr(fn)))


def _found_by_name(fn: Any) -> bool:
    """Whether pickle can save ``fn`` by reference: its module's attribute at its qualified
    name is ``fn`` itself (not so for a function under ``@app.task``, which the decorator
    replaced with the task, for a lambda, or for a nested function)."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is None or module.__name__ == "__main__":
        return False
    obj: Any = module
    for part in str(getattr(fn, "__qualname__", "<>")).split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return obj is fn


class ByValue:
    """A function that pickle cannot find by name, pickled by value with cloudpickle; it
    unpickles as :class:`Shipped`.

    dask pickles a graph with plain pickle first and, when that fails, tries again with its
    own pickler and then with cloudpickle: three passes over the whole graph and two
    exceptions, about 0.15 ms for a single task, paid by the client on every ``delay()``
    and by the scheduler again when it hands the task to a worker process. Saying it up front
    makes the first pass succeed (for a notebook's function too: see ``__reduce_ex__``).
    What travels is what cloudpickle made of it before: the function's code and the current
    values of the globals it uses.

    >>> import pickle
    >>> square = lambda x: x * x
    >>> pickle.loads(pickle.dumps(ByValue(square)))(3)
    9
    >>> pickle.loads(pickle.dumps(ByValue(square), protocol=5))(4)
    16
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[Any, ...]]:
        import cloudpickle
        return _shipped(cloudpickle.dumps(self.fn, protocol=5), protocol)


class Shipped:
    """A task function sent by value, unpickled where it is called (see :class:`ByValue`).

    The scheduler only passes a task on to a worker: it keeps the function's bytes and sends
    them on as they are, instead of rebuilding the function from its code and pickling it
    again (about 0.1 ms of its loop per task). The worker makes the function on first use; a
    function that cannot be made there fails its step, naming why.
    """

    __slots__ = ("data", "_fn")

    def __init__(self, data: Any) -> None:
        self.data = bytes(data)  # out of band it is a view of a received frame
        self._fn: Callable[..., Any] | None = None

    def load(self) -> Callable[..., Any]:
        fn = self._fn
        if fn is None:
            import pickle
            fn = self._fn = pickle.loads(self.data)
        return fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[Any, ...]]:
        return _shipped(self.data, protocol)


def _shipped(data: bytes, protocol: Any) -> tuple[Any, tuple[Any, ...]]:
    if isinstance(protocol, int) and protocol >= 5:
        import pickle
        # Out of band where the pickler takes buffers (dask's does): dask re-pickles a whole
        # graph with cloudpickle when its plain pickle mentions ``__main__``, and a notebook
        # function's bytes do; in their own frame they don't trigger that pass.
        return (Shipped, (pickle.PickleBuffer(data),))
    return (Shipped, (data,))


class AsItself:
    """A function sent as itself: unpickles to the very object, in the process that sent it."""

    __slots__ = ("token", "name")

    def __init__(self, token: int, name: str) -> None:
        self.token, self.name = token, name

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_resolve, (_PROCESS, self.token, self.name))


def _resolve(process: str, token: int, name: str) -> Callable[..., Any]:
    fn = _FUNCTIONS.get(token) if process == _PROCESS else None
    if fn is None:
        where = "this process" if process == _PROCESS else "another process"
        raise RuntimeError(
            f"the function {name!r} was sent as itself for {where} and is not there (a graph "
            f"for the embedded cluster's scheduler was read elsewhere, or the function was "
            f"dropped before the scheduler read it)")
    return fn
