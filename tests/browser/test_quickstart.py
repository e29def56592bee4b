"""The quickstart in a real JupyterLab in Chromium: what a person sees after Run All.

JupyterLab runs on a scratch copy of notebooks/, Chromium is Debian's, driven by Playwright.
After Run ▸ Run All Cells (and once every code cell has run) the page must show

- the canvas diagram: an SVG image, rendered with a non-zero size, with the quickstart's nodes;
- the live view of the successful workflow: its overall bar at 100 % (``style.width``), every
  step bar at 100 %, every node of its inline SVG filled with ``STATE_COLOURS["SUCCESS"]``,
  and ``r.get()`` showing 120;
- the live view of the failing workflow: the ``check_positive`` node filled with
  ``STATE_COLOURS["FAILURE"]``, the bar in the danger style, and below it a readable error
  (the ``raises-exception`` cell: ``ValueError`` and its message);
- no "Error displaying widget" and no error output in any other cell.

Pictures: build/browser/quickstart-{live,failure}.png (full window) on every run; with
``NBCANVAS_SCREENSHOTS=1`` also the README crops build/quickstart-{diagram,live,failure}.png
(``make screenshots`` copies build/*.png to docs/img/).
"""
from __future__ import annotations

import os
import re
import time
from typing import Any
from urllib.parse import unquote

import pytest

pytest.importorskip("playwright.sync_api")

from playwright.sync_api import expect  # noqa: E402

from nbcanvas.dot import STATE_COLOURS  # noqa: E402

from .conftest import BUILD, SHOTS  # noqa: E402
from .lab import Lab  # noqa: E402
from .notebook import (  # noqa: E402
    PANEL, STDERR, STDOUT, Budget, code_cell, open_notebook, prompts, run_all)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUICKSTART = "00-quickstart.ipynb"
SUCCESS = STATE_COLOURS["SUCCESS"].lower()
FAILURE = STATE_COLOURS["FAILURE"].lower()
README_SHOTS = os.environ.get("NBCANVAS_SCREENSHOTS", "") not in ("", "0")

# The fill of each node of an inline Graphviz SVG, with its label:
# <g class="node"><title>id</title><path fill="#a5d6a7" .../><text>add(0, 0)</text></g>
_NODES_JS = """svg => [...svg.querySelectorAll('g.node')].map(g => {
    const shape = g.querySelector('path, polygon, ellipse, rect');
    return {label: [...g.querySelectorAll('text')].map(t => t.textContent).join(' '),
            fill: shape ? (shape.getAttribute('fill') || '').toLowerCase() : ''};
})"""


def _width_100(page: Any, bar: Any, budget: Budget, what: str) -> None:
    """Wait until the ipywidgets bar (``div.progress-bar``) is drawn at 100 % width."""
    try:
        page.wait_for_function("el => el.style.width === '100%'", arg=bar.element_handle(),
                               timeout=budget.ms(30), polling=100)
    except Exception as e:
        width = bar.evaluate("el => el.style.width")
        raise AssertionError(f"{what} did not reach 100 % (style.width={width!r})") from e


def _shown(loc: Any) -> dict[str, float]:
    """Scroll ``loc`` into view (a person scrolls; JupyterLab skips drawing off-screen cells)
    and return its box, which must have a non-zero size."""
    loc.scroll_into_view_if_needed()
    expect(loc).to_be_visible()
    box = loc.bounding_box()
    assert box and box["width"] > 0 and box["height"] > 0, f"zero-size element: {box}"
    return box


# The right edge of what an element shows (its text, SVG, bars): ipywidgets boxes and output
# areas are as wide as the notebook, most of it blank.
_CONTENT_RIGHT_JS = """el => {
    let right = 0;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        if (!walker.currentNode.textContent.trim()) continue;
        const range = document.createRange();
        range.selectNodeContents(walker.currentNode);
        const b = range.getBoundingClientRect();
        if (b.width) right = Math.max(right, b.right);
    }
    [el, ...el.querySelectorAll('*')].filter(e => e.matches('svg, img, .progress')).forEach(e => {
        const b = e.getBoundingClientRect();
        if (b.width) right = Math.max(right, b.right);
    });
    return right;
}"""


