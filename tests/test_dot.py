"""nbcanvas.dot: canvases drawn as Graphviz graphs.

DOT snapshots need no ``dot`` binary: ``NBCANVAS_UPDATE_SNAPSHOTS=1 pytest tests/test_dot.py``
rewrites them in ``tests/snapshots/dot/``, a normal run compares. SVG tests are marked
``needs_dot`` and skipped without the binary.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import graphviz
import pytest

import nbcanvas as nc
from nbcanvas import Signature, branch, chain, chord, foreach, group, signature
from nbcanvas.dot import CALL_WIDTH, STATE_COLOURS, canvas_graph, node_attrs, state_colour

SNAPSHOTS = Path(__file__).parent / "snapshots" / "dot"
UPDATE = os.environ.get("NBCANVAS_UPDATE_SNAPSHOTS") == "1"


def needs_dot(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test ``needs_dot`` and skip it without Graphviz's ``dot`` binary."""
    skip = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot binary")
    return pytest.mark.needs_dot(skip(test))


app = nc.App("test-dot")
t = app.task


@t(name="tasks.add")
def add(x, y):
    return x + y


@t(name="tasks.fetch_data")
def fetch_data(user_id):
    return {"user_id": user_id, "data": "raw_data"}


@t(name="tasks.process_data")
def process_data(data):
    return data


@t(name="tasks.save_result")
def save_result(data):
    return "1"


@t(name="tasks.process_image")
def process_image(image_id):
    return f"processed_image_{image_id}"


@t(name="tasks.fetch_user_data")
def fetch_user_data(user_id):
    return {"user_id": user_id, "posts": 10}


@t(name="tasks.aggregate_stats")
def aggregate_stats(results):
    return {"total_users": len(results)}


@t(name="tasks.fetch_source_a")
def fetch_source_a():
    return "data_from_source_a"


@t(name="tasks.fetch_source_b")
def fetch_source_b():
    return "data_from_source_b"


@t(name="tasks.process_batch")
def process_batch(data):
    return f"processed_{data}"


@t(name="tasks.combine_results")
def combine_results(results):
    return f"combined_{results}"


@t(name="tasks.validate_input")
def validate_input(data):
    return data


@t(name="tasks.process_valid")
def process_valid(data):
    return f"processed_{data['user_id']}"


@t(name="tasks.handle_error", bind=True)
def handle_error(self, exc, traceback):
    return None


@t(name="tasks.send_success_notification")
def send_success_notification(result):
    return None


@t(name="tasks.send_failure_notification")
def send_failure_notification(exc):
    return None


@t(name="tasks.fetch_and_process")
def fetch_and_process(user_id):
    return user_id


@t(name="tasks.aggregate_results")
def aggregate_results(results):
    return len(results)


@t(name="tasks.task_a")
def task_a():
    return 10


@t(name="tasks.task_b")
def task_b(x):
    return x * 2


@t(name="tasks.task_c")
def task_c(x):
    return x * 3


@t(name="tasks.is_big")
def is_big(x):
    return x > 5


@t(name="tasks.handle_failure")
def handle_failure(exc):
    return None


@t(name="tasks.long_step", bind=True)
def long_step(self, data):
    return data


@t(name="tasks.aggregate")
def aggregate(results):
    return results


@t(name="tasks.validate")
def validate(data):
    return data


@t(name="tasks.process")
def process(data, user_id):
    return data


@t(name="tasks.save")
def save(data):
    return data


def my_workflow(data: Any, user_id: int) -> Any:
    """The seed's reusable workflow template."""
    return chain(validate.s(data), process.s(user_id), save.s())


