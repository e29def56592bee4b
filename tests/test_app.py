"""nbcanvas.app: the App, its task registry, name lookup and task option validation."""
from __future__ import annotations

import pickle
import uuid
from datetime import timedelta

import pytest

import nbcanvas as nc
from nbcanvas.app import all_apps, current_app, default_app, lookup_task


def uniq(prefix: str = "t") -> str:
    """A name no other test registers (the registry is process-wide)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app():
    return nc.App(uniq("app"))


def module_level_add(x, y):
    return x + y


# -- registration ------------------------------------------------------------------------------


def test_task_decorator_registers_under_given_name(app):
    @app.task(name="test_app.add")
    def add(x, y):
        return x + y

    assert isinstance(add, nc.Task)
    assert add.name == "test_app.add"
    assert app.tasks["test_app.add"] is add
    assert app.get_task("test_app.add") is add
    assert add.app is app


def test_default_name_is_module_and_qualname(app):
    @app.task
    def add(x, y):
        return x + y

    assert add.name == f"{__name__}.test_default_name_is_module_and_qualname.<locals>.add"
    assert add.name == f"{add.run.__module__}.{add.run.__qualname__}"
    t = app.task(module_level_add)
    assert t.name == f"{__name__}.module_level_add"


def test_task_as_function_call_with_name(app):
    t = app.task(module_level_add, name="math.plus")
    assert t.name == "math.plus"
    assert t(1, 2) == 3
    assert app.get_task("math.plus") is t


def test_decorator_with_options_but_no_name(app):
    @app.task(max_retries=5)
    def add(x, y):
        return x + y

    assert add.name.endswith(".add")
    assert add.max_retries == 5
    assert add.options == {"max_retries": 5}


def test_module_level_task_registers_on_default_app():
    name = uniq("nc.task")

    @nc.task(name=name)
    def mul(x, y):
        return x * y

    assert default_app.tasks[name] is mul
    assert mul.app is default_app
    assert mul(3, 4) == 12


def test_reregistering_replaces(app):
    @app.task(name="test_app.v")
    def v1():
        return 1

    @app.task(name="test_app.v")
    def v2():
        return 2

    assert app.get_task("test_app.v") is v2
    assert len([n for n in app.tasks if n == "test_app.v"]) == 1


def test_registering_a_non_callable_raises(app):
    with pytest.raises(TypeError, match="needs a function"):
        app.task(name="x")(42)


def test_calling_the_task_runs_the_function(app):
    calls = []

    @app.task
    def add(x, y):
        calls.append((x, y))
        return x + y

    assert add(2, 3) == 5
    assert add(x=1, y=1) == 2
    assert calls == [(2, 3), (1, 1)]


def test_bind_true_passes_the_task_as_self(app):
    @app.task(bind=True, name="test_app.whoami")
    def whoami(self, x):
        return self, x

    me, x = whoami(7)
    assert me is whoami and x == 7
    assert whoami.bind is True
    assert me.request.retries == 0


def test_repr_and_metadata(app):
    @app.task(name="test_app.documented", bind=True)
    def documented(self):
        """Docstring kept."""

    assert repr(documented) == "<@task: test_app.documented (bound)>"
    assert documented.__doc__ == "Docstring kept."
    assert documented.__name__ == "documented"
    assert documented.__wrapped__ is documented.run
    assert repr(app).startswith(f"<App {app.main!r}: 1 task")


# -- lookup ------------------------------------------------------------------------------------


def test_short_name_lookup_when_unique(app):
    short = uniq("short")

    @app.task(name=f"proj.sub.{short}")
    def f():
        return 1

    assert app.get_task(short) is f
    assert lookup_task(short) is f
    assert nc.signature(short).task == f"proj.sub.{short}"


def test_ambiguous_short_name_lists_candidates(app):
    short = uniq("dup")
    app.task(module_level_add, name=f"a.{short}")
    app.task(module_level_add, name=f"b.{short}")
    with pytest.raises(nc.NotRegistered) as info:
        app.get_task(short)
    msg = str(info.value)
    assert "ambiguous" in msg
    assert f"'a.{short}'" in msg and f"'b.{short}'" in msg
    assert isinstance(info.value, KeyError)
    # the full names still work
    assert app.get_task(f"a.{short}").name == f"a.{short}"


def test_ambiguity_across_apps(app):
    short = uniq("across")
    other = nc.App(uniq("other"))
    app.task(module_level_add, name=f"one.{short}")
    other.task(module_level_add, name=f"two.{short}")
    with pytest.raises(KeyError, match="ambiguous"):
        lookup_task(short)
    assert app.get_task(short).name == f"one.{short}"  # one app alone: unique


def test_unknown_name_suggests_the_closest(app):
    app.task(module_level_add, name="test_app.process_image")
    with pytest.raises(nc.NotRegistered) as info:
        app.get_task("test_app.proces_image")
    msg = str(info.value)
    assert "no task named 'test_app.proces_image'" in msg
    assert "did you mean 'test_app.process_image'" in msg
    with pytest.raises(KeyError, match="did you mean"):
        app.get_task("process_imag")


def test_unknown_name_in_signature_raises_not_registered():
    with pytest.raises(nc.NotRegistered, match="no task named"):
        nc.signature(uniq("nope") + ".missing", args=(1,))


def test_lookup_searches_every_app():
    name = uniq("elsewhere")
    a = nc.App(uniq("a"))
    t = a.task(module_level_add, name=name)
    nc.App(uniq("b"))  # now current: lookup still finds the task of the other app
    assert lookup_task(name) is t


def test_current_app_is_the_last_created():
    a = nc.App(uniq("cur"))
    assert current_app() is a
    assert all_apps()[0] is a
    b = nc.App(uniq("notcur"), set_as_current=False)
    assert current_app() is a
    assert b in all_apps()


def test_set_current_decides_which_app_a_name_resolves_in():
    name = uniq("same") + ".add"
    a = nc.App(uniq("a"))
    ta = a.task(module_level_add, name=name)
    b = nc.App(uniq("b"))
    tb = b.task(module_level_add, name=name)
    assert current_app() is b and lookup_task(name) is tb
    assert a.set_current() is a
    assert current_app() is a and lookup_task(name) is ta
    assert nc.signature(name, args=(1, 2)).type is ta
    b.set_current()
    assert nc.signature(name, args=(1, 2)).type is tb


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["acks_late", "serializer", "rate_limit", "ignore_result",
                                    "reject_on_worker_lost", "base"])
def test_meaningless_celery_option_is_refused_by_name(app, option):
    with pytest.raises(nc.ImproperlyConfigured) as info:
        app.task(module_level_add, **{option: True})
    assert repr(option) in str(info.value)
    assert "means nothing here" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not any(t.run is module_level_add for t in app.tasks.values())


def test_unknown_option_gets_a_suggestion(app):
    with pytest.raises(nc.ImproperlyConfigured, match=r"unknown option 'max_retry'.*"
                                                      r"did you mean 'max_retries'"):
        app.task(module_level_add, max_retry=3)
    with pytest.raises(ValueError, match="autoretry_for"):
        app.task(module_level_add, autoretry=(IOError,))


@pytest.mark.parametrize("options", [
    {"max_retries": -1}, {"max_retries": "3"}, {"max_retries": True},
    {"time_limit": -5}, {"time_limit": "soon"}, {"default_retry_delay": -1},
    {"autoretry_for": (IOError, "ValueError")}, {"autoretry_for": 42},
    {"resources": ["GPU"]}, {"resources": {"GPU": "one"}}, {"priority": 1.5},
])
def test_bad_option_values_are_refused(app, options):
    (key,) = options
    with pytest.raises(nc.ImproperlyConfigured, match=key):
        app.task(module_level_add, **options)


def test_valid_options_are_kept(app):
    t = app.task(module_level_add, name=uniq("opts"), max_retries=None, autoretry_for=IOError,
                 retry_backoff=True, retry_backoff_max=60, retry_jitter=False,
                 default_retry_delay=0, priority=3, resources={"GPU": 1}, workers=["w1"],
                 pure=True, time_limit=10, soft_time_limit=5)
    assert t.options["autoretry_for"] == (IOError,)  # one type becomes a tuple
    assert t.max_retries is None
    assert t.default_retry_delay == 0
    assert t.options["resources"] == {"GPU": 1}


def test_task_defaults():
    app = nc.App(uniq("defaults"))
    t = app.task(module_level_add)
    assert t.max_retries == 3
    assert t.default_retry_delay == 180
    assert t.bind is False and t.options == {}


# -- where it runs (kept opaque here) ----------------------------------------------------------


def test_client_and_address_together_are_refused():
    with pytest.raises(nc.ImproperlyConfigured, match="not both"):
        nc.App(uniq("both"), client=object(), address="tcp://127.0.0.1:8786")


@pytest.mark.parametrize("target", [42, None, object()])
def test_connect_refuses_what_is_not_an_address_or_client(app, target):
    with pytest.raises(nc.ImproperlyConfigured, match="scheduler address"):
        app.connect(target)


def test_connect_returns_the_app_and_connects_nothing(app):
    assert app.connect("tcp://10.0.0.5:8786") is app
    assert app._target == "tcp://10.0.0.5:8786"


# -- pickling ----------------------------------------------------------------------------------


def test_app_pickles_without_its_client():
    a = nc.App(uniq("pickled"), address="tcp://10.0.0.5:8786", set_as_current=False)
    b = pickle.loads(pickle.dumps(a))
    assert b.main == a.main and b._target is None and b.tasks == {}
    assert current_app() is not b


def test_app_pickles_with_its_result_expires():
    a = nc.App(uniq("expiring"), result_expires=90, set_as_current=False)
    assert pickle.loads(pickle.dumps(a)).result_expires == 90.0
    assert pickle.loads(pickle.dumps(nc.App(uniq("kept"), set_as_current=False))).result_expires \
        is None


def test_task_pickles_by_name_and_function(app):
    t = app.task(module_level_add, name=uniq("pickle.add"), max_retries=1)
    u = pickle.loads(pickle.dumps(t))
    assert u.name == t.name and u.run is module_level_add
    assert u.options == {"max_retries": 1}
    assert u(2, 2) == 4


def test_callables_without_a_qualname_need_a_name(app):
    import functools

    part = functools.partial(module_level_add, 1)
    with pytest.raises(TypeError, match="give a name"):
        app.task(part)
    t = app.task(part, name=uniq("partial") + ".add1")
    assert t(2) == 3
    assert t.s(2).apply().get() == 3
    with pytest.raises(TypeError, match="1 positional argument but 2 were given"):
        t.s(1, 2)


@pytest.mark.parametrize("value", [-1, "1h", True, float("nan"), [3]])
def test_a_result_expires_that_means_nothing_is_refused(value):
    with pytest.raises(nc.ImproperlyConfigured, match="result_expires"):
        nc.App("bad-expiry", result_expires=value, set_as_current=False)


def test_result_expires_set_later_is_checked_too_and_loses_nothing():
    app = nc.App("expiry-later", set_as_current=False)
    assert app.result_expires is None  # by default results stay until forget()
    app.result_expires = timedelta(seconds=30)
    assert app.result_expires == 30.0
    with pytest.raises(nc.ImproperlyConfigured, match="negative"):
        app.result_expires = -5
    assert app.result_expires == 30.0
    app.result_expires = 0  # Celery's "never"
    assert app.result_expires is None


def test_lookup_by_short_name_while_another_thread_registers(app):
    """A worker thread of the threads pool registers tasks as it unpickles them; a lookup by
    short name walks every app's registry meanwhile and must not see it change under it."""
    from tests.racing import no_race

    for i in range(2000):
        app.task(module_level_add, name=f"{app.main}.filler{i}")
    target = app.task(module_level_add, name=f"{app.main}.lookup_target")

    def read() -> None:
        assert lookup_task("lookup_target") is target
    no_race(lambda i: app.task(module_level_add, name=f"{app.main}.more{i}"), read)