# Scroll the notebook so that ``el`` starts a little below the toolbar.
_SCROLL_TO_JS = """el => {
    el.scrollIntoView({block: 'start'});
    let p = el.parentElement;
    while (p && !(p.scrollHeight > p.clientHeight
                  && /auto|scroll/.test(getComputedStyle(p).overflowY)))
        p = p.parentElement;
    if (p) p.scrollTop -= 40;
}"""


def _crop(page: Any, name: str, parts: list[Any], pad: float = 8) -> None:
    """build/<name>: a README picture of ``parts`` (top to bottom, all fitting the window),
    cropped to what they show plus ``pad`` pixels left and right."""
    parts[0].evaluate(_SCROLL_TO_JS)
    page.wait_for_timeout(300)  # content-visibility: let the newly visible cells paint
    boxes = [_shown(p) for p in parts]
    rights = [p.evaluate(_CONTENT_RIGHT_JS) for p in parts]
    x0 = min(b["x"] for b in boxes) - pad
    y0 = min(b["y"] for b in boxes) - 2  # not the previous cell's border
    x1 = max(max(rights), *(b["x"] for b in boxes)) + pad
    y1 = max(b["y"] + b["height"] for b in boxes) + 2  # not the next cell
    view = page.viewport_size
    assert y1 <= view["height"], f"{name}: the parts do not fit the window ({y1 - y0:.0f} px)"
    clip = {"x": max(0.0, x0), "y": max(0.0, y0)}
    clip["width"] = min(x1, view["width"]) - clip["x"]
    clip["height"] = y1 - clip["y"]
    page.screenshot(path=str(BUILD / name), clip=clip)