# Every canvas of the seed text (and the nbcanvas additions), by snapshot name.
SEED: dict[str, Callable[[], Any]] = {
    "signature_s": lambda: add.s(2, 2),
    "signature_by_name": lambda: signature("tasks.add", args=(2, 2)),
    "partial": lambda: add.s(2),
    "chain_fetch_process_save": lambda: chain(fetch_data.s(user_id=42), process_data.s(),
                                              save_result.s()),
    "group_process_image": lambda: group(process_image.s(i) for i in range(1, 6)),
    "chord_user_stats": lambda: chord([fetch_user_data.s(i) for i in range(1, 6)])(
        aggregate_stats.s()),
    "chains_of_groups": lambda: chain(group(fetch_source_a.s(), fetch_source_b.s()),
                                      chord([process_batch.s()])(combine_results.s())),
    "error_handling": lambda: chain(validate_input.s({"user_id": 42}), process_valid.s())
    .link_error(handle_error.s()),
    "link_and_link_error": lambda: chain(fetch_data.s(42), process_data.s())
    .link(send_success_notification.s()).link_error(send_failure_notification.s()),
    "programmatic_chord": lambda: chord([fetch_and_process.s(u) for u in [1, 2, 3, 4, 5]])(
        aggregate_results.s()),
    "chain_mutable": lambda: chain(task_a.s(), task_b.s()),
    "chain_immutable": lambda: chain(task_a.s(), task_b.si(5)),
    "monitoring_chord": lambda: chord([long_step.s(i) for i in range(3)])(aggregate.s()),
    "faq_chain_vs_group": lambda: group(task_a.s(), task_a.s(), task_a.s()),
    "faq_branching": lambda: task_a.s() | branch(is_big.s(), task_b.s(), task_c.s()),
    "faq_failures": lambda: chain(task_a.s(), task_b.s()).link_error(handle_failure.s()),
    "faq_cancel": lambda: chain(long_step.s(1), long_step.s(), long_step.s()),
    "faq_template": lambda: my_workflow({"key": "value"}, 42),
    # nbcanvas beyond the seed
    "foreach": lambda: fetch_data.s(1) | foreach(process_data.s() | save_result.s())
    | aggregate.s(),
    "branch_passthrough": lambda: task_a.s() | branch(is_big.s(), task_b.s()) | task_c.s(),
    "xmap_starmap_chunks": lambda: group(task_b.map([1, 2, 3]), add.starmap([(1, 2), (3, 4)]),
                                         add.chunks([(i, i) for i in range(5)], 2)),
    "group_then_group": lambda: group(task_a.s(), task_a.s()) | group(task_b.s(), task_c.s()),
    "group_link": lambda: group(task_a.s(), task_a.s()).link(aggregate.s()),
    "collapsed_10k": lambda: fetch_data.s(1) | group(process_image.s() for _ in range(10_000))
    | aggregate.s(),
    "empty": lambda: group(),
}


def assert_snapshot(name: str, text: str) -> None:
    """Compare ``text`` with ``tests/snapshots/dot/<name>.dot``, or rewrite it when updating."""
    path = SNAPSHOTS / f"{name}.dot"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path}: run NBCANVAS_UPDATE_SNAPSHOTS=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8"), f"DOT of {name!r} changed"


def nodes(source: str) -> list[str]:
    """The node statements of a DOT text (not graph/node/edge defaults, not edges)."""
    return [line for line in source.splitlines()
            if "[" in line and "->" not in line and not re.match(r"\s*(graph|node|edge) \[", line)]


def line_of(source: str, text: str) -> str:
    """The one line of ``source`` that contains ``text``."""
    hits = [line for line in source.splitlines() if text in line]
    assert len(hits) == 1, (text, hits)
    return hits[0]


def node_line(source: str, name: str) -> str:
    """The statement of node ``name``."""
    return line_of(source, f'\t"{name}" [')


# -- snapshots -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SEED))
def test_seed_canvas_snapshot(name: str) -> None:
    assert_snapshot(name, SEED[name]().to_dot())


@pytest.mark.parametrize("name", sorted(SEED))
def test_dot_is_deterministic_and_the_same_from_the_dict_form(name: str) -> None:
    """A dict form names its tasks; their argument slots come from the registry, the current
    app first (other test modules register their own ``tasks.add``): this module's app is made
    current for the comparison, as a notebook's own app is."""
    sig = SEED[name]()
    assert sig.to_dot() == SEED[name]().to_dot()
    if name != "xmap_starmap_chunks":  # chunks have no dict form (drawn via freeze)
        from nbcanvas.app import lookup_task
        before = nc.current_app()
        app.set_current()
        try:
            spec = lookup_task(sig.task).argspec if type(sig) is Signature else None
            assert canvas_graph(sig.to_dict(strict=False)).source == sig.to_dot(), (
                "the registry's spec of the task:", spec and spec.text)
        finally:
            before.set_current()


def test_graph_returns_a_digraph_and_to_dot_its_source() -> None:
    sig = SEED["chord_user_stats"]()
    g = sig.graph()
    assert isinstance(g, graphviz.Digraph)
    assert g.source == sig.to_dot()
    assert sig.graph(rankdir="TB").source.count("rankdir=TB") == 1


