"""nbcanvas.shipping: task functions sent as themselves to a cluster that lives in this process."""
from __future__ import annotations

import gc
import pickle
import subprocess
import sys
import threading

import cloudpickle
import pytest

import nbcanvas as nc
from nbcanvas import shipping
from nbcanvas.compile import compile_canvas
from nbcanvas.compile.programs import Step


def _made_here():
    lock = threading.Lock()

    def guarded(x):
        with lock:
            return x
    return guarded


def test_outside_the_block_a_function_is_itself_or_its_value():
    """A function pickle finds by name goes as itself (by reference); any other by value,
    with cloudpickle, as dask would end up doing after two failed passes."""
    assert shipping.travelling(_made_here) is _made_here
    fn = _made_here()
    shipped = shipping.travelling(fn)
    assert isinstance(shipped, shipping.ByValue) and shipped.fn is fn
    with pytest.raises(TypeError, match="lock"):  # so it is pickled, and this one cannot be
        pickle.dumps(shipped)


def test_a_decorated_task_function_is_pickled_by_value_in_one_pass(monkeypatch):
    """``@app.task`` puts the task where its function was, so pickle cannot find the function
    by name: dask's serializer then pickled every graph three times. Now its first, plain
    pass succeeds, and the function arrives with the current value of its globals."""
    import types

    from distributed.protocol import pickle as dask_pickle
    mod = types.ModuleType("tests_shipping_tasks")
    exec("SCALE = 2\ndef scaled(x):\n    return SCALE * x\n", mod.__dict__)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    app = nc.App("tests.test_shipping.decorated", set_as_current=False)
    raw = mod.scaled
    mod.scaled = app.task(raw, name="ts.scaled")  # as the decorator leaves the module
    step = Step("id", "ts.scaled", raw, False, (3,), {}, False, {})
    assert isinstance(shipping.travelling(raw), shipping.ByValue)
    passes = []
    real = cloudpickle.dumps  # a spy: every call still pickles (dask's module is this one)
    monkeypatch.setattr(cloudpickle, "dumps",
                        lambda *a, **k: passes.append(a[0]) or real(*a, **k))
    data = dask_pickle.dumps(step)
    assert passes == [raw]  # cloudpickle saw the function only, never the whole step again
    mod.SCALE = 10
    del sys.modules[mod.__name__]  # a worker process that cannot import it
    again = pickle.loads(data)
    assert again.fn is not raw and again.fn(3) == 6  # the globals as they were when sent


def test_inside_the_block_it_comes_back_as_the_same_object():
    fn = _made_here()  # closes over a lock: cannot be pickled by value
    with shipping.in_this_process():
        data = pickle.dumps(shipping.travelling(fn))
        again = pickle.dumps(shipping.travelling(fn))
    assert pickle.loads(data) is fn
    assert data == again  # one token per function
    assert len(data) < 200


def test_a_notebook_function_does_not_make_dask_pickle_the_graph_again(monkeypatch):
    """A notebook's function (module ``__main__``) goes by value; its bytes mention
    ``__main__``, which makes dask's serializer pickle the whole graph again with cloudpickle,
    unless they travel out of band, in their own frame, as they do here."""
    from distributed.protocol import deserialize, serialize
    from distributed.protocol.serialize import ToPickle
    space: dict = {"__name__": "__main__"}
    exec("def tripled(x):\n    return 3 * x\n", space)
    fn = space["tripled"]
    step = Step("id", "tripled", fn, False, (3,), {}, False, {})
    passes = []
    real = cloudpickle.dumps  # a spy: every call still pickles (dask's module is this one)
    monkeypatch.setattr(cloudpickle, "dumps",
                        lambda *a, **k: passes.append(a[0]) or real(*a, **k))
    header, frames = serialize(ToPickle(step), on_error="raise")
    assert passes == [fn] and len(frames) == 2  # the function's own frame
    monkeypatch.undo()
    back = deserialize(header, frames)
    assert getattr(back, "data", back).fn(5) == 15


def test_the_block_is_this_threads_only():
    fn, seen = _made_here(), []
    with shipping.in_this_process():
        t = threading.Thread(target=lambda: seen.append(shipping.travelling(fn)))
        t.start()
        t.join()
    assert [s.fn for s in seen] == [fn]  # by value (it is not found by name), not a token