@pytest.mark.timeout(120, method="signal")
def test_quickstart_runs_in_jupyterlab(budget: Budget, page: Any, lab: Lab) -> None:
    # (budget first: its clock starts before the server and the browser do)
    t0 = time.monotonic()
    steps: list[str] = []

    def step(name: str) -> None:
        steps.append(f"{name} {time.monotonic() - t0:.1f}s")

    # -- open, wait for a real kernel, Run All ----------------------------------------------
    open_notebook(page, lab.url(QUICKSTART), budget)
    step("kernel ready")
    run_all(page, budget)
    step("all cells ran")
    texts = prompts(page)
    assert texts and all(re.fullmatch(r"\[\d+\]:", t) for t in texts), (
        f"Run All stopped early (a cell raised without the raises-exception tag?): {texts}")

    # -- the canvas diagram (cell `workflow = chord(...)`) ---------------------------------
    diagram_cell = code_cell(page, "workflow = chord(")
    img = diagram_cell.locator(".jp-RenderedSVG[data-mime-type='image/svg+xml'] img")
    expect(img).to_have_count(1)
    _shown(img)
    info = img.evaluate("""img => ({w: img.naturalWidth, h: img.naturalHeight,
                                   complete: img.complete, src: img.getAttribute('src')})""")
    assert info["complete"] and info["w"] > 0 and info["h"] > 0, f"SVG did not load: {info}"
    svg_text = unquote(info["src"])
    assert svg_text.startswith("data:image/svg+xml,") and "<svg" in svg_text, svg_text[:120]
    for label in ("add(0, 0)", "tsum(◦)", "add(◦, 100)"):
        assert label in svg_text, f"{label!r} not in the canvas diagram"

    # -- the live view of the successful workflow (cell `r = workflow.delay()`) --------------
    live_cell = code_cell(page, "r = workflow.delay()")
    live = live_cell.locator(".nbcanvas-live")
    expect(live).to_have_count(1, timeout=budget.ms(10))
    _shown(live)
    overall = live.locator(".widget-hprogress.nbcanvas-progress .progress-bar")
    _width_100(page, overall, budget, "the overall bar of the live view")
    expect(overall).to_have_class(re.compile(r"\bprogress-bar-success\b"))
    steps_bars = live.locator(".nbcanvas-step-bar .progress-bar")
    assert steps_bars.count() >= 1, "no step bars in the live view"
    for i in range(steps_bars.count()):
        _width_100(page, steps_bars.nth(i), budget, f"step bar {i + 1} of the live view")
    expect(live.locator(".nbcanvas-progress-text")).to_contain_text(
        re.compile(r"\b(\d+)/\1 done\b"), timeout=budget.ms(10))
    step("live view at 100 %")

    svg = live.locator(".nbcanvas-diagram svg")
    expect(svg).to_have_count(1, timeout=budget.ms(10))
    _shown(svg)
    # the last redraw may lag the bars by one paced redraw: wait for the colours too
    try:
        page.wait_for_function(
            f"svg => {{ const n = ({_NODES_JS})(svg);"
            f" return n.length > 0 && n.every(x => x.fill === '{SUCCESS}'); }}",
            arg=svg.element_handle(), timeout=budget.ms(15), polling=100)
    except Exception as e:
        raise AssertionError(f"live diagram not all {SUCCESS} (SUCCESS): "
                             f"{svg.evaluate(_NODES_JS)}") from e
    nodes = svg.evaluate(_NODES_JS)
    labels = " ".join(n["label"] for n in nodes)
    assert "add(0, 0)" in labels and "tsum" in labels, f"unexpected live nodes: {nodes}"
    expect(code_cell(page, "r.get()").locator(".jp-OutputArea-output")).to_have_text("120")

    if README_SHOTS:
        BUILD.mkdir(parents=True, exist_ok=True)
        _crop(page, "quickstart-diagram.png", [img], pad=6)  # not the prompt
        _crop(page, "quickstart-live.png", [live_cell.locator(".jp-OutputArea-child")], pad=10)
    SHOTS.mkdir(parents=True, exist_ok=True)
    live.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "quickstart-live.png"))

    # -- the failing workflow (cell `bad = (...).delay()`) and its error ------------------------
    bad_cell = code_cell(page, "bad = (add.s(2, -5)")
    bad_live = bad_cell.locator(".nbcanvas-live")
    expect(bad_live).to_have_count(1)
    bad_svg = bad_live.locator(".nbcanvas-diagram svg")
    _shown(bad_svg)
    try:
        page.wait_for_function(
            f"svg => ({_NODES_JS})(svg).some(x => x.label.includes('check_positive')"
            f" && x.fill === '{FAILURE}')",
            arg=bad_svg.element_handle(), timeout=budget.ms(15), polling=100)
    except Exception as e:
        raise AssertionError(f"no {FAILURE} (FAILURE) check_positive node in the failing "
                             f"workflow's diagram: {bad_svg.evaluate(_NODES_JS)}") from e
    bad_nodes = bad_svg.evaluate(_NODES_JS)
    first = next(n for n in bad_nodes if "add(2, -5)" in n["label"])
    assert first["fill"] == SUCCESS, f"the step before the failure is not SUCCESS: {bad_nodes}"
    expect(bad_live.locator(".nbcanvas-progress .progress-bar")).to_have_class(
        re.compile(r"\bprogress-bar-danger\b"), timeout=budget.ms(10))

    err_cell = code_cell(page, "bad.get()")
    err = err_cell.locator(STDERR)
    expect(err).to_have_count(1)
    _shown(err)
    expect(err).to_contain_text("ValueError")
    expect(err).to_contain_text("expected a positive number, got -3")
    step("failure shown")

    if README_SHOTS:
        # the failing workflow's live view (the error cell's traceback shows install paths)
        _crop(page, "quickstart-failure.png", [bad_cell.locator(".jp-OutputArea-child")], pad=10)
    bad_live.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "quickstart-failure.png"))

    # -- the rest of the page -----------------------------------------------------------------
    expect(code_cell(page, 'print("finished:"').locator(STDOUT)).to_contain_text(
        "finished: SUCCESS and FAILURE")
    assert page.get_by_text("Error displaying widget").count() == 0, "Error displaying widget"
    errors = page.locator(f"{PANEL} .jp-CodeCell").filter(has=page.locator(STDERR))
    assert errors.count() == 1, (
        "error output in other cells than `bad.get()`: "
        + repr([e[:300] for e in page.locator(STDERR).all_inner_texts()]))
    step("done")
    print("\n  timing: " + ", ".join(steps))