# -- visual grammar -----------------------------------------------------------------------------
def test_grammar_open_slot_immutable_and_chord_fan_in() -> None:
    src = SEED["chain_immutable"]().to_dot()
    assert 'label="task_a()"' in src and 'label="task_b.si(5)"' in src
    assert "n1 -> n2 [arrowhead=empty color=gray55 style=dashed]" in src
    src = SEED["chain_fetch_process_save"]().to_dot()
    assert 'label="fetch_data(user_id=42)"' in src and 'label="process_data(◦)"' in src
    src = SEED["chord_user_stats"]().to_dot()
    assert "subgraph cluster_" in src and "label=chord" in src
    assert sum(1 for line in src.splitlines() if re.search(r"n\d+ -> n7$", line)) == 5


def test_grammar_callbacks_and_branch() -> None:
    src = SEED["link_and_link_error"]().to_dot()
    link = line_of(src, "label=link ")
    err = line_of(src, "label=link_error")
    assert "style=dotted" in link and "ltail=cluster_1" in link
    assert "style=dashed" in err and "#c62828" in err
    src = SEED["faq_branching"]().to_dot()
    assert 'label="is_big(◦) ?" shape=diamond' in src
    assert "[label=true]" in src and "[label=false]" in src
    src = SEED["foreach"]().to_dot()
    assert "shape=cds" in src and "arrowhead=crow" in src


def test_unknown_registry_dict_still_draws() -> None:
    d = {"type": "chain", "tasks": [{"type": "signature", "task": "elsewhere.step", "args": [1]},
                                     {"type": "signature", "task": "elsewhere.step"}]}
    src = canvas_graph(d).source
    assert 'label="step(1)"' in src and 'label="step(◦)"' in src


# -- escaping -----------------------------------------------------------------------------------
EVIL = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a\\nb\\", 'say "hi"',
        "x" * 1000, "<<b>bold</b>>", "\\l\\N\\G"]


@pytest.mark.parametrize("value", EVIL)
def test_labels_from_user_data_are_quoted_and_cut(value: str) -> None:
    src = chain(process_data.s(value), save_result.s()).link_error(handle_failure.s()).to_dot()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # graphviz warns on a label that would not scan
        labels = re.findall(r'label=("(?:[^"\\]|\\.)*"|\S+)', src)
    assert labels and not any(lab.startswith("<") for lab in labels)  # never an HTML label
    shown = line_of(src, "process_data(")
    assert len(shown.split('"')[1]) <= 2 * CALL_WIDTH  # cut (escapes may double a character)


def test_meta_and_dict_keys_are_escaped_too() -> None:
    sig = process_data.s({"<k>": "\\"}).freeze()
    src = sig.to_dot(states={sig.id: "PROGRESS"}, meta={sig.id: "<b>50%\\"})
    label = line_of(src, "process_data").split("label=")[1]
    assert label.startswith('"process_data({') and "\\\\" in label and "<b>50%\\\\" in label


def test_long_arguments_do_bounded_work() -> None:
    src = process_data.s(list(range(1_000_000))).to_dot()
    assert 'label="process_data([0, 1, 2, 3, 4, 5, 6, 7…)"' in line_of(src, "process_data")


@needs_dot
@pytest.mark.parametrize("value", EVIL)
def test_svg_never_contains_raw_markup_from_arguments(value: str) -> None:
    sig = chain(process_data.s(value), save_result.s(), add.s(y=value)).link(aggregate.s())
    svg = sig.graph().pipe(format="svg", encoding="utf-8")
    for raw in ("<script", "<img", "<b>", "onerror=alert(1)>"):
        assert raw not in svg
    assert svg.count("<g id=\"node") == 4


@needs_dot
def test_svg_keeps_backslashes_and_quotes_literal() -> None:
    svg = process_data.s('a\\nb "q"').graph().pipe(format="svg", encoding="utf-8")
    text = "".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))
    assert "process_data(&#39;a\\\\nb &quot;q&quot;&#39;)" in text or \
        "process_data('a\\\\nb \"q\"')" in text


# -- collapsing ---------------------------------------------------------------------------------
def test_groups_collapse_past_the_threshold() -> None:
    twenty = group(process_image.s(i) for i in range(20)).to_dot()
    assert len(nodes(twenty)) == 20 and "subgraph cluster_1" in twenty
    src = group(process_image.s(i) for i in range(21)).to_dot()
    assert len(nodes(src)) == 1
    assert 'label="process_image × 21\\nprocess_image(0) … process_image(20)" shape=box3d' in src
    assert len(nodes(group(process_image.s(i) for i in range(5)).to_dot(collapse=3))) == 1
    assert len(nodes(group(process_image.s(i) for i in range(50)).to_dot(collapse=None))) == 50


def test_mixed_group_collapses_under_its_kind() -> None:
    src = group([*(task_a.s() for _ in range(30)), task_b.s(1)]).to_dot()
    assert 'label="group × 31\\ntask_a() … task_b(1)"' in src


