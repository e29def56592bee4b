"""The live view in real kernels on a real LocalCluster.

- a notebook executed by nbclient with widget state stored: the saved state shows the final
  bars and the SVG coloured by state (success everywhere; failure / not run for a failing chain),
  on the session's LocalCluster and on the kernel's own embedded cluster with the threads pool;
- a kernel interrupt during ``.get()`` leaves the workflow running and the view live;
- a second kernel re-attaches by id and shows the running workflow's live diagram and bars,
  and lists it with ``nc.workflows()``;
- a view's source tells it once, after the last result future, that the results are in.

Widget state is read the way a saved notebook keeps it: from the kernel's comm messages.
"""
from __future__ import annotations

import html
import json
import os
import re
import textwrap
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

import pytest

import nbcanvas as nc
from nbcanvas.dot import STATE_COLOURS

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "tests" / "notebooks" / "live_view.ipynb"
SUCCESS, FAILURE = STATE_COLOURS["SUCCESS"], STATE_COLOURS["FAILURE"]


def fills(svg: str) -> dict[str, str]:
    """Node id (its SVG ``<title>``) -> the fill colour of its shape."""
    return {html.unescape(t): f for t, f in
            re.findall(r'class="node">\s*<title>([^<]*)</title>\s*<\w+ fill="([^"]+)"', svg)}


class Views:
    """Widget models by id (``{"model_name", "state"}``) and the live views found in them."""

    def __init__(self, models: dict[str, dict[str, Any]]) -> None:
        self.models = models

    def tree(self, mid: str) -> list[dict[str, Any]]:
        state = self.models[mid]["state"]
        out = [state]
        for child in state.get("children", ()):
            out += self.tree(child.removeprefix("IPY_MODEL_"))
        return out

    def roots(self, cls: str = "nbcanvas-live") -> list[str]:
        return [m for m, v in self.models.items() if cls in (v["state"].get("_dom_classes") or ())]

    def part(self, root: str, cls: str) -> list[dict[str, Any]]:
        return [s for s in self.tree(root) if cls in (s.get("_dom_classes") or ())]

    def summary(self, root: str) -> dict[str, Any]:
        bar, = self.part(root, "nbcanvas-progress")
        diagram, = self.part(root, "nbcanvas-diagram")
        return {"value": bar["value"], "max": bar["max"], "style": bar["bar_style"],
                "fills": fills(diagram["value"]), "steps": len(self.part(root, "nbcanvas-step")),
                "meta": "".join(s["value"] for s in self.part(root, "nbcanvas-meta"))}


# -- a notebook executed by nbclient ------------------------------------------------------------
@pytest.mark.parametrize("where", ["cluster", "threads"])
def test_saved_notebook_keeps_the_final_view(request, monkeypatch, tmp_path, where):
    """``cluster``: the session's LocalCluster; ``threads``: the kernel's own embedded
    cluster with ``nbcanvas.embedded.pool: threads`` (its workers in the kernel)."""
    import nbformat
    from nbclient import NotebookClient
    if where == "cluster":
        address = request.getfixturevalue("dask_client").scheduler.address
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    else:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "")
        monkeypatch.setenv("DASK_NBCANVAS__EMBEDDED__POOL", "threads")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(  # where did the tasks run?
        "import json, os\nimport nbcanvas as nc\n"
        "pids = set(nc.connect().run(os.getpid).values())\n"
        "print(json.dumps({'where': 'threads' if pids == {os.getpid()} else 'cluster'}))"))
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    views = Views(state)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    shown = [o["data"] for o in outputs if "application/vnd.jupyter.widget-view+json" in
             o.get("data", {})]
    assert [d["text/plain"] for d in shown] == ["<nbcanvas live view: chord add → tsum>",
                                                "<nbcanvas live view: chain add → boom>",
                                                "<nbcanvas live view: chain add → boom>"]
    # a print() can reach the notebook as two stream outputs ("{...}" and "\n") when the
    # kernel's output thread flushes between its two writes: read each cell's stdout whole
    printed: dict[str, Any] = {}
    for c in nb.cells:
        text = "".join(o["text"] for o in c.get("outputs", ()) if o.get("name") == "stdout")
        for line in text.splitlines():
            if line.strip():
                printed.update(json.loads(line))
    assert printed["where"] == where
    ok = views.summary(shown[0]["application/vnd.jupyter.widget-view+json"]["model_id"])
    assert (ok["value"], ok["max"], ok["style"], ok["steps"]) == (6, 6, "success", 2)
    assert set(ok["fills"]) == set(printed["ok"])
    assert set(ok["fills"].values()) == {SUCCESS}
    expected = {i: STATE_COLOURS[s] for i, s in printed["failed"].items()}
    assert sorted(printed["failed"].values()) == ["FAILURE", "NOT_RUN", "SUCCESS"]
    for data in shown[1:]:  # the result as a cell's value, and nc.progress(result)
        bad = views.summary(data["application/vnd.jupyter.widget-view+json"]["model_id"])
        assert (bad["value"], bad["max"], bad["style"]) == (3, 3, "danger")
        assert bad["fills"] == expected