def test_tokens_are_not_reused_and_a_dropped_function_is_named():
    fn = _made_here()
    with shipping.in_this_process():
        data = pickle.dumps(shipping.travelling(fn))
        other = pickle.dumps(shipping.travelling(_made_here()))
    assert data != other
    del fn
    gc.collect()
    with pytest.raises(RuntimeError, match="'_made_here.<locals>.guarded' was sent as itself "
                                           "for this process and is not there"):
        pickle.loads(data)


def test_another_process_cannot_read_it():
    with shipping.in_this_process():
        data = pickle.dumps(shipping.travelling(_made_here))
    out = subprocess.run([sys.executable, "-c",
                          "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                         input=data, capture_output=True, timeout=60)
    assert out.returncode != 0
    assert b"sent as itself for another process" in out.stderr


class _Callable:
    __slots__ = ()  # no __weakref__

    def __call__(self) -> int:
        return 1


def test_callables_without_weak_references_stay_themselves():
    fn = _Callable()
    with shipping.in_this_process():
        assert shipping.travelling(fn) is fn


def test_a_compiled_step_and_a_task_carry_the_token():
    app = nc.App("shipping-test", set_as_current=False)
    task = app.task(_made_here(), name="shipping.guarded")
    sig = task.s(1).freeze()
    cg = compile_canvas(sig, sig.id, parallelism=2, fusion=True, batching=True, salt="",
                        tiny={})
    (unit,) = cg.units.values()
    with pytest.raises(TypeError, match="lock"):
        cloudpickle.dumps(unit)
    with shipping.in_this_process():
        step = pickle.loads(cloudpickle.dumps(unit)).progs[0][0]
        same = pickle.loads(cloudpickle.dumps(task))
    assert isinstance(step, Step) and step.fn is task.run
    assert same.run is task.run  # the function itself, not a copy


def test_clients_marked_as_local():
    class Client:  # any object: the mark is a weak set
        pass
    c, everyone_here = Client(), [True]
    assert not shipping.runs_here(c)
    shipping.workers_here(c, lambda: everyone_here[0])
    assert shipping.runs_here(c)
    everyone_here[0] = False  # a worker from elsewhere joined
    assert not shipping.runs_here(c)


def test_a_function_passed_on_by_value_is_not_wrapped_again():
    """The scheduler pickles what it got from the client for a worker: the function's bytes
    go on as they are (they were pickled by value again, in a second wrapper, each time)."""
    from distributed.protocol.pickle import dumps, loads
    space: dict = {"__name__": "__main__"}
    exec("def tripled(x):\n    return 3 * x\n", space)
    at_scheduler = loads(dumps(shipping.travelling(space["tripled"])))
    at_worker = loads(dumps(shipping.travelling(at_scheduler)))
    assert type(at_worker) is shipping.Shipped and at_worker.data == at_scheduler.data
    assert type(at_worker.load()).__name__ == "function" and at_worker(2) == 6


def test_the_scheduler_passes_a_function_by_value_on_without_making_it(dask_client, monkeypatch):
    """On a cluster of worker processes a notebook-style function reaches the scheduler as
    its bytes and stays so (the scheduler would only pickle it again for the worker); the
    worker makes it when the step runs, and one it cannot make fails that step, naming why."""
    import types
    app = nc.App("tests.test_shipping.passed_on", set_as_current=False)
    app.connect(dask_client)
    space: dict = {"__name__": "__main__"}
    exec("def quadrupled(x):\n    return 4 * x\n", space)
    four = app.task(space["quadrupled"], name="ts.quadrupled")
    r = four.delay(5)
    assert r.get(timeout=60) == 20

    def fn_of(dask_scheduler, keys=list(r.handle.backend.futures)):
        spec = dask_scheduler.tasks[keys[0]].run_spec
        step = spec.args[0].progs[0][0]
        return type(step.fn).__name__, getattr(step.fn, "_fn", None) is None
    assert dask_client.run_on_scheduler(fn_of) == ("Shipped", True)  # bytes, not a function
    r.forget()
    only_here = types.ModuleType("nbcanvas_test_only_here")
    only_here.factor = 3
    monkeypatch.setitem(sys.modules, only_here.__name__, only_here)
    exec("import nbcanvas_test_only_here as here\n"
         "def scaled(x):\n    return here.factor * x\n", space)
    scaled = app.task(space["scaled"], name="ts.scaled_elsewhere")
    assert scaled.run(2) == 6  # fine here; a worker process cannot import that module
    bad = scaled.delay(2)
    with pytest.raises(ModuleNotFoundError, match="nbcanvas_test_only_here"):
        bad.get(timeout=60)
    assert bad.state == "FAILURE"
    bad.forget()
