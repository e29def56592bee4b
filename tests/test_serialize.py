"""nbcanvas.serialize: every canvas <-> plain JSON, through the registry only."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest

import nbcanvas as nc
from nbcanvas import Signature, chain, chord, group
from nbcanvas.serialize import SCHEMA_VERSION, decode_value, encode_value, from_dict, to_dict

from .growth import assert_linear

app = nc.App("test_serialize")


@app.task(name="ser.add")
def add(x, y):
    return x + y


@app.task(name="ser.inc")
def inc(x):
    return x + 1


@app.task(name="ser.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="ser.anything")
def anything(*args, **kwargs):
    return [list(args), kwargs]


def via_json(sig):
    """``sig`` through to_dict, json.dumps, json.loads and from_dict."""
    text = json.dumps(sig.to_dict())
    return Signature.from_dict(json.loads(text))


def _nested_chord(depth):
    if depth == 0:
        return add.s(1, 1)
    return chord([_nested_chord(depth - 1), inc.s(1)], tsum.s())


CANVASES = {
    "signature": lambda: add.s(2, 2),
    "partial": lambda: add.s(2),
    "immutable": lambda: add.si(2, 2),
    "kwargs": lambda: add.s(1, y=2),
    "options": lambda: add.s(1, 1).set(countdown=1.5, priority=3, max_retries=None,
                                        resources={"GPU": 1}, autoretry_for=(OSError,)),
    "callbacks": lambda: add.s(1, 1).link(inc.s()).link_error(anything.s("x")),
    "chain": lambda: add.s(1, 1) | inc.s() | inc.s(),
    "group": lambda: group(add.s(i, i) for i in range(5)),
    "empty group": lambda: group(),
    "chord": lambda: chord([add.s(1, 1), add.s(2, 2)], tsum.s()),
    "chord without body": lambda: chord([add.s(1, 1)]),
    "map": lambda: inc.map([1, 2, 3]),
    "starmap": lambda: add.starmap([(1, 2), (3, 4)]),
    "map with options": lambda: inc.map([1]).set(priority=1).link(inc.s()),
    "chunks": lambda: add.chunks([(1, 2), (3, 4), (5, 6)], 2),
    "chunks with options": lambda: add.chunks([(1, 2)], 1).set(priority=2),
    "chunks in a chord": lambda: chord(add.chunks([(1, 2)] * 3, 2).group(), tsum.s()),
    "foreach": lambda: chain(anything.s(), nc.foreach(inc.s())),
    "foreach with input": lambda: nc.foreach(inc.s()).clone(([1, 2],)),
    "branch": lambda: nc.branch(inc.s(), add.s(1), group(inc.s(), inc.s())),
    "branch no otherwise": lambda: nc.branch(inc.s(), add.s(1)),
    "nested": lambda: chain(add.s(1, 1), group(chain(inc.s(), inc.s()), chord([inc.s()],
                                                                                tsum.s())),
                            tsum.s().set(priority=1), nc.foreach(chain(inc.s(), inc.s())))
    .link(anything.s()),
    "nested chords": lambda: _nested_chord(6),
    "chain with options": lambda: chain(add.s(1, 1), inc.s()).set(priority=2).link(inc.s()),
    "group of chains with options": lambda: group(chain(add.s(1, 1), inc.s()).set(priority=1),
                                                  add.s(3, 3)).set(priority=2),
    "odd values": lambda: anything.s((1, (2, 3)), {"a": [1, (2,)]}, {1: "int key"},
                                     {"__tuple__": "looks tagged"}, None, True, 1.5, "é",
                                     k=(1,), kk={2: (3,)}, sig=inc.s(1)),
    "exception type arg": lambda: anything.s(ValueError),
}


@pytest.mark.parametrize("name", list(CANVASES))
def test_round_trip_is_equality(name):
    sig = CANVASES[name]()
    back = via_json(sig)
    assert back == sig
    assert type(back) is type(sig)
    assert back.to_dict() == sig.to_dict()


@pytest.mark.parametrize("name", list(CANVASES))
def test_round_trip_of_frozen_canvas_keeps_ids(name):
    sig = CANVASES[name]().freeze()
    back = via_json(sig)
    assert back == sig
    assert back.id == sig.id


def test_output_is_plain_json_types_with_tag_and_version():
    d = chain(add.s(1, 1), inc.s()).to_dict()
    assert d["nbcanvas"] == SCHEMA_VERSION == 1
    assert d["type"] == "chain"
    assert d["tasks"][0] == {"type": "signature", "task": "ser.add", "args": [1, 1]}
    assert "nbcanvas" not in d["tasks"][0]  # the version only at the top

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return isinstance(v, (str, int, float, bool, type(None)))

    for make in CANVASES.values():
        assert plain(make().to_dict())


def test_types_survive():
    sig = anything.s((1, 2), {3: 4}, [5, (6,)])
    back = via_json(sig)
    assert back.args == ((1, 2), {3: 4}, [5, (6,)])
    assert type(back.args[0]) is tuple
    opts = via_json(add.s(1, 1).set(autoretry_for=(OSError, KeyError))).options
    assert opts["autoretry_for"] == (OSError, KeyError)


def test_round_trip_runs_the_same():
    sig = chain(add.s(1, 1), group(chain(inc.s(), inc.s()), chord([inc.s()], tsum.s())),
                nc.foreach(chain(inc.s(), inc.s())))
    assert via_json(sig).apply().get() == sig.apply().get() == [6, 5]


def test_1000_deep_chain_and_10k_group_no_recursion_error():
    c = add.s(0, 0)
    for _ in range(999):
        c = c | inc.s()
    assert via_json(c) == c
    g = group(add.s(i, i) for i in range(10_000))
    assert via_json(g) == g
    assert via_json(chord(g, tsum.s())) == chord(g, tsum.s())


def test_deeply_nested_within_recursion_limit():
    c = _nested_chord(40)
    assert via_json(c) == c


def test_to_dict_from_dict_are_linear():
    def group_round_trip(n):
        g = group(add.s(i, i) for i in range(n))
        return lambda: Signature.from_dict(g.to_dict())

    def chain_round_trip(n):
        c = chain(add.s(0, 0), *[inc.s() for _ in range(n)])
        return lambda: Signature.from_dict(c.to_dict())

    assert_linear(group_round_trip, 1500)
    assert_linear(chain_round_trip, 500)


# -- safety ------------------------------------------------------------------------------------


def test_unregistered_task_raises_and_imports_nothing():
    code = r"""
