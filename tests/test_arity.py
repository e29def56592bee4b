"""nbcanvas.arity: arguments are checked when a canvas is built, as far as they can be, and
completely when it is sent (before anything runs)."""
from __future__ import annotations

import pytest

import nbcanvas as nc
from nbcanvas import chain, chord, group
from nbcanvas.arity import ArgSpec, call_repr

app = nc.App("test_arity")


@app.task(name="arity.add")
def add(x, y):
    return x + y


@app.task(name="arity.noargs")
def noargs():
    return 1


@app.task(name="arity.kwonly")
def kwonly(x, *, k):
    return [x, k]


@app.task(name="arity.posonly")
def posonly(x, /, y):
    return [x, y]


@app.task(name="arity.star")
def star(*args, **kwargs):
    return [list(args), kwargs]


@app.task(name="arity.defaults")
def defaults(x, y=2, z=3):
    return [x, y, z]


@app.task(name="arity.bound", bind=True)
def bound(self, exc, traceback):
    return None


@app.task(name="arity.record")
def record(x, path):
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x


# -- ArgSpec -----------------------------------------------------------------------------------


def test_argspec_of_function():
    def f(a, b=1, *args, c, d=2, **kw):
        pass

    spec = ArgSpec.of(f, bind=False)
    assert spec.positional == ("a", "b")
    assert spec.required == {"a", "c"}
    assert spec.keyword_only == {"c", "d"}
    assert spec.var_positional and spec.var_keyword
    assert spec.text == "(a, b=1, *args, c, d=2, **kw)"


def test_argspec_bind_drops_self():
    def f(self, a):
        pass

    spec = ArgSpec.of(f, bind=True)
    assert spec.positional == ("a",) and spec.text == "(a)"


def test_argspec_of_uninspectable_is_none():
    class NoSig:
        @property
        def __signature__(self):
            raise ValueError("no signature")

        def __call__(self, *a):
            return a

    assert ArgSpec.of(NoSig(), bind=False) is None