# -- real kernels driven with jupyter_client ----------------------------------------------------
class Kernel:
    """One ipykernel; every iopub message is read, widget state kept from comm messages."""

    def __init__(self, address: str) -> None:
        from jupyter_client.manager import start_new_kernel
        env = {**os.environ, "DASK_SCHEDULER_ADDRESS": address}
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)
        self.models: dict[str, dict[str, Any]] = {}
        self.stdout: dict[str, str] = {}
        self.idle: set[str] = set()

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def pump(self, until: Any, timeout: float) -> bool:
        """Read iopub until ``until()`` holds (True) or ``timeout`` s passed (False)."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._take(self.kc.get_iopub_msg(timeout=min(left, 0.5)))
            except Empty:
                pass
        return True

    def _take(self, msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        parent = msg["parent_header"].get("msg_id", "")
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            data = content["data"]
            self.models[content["comm_id"]] = {"model_name": data["state"].get("_model_name"),
                                               "state": dict(data["state"])}
        elif kind == "comm_msg" and content["data"].get("method") == "update":
            model = self.models.get(content["comm_id"])
            if model is not None:
                model["state"].update(content["data"]["state"])
        elif kind == "stream" and content["name"] == "stdout":
            self.stdout[parent] = self.stdout.get(parent, "") + content["text"]
        elif kind == "status" and content["execution_state"] == "idle":
            self.idle.add(parent)

    def start(self, code: str) -> str:
        return self.kc.execute(textwrap.dedent(code))

    def reply(self, msg_id: str, timeout: float = 120) -> dict[str, Any]:
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:  # e.g. a late kernel_info reply
            reply = self.kc.get_shell_msg(timeout=timeout)
        assert self.pump(lambda: msg_id in self.idle, timeout)
        return reply["content"]

    def run(self, code: str, timeout: float = 120) -> str:
        msg_id = self.start(code)
        content = self.reply(msg_id, timeout)
        assert content["status"] == "ok", content
        return self.stdout.get(msg_id, "")


@pytest.fixture
def kernels(dask_client):
    made: list[Kernel] = []

    def make() -> Kernel:
        made.append(Kernel(dask_client.scheduler.address))
        return made[-1]
    yield make
    for k in made:
        k.close()


SETUP = """
    import json
    import nbcanvas as nc
    from tests.integration import controltasks as t