def test_10k_group_is_a_few_nodes() -> None:
    src = SEED["collapsed_10k"]().to_dot()
    assert len(nodes(src)) == 3 and len(src) < 2_000
    assert "process_image × 10,000" in src


@needs_dot
def test_10k_group_renders_to_svg() -> None:
    svg = SEED["collapsed_10k"]().graph().pipe(format="svg", encoding="utf-8")
    assert "process_image × 10,000" in svg and svg.count('class="node"') == 3


# -- states: the live view ----------------------------------------------------------------------
def test_state_colours_and_the_attribute_function() -> None:
    assert set(STATE_COLOURS) >= {"PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED",
                                  "NOT_RUN"}
    assert state_colour("PROGRESS") == STATE_COLOURS["STARTED"]
    assert "fillcolor" not in node_attrs("signature")
    assert node_attrs("signature", "FAILURE")["fillcolor"] == STATE_COLOURS["FAILURE"]


def test_failed_node_gets_the_failure_colour_and_static_view_is_neutral() -> None:
    sig = chain(task_a.s(), task_b.s(), task_c.s()).freeze()
    a, b, c = (s.id for s in sig.tasks)
    assert "fillcolor" not in sig.to_dot()
    src = sig.to_dot(states={a: "SUCCESS", b: "FAILURE", c: "NOT_RUN"})
    assert f'fillcolor="{STATE_COLOURS["FAILURE"]}"' in node_line(src, b)
    assert f'fillcolor="{STATE_COLOURS["SUCCESS"]}"' in node_line(src, a)
    assert "dashed" in node_line(src, c)
    assert f'"{a}" -> "{b}"' in src  # frozen: nodes are named by their ids


def test_custom_state_and_meta_show_on_a_running_node_only() -> None:
    sig = (long_step.s(1) | long_step.s()).freeze()
    a, b = (s.id for s in sig.tasks)
    src = sig.to_dot(states={a: "PROGRESS", b: "SUCCESS"}, meta={a: "step 7/10", b: "done"})
    assert "step 7/10" in node_line(src, a)
    assert STATE_COLOURS["STARTED"] in node_line(src, a)
    assert "done" not in node_line(src, b)


def test_branch_taken_is_emphasised_and_the_other_greyed() -> None:
    sig = (task_a.s() | branch(is_big.s(), task_b.s(), task_c.s())).freeze()
    br = sig.tasks[1]
    src = sig.to_dot(states={br.then.id: "SUCCESS", br.otherwise.id: "NOT_RUN"},
                     branches={br.id: "then"})
    assert "penwidth=2.5" in line_of(src, "[label=true")
    assert "color=gray55" in line_of(src, "[label=false")
    assert "color=gray55" in node_line(src, br.otherwise.id)


def test_collapsed_group_counts_member_states() -> None:
    sig = group(process_image.s(i) for i in range(10_000)).freeze()
    states = {m.id: "SUCCESS" for m in sig.tasks[:9_120]}
    states.update({m.id: "FAILURE" for m in sig.tasks[9_120:9_123]})
    src = sig.to_dot(states=states)
    node = line_of(src, "process_image × 10,000")
    assert "9,120 ✓  3 ✗  877 waiting" in node and STATE_COLOURS["FAILURE"] in node
    done = sig.to_dot(states={m.id: "SUCCESS" for m in sig.tasks})
    assert STATE_COLOURS["SUCCESS"] in line_of(done, "process_image × 10,000")


def test_foreach_shows_its_element_counts() -> None:
    sig = (fetch_data.s(1) | foreach(process_data.s())).freeze()
    fe = sig.tasks[1]
    dynamic = {f"{fe.body.id}:{i}": ("signature", "process_data", 1, fe.id) for i in range(10)}
    states = {fe.id: "STARTED", **{f"{fe.body.id}:{i}": "SUCCESS" for i in range(7)}}
    states[f"{fe.body.id}:7"] = "FAILURE"
    src = sig.to_dot(states=states, dynamic=dynamic)
    assert "foreach\\n8/10 done  1 ✗" in node_line(src, fe.id)


# -- layering -----------------------------------------------------------------------------------
def test_building_does_not_import_graphviz_but_drawing_does() -> None:
    code = ("import sys, nbcanvas as nc\n"
            "@nc.task(name='t.f')\ndef f(x): return x\n"
            "c = f.s(1) | f.s()\nassert 'graphviz' not in sys.modules\n"
            "assert 'nbcanvas.dot' not in sys.modules\n"
            "c.to_dot(); assert 'graphviz' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
