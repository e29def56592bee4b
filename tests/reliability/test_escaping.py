"""User data never becomes markup (issue 12: 7): in the SVG and in every widget.

Arguments, keyword arguments, task names, results, exception messages and ``update_state``
meta that hold ``<script>`` or ``<img onerror=...>`` are drawn as text in the SVG a canvas or a
live result shows, and in the live view's widgets: the SVG, parsed as XML, has no element and no attribute that came from user
data (no ``script``, ``img``, ``foreignObject``, no ``on*`` attribute, no ``javascript:``).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

import nbcanvas as nc
from nbcanvas.display import SVG, canvas_mimebundle

from . import rtasks
from .rtasks import Boom, rel
from tests.waiting import wait_until

PAYLOADS = ['<script>alert("x")</script>', '<img src=x onerror=alert(1)>',
            '"><svg onload=alert(2)>', "javascript:alert(3)", "]]><!-- &amp; &lt;"]
URL_ATTRIBUTES = {"href", "xlink:href", "src", "action", "formaction"}
EVIL_TAGS = {"script", "img", "iframe", "foreignObject", "object", "embed", "use", "a"}

needs_dot = pytest.mark.needs_dot


def _svg_of(graph) -> str:
    try:
        return graph.pipe(format="svg", encoding="utf-8", quiet=True)
    except Exception as e:  # graphviz.ExecutableNotFound
        if type(e).__name__ == "ExecutableNotFound":
            pytest.skip("Graphviz's dot program is not installed")
        raise


def _assert_inert(svg: str) -> str:
    """Parse the SVG; fail on any element or attribute user data could have made. Returns all
    the text that is drawn."""
    root = ET.fromstring(svg)
    texts = []
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        assert tag not in EVIL_TAGS, f"<{tag}> in the SVG"
        for name, value in el.attrib.items():
            local = name.rsplit("}", 1)[-1].lower()
            assert not local.startswith("on"), f"attribute {name}={value!r} in the SVG"
            if local in URL_ATTRIBUTES or name.endswith("}href"):
                assert not value.strip().lower().startswith("javascript:"), value
        texts.append(el.text or "")
        texts.append(el.tail or "")
    return "".join(texts)


def _hostile_canvas(evil_task):
    return nc.chain(
        rel.identity.s(PAYLOADS[0]),
        rel.record.s(PAYLOADS[1], tag=PAYLOADS[2]),
        nc.group(rel.identity.si(p) for p in PAYLOADS),
        evil_task.s(),
        rel.echo_html.si(PAYLOADS[1]),
    )


@pytest.fixture
def evil_task():
    app = nc.App("evil", set_as_current=False)
    return app.task(rtasks.identity, name='evil.<img src=x onerror=alert("name")>')


@needs_dot
def test_arguments_and_task_names_are_text_in_the_canvas_svg(evil_task):
    canvas = _hostile_canvas(evil_task)
    text = _assert_inert(_svg_of(canvas.graph()))
    assert "<script>" in text or "<script" in text  # drawn, as text (perhaps cut short)
    bundle = canvas_mimebundle(canvas)
    _assert_inert(bundle[SVG])
    # In DOT, user text is only ever inside quoted string labels, never an HTML label <...>.
    dot = canvas.to_dot()
    assert "label=<" not in dot and "<img src=x onerror" in dot


@needs_dot
def test_results_errors_and_meta_are_text_in_the_live_svg(evil_task, dask_client):
    canvas = _hostile_canvas(evil_task)
    frozen = canvas.freeze()
    r = frozen.delay()
    assert r.get(timeout=60) == PAYLOADS[1]
    echo = r.id
    store = r.handle.store
    assert store.wait(lambda s: s.finished(), 30)
    assert store.get(echo).meta == {"note": PAYLOADS[1]}  # the update_state meta arrived
    failing = nc.chain(rel.identity.s(1), rel.fail.s(message=PAYLOADS[0])).apply()
    states = {**store.snapshot(), **failing.handle.store.snapshot()}
    meta = {i: '<b onmouseover="meta()">' for i in states}
    meta[echo] = {"note": store.get(echo).meta["note"] + '<b onmouseover="meta()">'}
    for c in (frozen, failing.handle.canvas):
        _assert_inert(_svg_of(c.graph(states=states, meta=meta)))
        running = {i: PAYLOADS[1] for i in states}  # a custom state: meta shows under it
        drawn = _assert_inert(_svg_of(c.graph(states=running, meta=meta)))
        assert 'onmouseover="meta()"' in drawn, "the meta was not drawn (as text)"


class _Tags(HTMLParser):
    """Every (tag, attributes) of an HTML fragment (an SVG inside it included)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _assert_inert_html(value: str) -> str:
    """No element or attribute in a widget's HTML came from user data; returns its text."""
    parser = _Tags()
    parser.feed(value)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag.lower() not in {t.lower() for t in EVIL_TAGS} or (
            tag == "a" and attrs.get("class") == "nbcanvas-dashboard"), f"<{tag} {attrs}>"
        for name, v in attrs.items():
            assert not name.lower().startswith("on"), f"<{tag} {name}={v!r}>"
            if name.lower() in URL_ATTRIBUTES:
                assert not (v or "").strip().lower().startswith("javascript:"), f"<{tag} {v!r}>"
    return "".join(parser.text)


@needs_dot
@pytest.mark.timeout(120)
def test_live_view_widgets_show_user_data_as_text(evil_task, dask_client, tmp_path):
    """The live view of a real workflow on the cluster: header, diagram, bars' texts, step rows
    and the update_state notes, while a step runs with hostile meta and after a failure."""
    import ipywidgets as w

    from nbcanvas.widgets.live import live_view
    gate = tmp_path / "open"
    marker = '<img src=x onerror="meta()">'
    wf = nc.chain(_hostile_canvas(evil_task),
                  nc.group(rel.echo_and_wait.si(PAYLOADS[0] + marker, str(gate)),
                           rel.fail.si(message=PAYLOADS[1])))
    r = wf.delay()
    view = live_view(r, interval=0.05)
    try:
        wait_until(lambda: "meta()" in view.notes.value, 60,  # the running step's meta
                   "the running step's meta shown")
        htmls = [x for x in view.widgets() if isinstance(x, w.HTML)]
        shown = "".join(_assert_inert_html(x.value) for x in htmls)
        assert '<img src=x onerror="meta()' in shown, view.notes.value  # text (cut short)
        gate.touch()
        with pytest.raises(Boom):
            r.get(timeout=60)
        assert view.wait(60)
        shown = "".join(_assert_inert_html(x.value) for x in view.widgets()
                        if isinstance(x, w.HTML))
        assert "<script" in shown  # the arguments in the diagram, as text
    finally:
        gate.touch()
        view.close()


def test_workflow_list_shows_hostile_names_as_text():
    from nbcanvas.widgets.listing import WorkflowListView
    rows = [{"id": p, "name": p, "state": p, "done": 1, "total": 2, "counts": {},
             "created": 0.0, "started": None, "finished": None} for p in PAYLOADS]
    view = WorkflowListView(rows=rows)
    try:
        text = _assert_inert_html(view.table.value)
        assert PAYLOADS[1] in text
    finally:
        view.close()