"""


def test_interrupt_during_get_leaves_the_workflow_running_and_the_view_live(kernels, tmp_path):
    gate = str(tmp_path / f"gate-{uuid.uuid4().hex[:8]}")
    k = kernels()
    k.run(SETUP)
    out = k.run(f"""
        r = nc.chain(t.slow.s(1), t.long_step.s(steps=2, gate={gate!r})).delay()
        display(r)
        v = [x for x in nc.widgets.live_views() if x.source.store is r.handle.store][0]
        print(json.dumps({{"wf": r.handle.id}}))
    """)
    wf = json.loads(out)["wf"]
    here = nc.AsyncResult(wf)  # the same workflow seen from the test process
    assert here.handle.store.wait(lambda s: s.progress_state()[0] == "PROGRESS", 60)
    msg_id = k.start('print("getting", flush=True); r.get(timeout=120)')
    assert k.pump(lambda: "getting" in k.stdout.get(msg_id, ""), 60)
    Path(f"{gate}.0").touch()  # the view updates while .get() blocks the kernel
    root, = Views(k.models).roots()
    assert k.pump(lambda: "step 1/2" in Views(k.models).summary(root)["meta"], 60)
    k.km.interrupt_kernel()
    content = k.reply(msg_id)
    assert content["status"] == "error" and content["ename"] == "KeyboardInterrupt"
    assert k.run("print(r.state, r.ready(), v.live)").split() == ["PROGRESS", "False", "True"]
    assert Views(k.models).summary(root)["style"] == "info"  # still running in the widget
    for i in range(2):
        Path(f"{gate}.{i}").touch()
    out = k.run("print(json.dumps([v.wait(60), r.get(timeout=60), v.overall.value, "
                "v.overall.max, v.overall.bar_style]))")
    assert json.loads(out) == [True, 2, 2, 2, "success"]
    assert k.pump(lambda: Views(k.models).summary(root)["value"] == 2, 30)
    final = Views(k.models).summary(root)
    assert (final["max"], final["style"]) == (2, "success")
    assert set(final["fills"].values()) == {SUCCESS}
    assert k.run("print(v._pacer._running is None, r.handle.store._observers == [])").split() \
        == ["True", "True"]
    k.run("r.forget()")


def test_a_fresh_kernel_reattaches_to_a_running_workflow_in_its_live_view(kernels, tmp_path):
    gate = str(tmp_path / f"gate-{uuid.uuid4().hex[:8]}")
    a, b = kernels(), kernels()
    a.run(SETUP)
    out = a.run(f"""
        r = nc.chain(t.slow.s(1), nc.group(t.long_step.s(steps=2, gate={gate!r}), t.slow.s()),
                     t.total.s()).delay()
        print(json.dumps({{"wf": r.handle.id, "nodes": {{i: n.kind for i, n in
                                                         r.handle.nodes.items()}}}}))
    """)
    started = json.loads(out)
    wf, tasks = started["wf"], {i for i, kind in started["nodes"].items() if kind == "signature"}
    b.run(SETUP)
    b.run(f"r = nc.AsyncResult({wf!r}); display(r); display(nc.workflows())")
    views = Views(b.models)
    root, = views.roots()

    def running() -> bool:
        s = views.summary(root)
        return "long_step[0]: step 0/2" in s["meta"] and s["style"] == "info" and \
            STATE_COLOURS["STARTED"] in s["fills"].values()
    assert b.pump(running, 60)
    now = views.summary(root)
    assert set(now["fills"]) == tasks and now["steps"] == 3
    listing, = views.roots("nbcanvas-workflow-list")
    table, = views.part(listing, "nbcanvas-workflows")
    assert wf[:8] in table["value"] and "long_step" in table["value"]
    for i in range(2):
        Path(f"{gate}.{i}").touch()
    assert b.pump(lambda: views.summary(root)["value"] == 4, 60)
    done = views.summary(root)
    assert (done["max"], done["style"]) == (4, "success")
    assert b.pump(lambda: set(views.summary(root)["fills"].values()) == {SUCCESS}, 30)
    assert b.run("print(r.get(timeout=60))").strip() == "5"
    a.run("r.forget()")


# -- a view's source on a real LocalCluster -----------------------------------------------------
def test_a_views_source_says_once_that_all_results_are_in(dask_client, tmp_path, monkeypatch):
    """``watch_done(fn)``: one waiter on the client's loop for every result future; ``fn``
    runs once, after the last one (it ran once per future, on distributed's callback thread)."""
    import threading

    from nbcanvas.widgets.model import source_of

    from . import controltasks as t
    monkeypatch.setattr(t.app, "batching", False)  # one unit, one result future, per member
    gates = [tmp_path / f"gate{i}" for i in range(3)]
    r = nc.group(t.long_step.s(i, steps=1, gate=str(g)) for i, g in enumerate(gates)).delay()
    futures = list(r.handle.backend.futures.values())
    assert len(futures) == 3
    src = source_of(r)
    calls: list[bool] = []
    done = threading.Event()
    src.watch_done(lambda: (calls.append(src.results_done()), done.set()))
    first = threading.Event()
    (tmp_path / "gate0.0").touch()  # one member finishes
    futures[0].add_done_callback(lambda _f: first.set())  # runs after any callback before it
    assert first.wait(30) and futures[0].done()
    assert calls == [] and not src.results_done()
    for g in gates[1:]:
        Path(f"{g}.0").touch()
    assert done.wait(30)
    assert r.get(timeout=30) == [0, 1, 2]
    last = threading.Event()
    futures[-1].add_done_callback(lambda _f: last.set())
    assert last.wait(30) and calls == [True]


def test_a_views_header_links_the_dask_dashboard_asked_once_per_client(dask_client):
    """The link is distributed's, escaped; it is formatted once per client (distributed formats
    it from the whole environment each time it is asked, about 1 ms of a view made while its
    workflow runs)."""
    from nbcanvas.widgets import live_view
    from nbcanvas.widgets.model import _dashboards, source_of

    from . import controltasks as t
    r = nc.group(t.slow.s(i, delay=0) for i in range(3)).delay()
    link = dask_client.dashboard_link
    _dashboards.pop(dask_client.id, None)
    view = live_view(r)
    assert view.wait(30) and r.get(timeout=30) == [1, 2, 3]
    assert f'href="{html.escape(link)}"' in view.header.value
    assert 'class="nbcanvas-dashboard"' in view.header.value
    assert _dashboards[dask_client.id] == link
    _dashboards[dask_client.id] = "http://cached/status"  # the next view asks no one else
    assert source_of(r).dashboard == "http://cached/status"
    _dashboards.pop(dask_client.id)
    assert source_of(r).dashboard == link
    view.close()
    r.forget()