import sys, nbcanvas as nc, nbcanvas.serialize
from nbcanvas.errors import NotRegistered
before = set(sys.modules)
assert "smtplib" not in before and "antigravity" not in before
for name in ("os.system", "smtplib.SMTP", "antigravity.fly", "builtins.eval", "subprocess.run"):
    for d in ({"nbcanvas": 1, "type": "signature", "task": name, "args": ["echo hacked"]},
              {"type": "xmap", "task": name, "items": ["x"]},
              {"type": "chain", "tasks": [{"type": "signature", "task": name}]}):
        try:
            nc.Signature.from_dict(d)
        except NotRegistered as e:
            assert isinstance(e, KeyError)
        else:
            raise SystemExit("no error for " + name)
for d in ({"type": "signature", "task": "ser.x", "args": [{"__exception__": "smtplib.SMTPException"}]},):
    try:
        nc.Signature.from_dict(d)
    except (ValueError, KeyError):
        pass
new = set(sys.modules) - before
assert not new, sorted(new)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_unregistered_task_in_process():
    before = set(sys.modules)
    with pytest.raises(nc.NotRegistered, match="no task named 'os.system'"):
        Signature.from_dict({"nbcanvas": 1, "type": "signature", "task": "os.system",
                             "args": ["echo hacked"]})
    with pytest.raises(nc.NotRegistered):
        nc.signature({"type": "signature", "task": "ser.nope"})
    assert set(sys.modules) == before


def test_exception_types_are_resolved_only_when_loaded():
    assert decode_value({"__exception__": "builtins.ValueError"}) is ValueError
    assert decode_value({"__exception__": "nbcanvas.errors.Retry"}) is nc.Retry
    with pytest.raises(ValueError, match="not loaded"):
        decode_value({"__exception__": "no_such_module_xyz.Error"})
    with pytest.raises(ValueError, match="not loaded"):
        decode_value({"__exception__": "builtins.print"})  # not an exception type
    assert "no_such_module_xyz" not in sys.modules