def test_check_messages():
    spec = ArgSpec.of(add.run, bind=False)
    with pytest.raises(TypeError) as info:
        spec.check("tasks.add", (1, 2, 3), {})
    assert str(info.value) == ("add(x, y) takes 2 positional arguments but 3 were given: "
                               "add(1, 2, 3) [task 'tasks.add']")
    with pytest.raises(TypeError, match="with 1 more argument prepended"):
        spec.check("tasks.add", (1, 2), {}, extra=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        spec.check("tasks.add", (), {"z": 1})
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        spec.check("tasks.add", (1,), {"x": 1})
    with pytest.raises(TypeError, match="missing required argument 'y'"):
        spec.check("tasks.add", (1,), {}, complete=True)
    with pytest.raises(TypeError, match="missing required arguments 'x', 'y'"):
        spec.check("tasks.add", (), {}, complete=True)
    spec.check("tasks.add", (1,), {}, extra=1, complete=True)  # fine
    spec.check("tasks.add", (), {"y": 1}, extra=1, complete=True)  # fine


def _f0(): pass
def _f2(x, y): pass
def _fdef(x, y=1, z=2): pass
def _fvar(x, *rest): pass
def _fkw(x, *, k): pass
def _fkwdef(x, *, k=1): pass
def _fpos(x, /, y, z=3): pass
def _fall(a, b=2, *rest, c=3, **kw): pass


@pytest.mark.parametrize("fn", [_f0, _f2, _fdef, _fvar, _fkw, _fkwdef, _fpos, _fall])
def test_complete_counts_agree_with_the_full_check(fn):
    """compile skips the full check for calls of ``n`` positional values inside the range:
    exactly those the full check lets through."""
    spec = ArgSpec.of(fn, bind=False)
    lo, hi = spec.complete_counts
    for n in range(7):
        for extra in (0, 1):
            if extra > n:
                continue
            try:
                spec.check("t", (0,) * (n - extra), {}, extra=extra, complete=True)
                ok = True
            except TypeError:
                ok = False
            assert ok == (lo <= n <= hi), (fn.__name__, n, extra)


def test_call_repr_cuts_long_values():
    assert call_repr("f", (1, "a"), {"k": None}) == "f(1, 'a', k=None)"
    text = call_repr("f", ("x" * 500,), {})
    assert len(text) < 80 and text.endswith("…)")


# -- at build time -----------------------------------------------------------------------------


def test_too_many_arguments_names_task_and_parameters():
    with pytest.raises(TypeError) as info:
        add.s(1, 2, 3)
    msg = str(info.value)
    assert "add(x, y)" in msg and "'arity.add'" in msg and "3 were given" in msg


def test_unexpected_and_duplicate_keywords():
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        add.s(z=1)
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        add.s(1, x=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'x'"):
        posonly.s(x=1)  # positional-only


def test_partial_signature_is_fine_until_sent():
    assert add.s(1).args == (1,)
    assert add.s().args == ()
    assert kwonly.s(1).args == (1,)


def test_incomplete_immutable_raises_at_build_time():
    with pytest.raises(TypeError, match="missing required argument 'y'.*'arity.add'"):
        add.si(1)
    with pytest.raises(TypeError, match="missing required argument 'k'"):
        kwonly.si(1)
    assert add.si(1, 2).args == (1, 2)


def test_varargs_accept_anything():
    assert star.s(1, 2, 3, a=4).args == (1, 2, 3)
    assert star.si().args == ()


def test_chain_step_that_cannot_take_parent_result_raises_at_build():
    with pytest.raises(TypeError, match=r"noargs\(\) takes 0 positional arguments but 1 was"):
        chain(add.s(1, 2), noargs.s())
    with pytest.raises(TypeError, match="noargs"):
        add.s(1, 2) | noargs.s()
    with pytest.raises(TypeError, match="noargs"):
        (add.s(1, 2) | add.s(1)) | noargs.s()
    with pytest.raises(TypeError, match="add"):
        chain(add.s(1, 2), add.s(1, 2))  # add(result, 1, 2): three arguments
    with pytest.raises(TypeError, match="add"):
        chain(add.s(1, 2), chain(add.s(1, 2), add.s(1)))  # flattened: first step checked
    # immutable steps take no parent result
    assert len(chain(add.s(1, 2), noargs.si()).tasks) == 2


def test_group_members_in_chain_are_checked():
    with pytest.raises(TypeError, match="noargs"):
        chain(add.s(1, 2), group(add.s(1), noargs.s()))


def test_chord_body_must_take_the_list():
    with pytest.raises(TypeError, match="noargs"):
        chord([add.s(1, 1)], noargs.s())
    with pytest.raises(TypeError, match="noargs"):
        chord([add.s(1, 1)])(noargs.s())
    with pytest.raises(TypeError, match="noargs"):
        group(add.s(1, 1)) | noargs.s()


def test_foreach_and_branch_parts_are_checked():
    with pytest.raises(TypeError, match="noargs"):
        nc.foreach(noargs.s())
    with pytest.raises(TypeError, match="noargs"):
        nc.branch(noargs.s(), add.s(1))
    with pytest.raises(TypeError, match="noargs"):
        nc.branch(add.s(1), noargs.s())
    with pytest.raises(TypeError, match="noargs"):
        nc.branch(add.s(1), add.s(1), noargs.s())


def test_clone_with_args_is_checked():
    with pytest.raises(TypeError, match="3 were given"):
        add.s(1, 2).clone((0,))
    assert add.si(1, 2).clone((0,)) == add.si(1, 2)  # immutable: ignored


# -- when sent: before anything runs -----------------------------------------------------------


def test_missing_argument_caught_at_apply_before_anything_runs(tmp_path):
    path = str(tmp_path / "ran")
    with pytest.raises(TypeError, match="missing required argument 'y'"):
        chain(record.s(1, path), add.s()).apply()  # add(1) would miss y
    with pytest.raises(TypeError, match="missing required argument 'y'"):
        group(record.s(1, path), add.s(1)).apply()
    with pytest.raises(TypeError, match="missing required argument 'k'"):
        chain(record.s(1, path), kwonly.s()).apply()
    assert not (tmp_path / "ran").exists()


def test_first_step_incomplete_caught_at_apply():
    with pytest.raises(TypeError, match=r"add\(x, y\) is missing required argument 'y'"):
        add.s(1).apply()
    assert add.s(1).apply(args=(2,)).get() == 3


def test_bad_callbacks_caught_at_apply(tmp_path):
    path = str(tmp_path / "ran")
    with pytest.raises(TypeError, match="noargs"):
        record.s(1, path).link(noargs.s()).apply()
    with pytest.raises(TypeError, match="noargs"):
        record.s(1, path).link_error(noargs.s()).apply()
    with pytest.raises(TypeError, match="add"):
        record.s(1, path).link_error(add.s(1, 2)).apply()
    assert not (tmp_path / "ran").exists()


def test_errback_taking_exc_and_traceback_is_accepted():
    assert add.s(1, 1).link_error(bound.s()).apply().get() == 2
    assert add.s(1, 1).link_error(defaults.s()).apply().get() == 2


def test_missing_argument_caught_at_delay_before_connecting(monkeypatch):
    import nbcanvas.cluster as cluster
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 0.2)
    dead = nc.App("test_arity_dead", address="tcp://127.0.0.1:9", set_as_current=False)
    t = dead.task(add.run, name="arity_dead.add")
    with pytest.raises(TypeError, match="missing required argument 'y'"):
        t.s(1).delay()