@pytest.mark.parametrize("bad, match", [
    ([], "expected a dict"),
    ("signature", "expected a dict"),
    ({}, "no 'type' field"),
    ({"type": 3}, "field 'type'"),
    ({"type": "spaceship"}, "unknown canvas type"),
    ({"nbcanvas": 99, "type": "signature", "task": "ser.add"}, "schema version 99"),
    ({"type": "signature"}, "no 'task' field"),
    ({"type": "signature", "task": 5}, "field 'task'"),
    ({"type": "chain"}, "no 'tasks' field"),
    ({"type": "chain", "tasks": "abc"}, "field 'tasks'"),
    ({"type": "group", "tasks": [5]}, "expected a dict"),
    ({"type": "chord"}, "no 'header' field"),
    ({"type": "chord", "header": []}, "field 'header'"),
    ({"type": "foreach"}, "no 'body' field"),
    ({"type": "branch", "cond": {"type": "signature", "task": "ser.inc"}}, "no 'then' field"),
    ({"type": "xmap", "task": "ser.inc"}, "no 'items' field"),
    ({"type": "chunks", "task": "ser.add", "items": [[1, 2]]}, "no 'n' field"),
    ({"type": "chunks", "task": "ser.add", "items": [1], "n": 1}, "lists of arguments"),
    ({"type": "chunks", "task": "ser.add", "items": [[1, 2]], "n": 0}, "positive int"),
    ({"type": "signature", "task": "ser.inc", "id": 5}, "field 'id'"),
    ({"type": "signature", "task": "ser.inc", "links": {}}, "field 'links'"),
    ({"type": "signature", "task": "ser.inc", "args": 5}, "args"),
    ({"type": "signature", "task": "ser.inc", "kwargs": [1]}, "kwargs"),
    ({"type": "signature", "task": "ser.inc", "options": "x"}, "options"),
    ({"type": "signature", "task": "ser.inc", "args": [{"__tuple__": 5}]}, "__tuple__"),
    ({"type": "signature", "task": "ser.inc", "args": [{"__dict__": 5}]}, "__dict__"),
    ({"type": "signature", "task": "ser.inc", "args": [{"__dict__": [[1]]}]}, "__dict__"),
    ({"type": "signature", "task": "ser.inc", "args": [{"__dict__": [[[1], 2]]}]},
     "unhashable"),
    ({"type": "signature", "task": "ser.inc", "args": [{"__signature__": 5}]}, "expected a dict"),
    ({"type": "signature", "task": "ser.inc", "args": [{"__exception__": "os.path"}]},
     "not loaded"),
])
def test_malformed_dicts_raise_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        Signature.from_dict(bad)


def test_arity_and_options_are_checked_on_load():
    with pytest.raises(TypeError, match="3 were given"):
        Signature.from_dict({"type": "signature", "task": "ser.add", "args": [1, 2, 3]})
    with pytest.raises(nc.ImproperlyConfigured, match="acks_late"):
        Signature.from_dict({"type": "signature", "task": "ser.add",
                             "options": {"acks_late": True}})


def test_strict_refuses_non_json_values_and_names_them():
    with pytest.raises(TypeError, match=r"^signature 'anything' argument 1: object value .*"
                                        r"has no JSON form"):
        anything.s(1, object()).to_dict()
    with pytest.raises(TypeError, match=r"^signature 'anything' argument 'k': set value"):
        anything.s(j=1, k={1, 2}).to_dict()
    with pytest.raises(TypeError, match=r"^signature 'anything' option 'expires': datetime"):
        anything.s().set(expires=datetime.datetime(2030, 1, 1)).to_dict()
    d = anything.s(object(), k={1, 2}).to_dict(strict=False)
    json.dumps(d)
    back = Signature.from_dict(d)
    assert back.args[0].startswith("<<object object at")
    assert back.kwargs["k"] == "<{1, 2}>"


def test_encode_value_tags():
    assert encode_value((1, 2), "x") == {"__tuple__": [1, 2]}
    assert encode_value({1: 2}, "x") == {"__dict__": [[1, 2]]}
    assert encode_value({"__x": 1}, "x") == {"__dict__": [["__x", 1]]}
    assert decode_value(encode_value({"__tuple__": [1]}, "x")) == {"__tuple__": [1]}
    assert to_dict(add.s(1, 1)) == add.s(1, 1).to_dict()
    assert from_dict(add.s(1, 1).to_dict()) == add.s(1, 1)


def test_nested_150_levels_round_trip_and_run():
    c = inc.s(0)
    for _ in range(150):
        c = chain(c, inc.s()).set(priority=1)  # options keep the chains from flattening
    assert via_json(c) == c
    f = c.freeze()
    assert via_json(f) == f
    assert c.apply().get() == 151
