"""Driving a notebook in JupyterLab 4 the way a person does: open it, wait for the kernel,
Run ▸ Run All Cells, wait until every cell ran. DOM facts as JupyterLab 4 renders them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from playwright.sync_api import Locator, Page

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
STDOUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']"


@dataclass
class Budget:
    """Time left for the waits of one test, so that a hang fails with a clear message well
    before pytest-timeout has to interrupt (and teardown still has time to stop everything)."""
    seconds: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def ms(self, cap: float) -> float:
        """A Playwright timeout: at most ``cap`` seconds, never past the budget (min 1 s)."""
        return max(1.0, min(cap, self.left())) * 1000

    def elapsed(self) -> float:
        return time.monotonic() - self.start


# The kernel is ready when the toolbar's execution indicator is idle AND the toolbar names a
# real kernel. PITFALL: the indicator already says "idle" while the session still has "No
# Kernel" (status bar "No Kernel | Initializing"); Run All then opens a "Select Kernel" dialog
# and nothing runs.
_KERNEL_READY = """() => {
    const panel = document.querySelector('%s');
    if (!panel) return false;
    const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
    const name = panel.querySelector('.jp-Toolbar-kernelName');
    const label = name ? name.textContent.trim() : '';
    return !!ind && ind.dataset.status === 'idle' && label !== '' && label !== 'No Kernel'
        && !document.querySelector('.jp-Dialog');
}""" % PANEL

# Note when the run has started (a prompt reads "[*]:" or the kernel is busy): the quickstart
# is stored executed, so its prompts already read [1]..[9] and could fake "done".
_WATCH_START = """() => {
    window.__nbRunStarted = false;
    const panel = document.querySelector('%s');
    const check = () => {
        if (panel.querySelector('.jp-Notebook-ExecutionIndicator[data-status="busy"]') ||
            [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                .some(p => p.textContent.includes('*')))
            window.__nbRunStarted = true;
    };
    new MutationObserver(check).observe(panel, {subtree: true, childList: true,
                                               characterData: true, attributes: true});
    check();
}""" % PANEL

_RUN_DONE = """() => {
    const panel = document.querySelector('%s');
    const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
    const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
    return window.__nbRunStarted && ind.dataset.status === 'idle'
        && !prompts.some(p => p.textContent.includes('*'));
}""" % PANEL


def open_notebook(page: Page, url: str, budget: Budget) -> None:
    """Load ``url`` and wait until the notebook is shown with a real, idle kernel."""
    page.goto(url, timeout=budget.ms(30))
    page.locator(f"{PANEL} .jp-Notebook").wait_for(state="visible", timeout=budget.ms(30))
    page.wait_for_function(_KERNEL_READY, timeout=budget.ms(45), polling=100)


def run_all(page: Page, budget: Budget) -> None:
    """Run ▸ Run All Cells (JupyterLab 4 has no default keyboard shortcut for it), then wait
    until the run has started and finished (every prompt a number, the kernel idle)."""
    page.evaluate(_WATCH_START)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click(timeout=budget.ms(10))
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click(timeout=budget.ms(10))
    # started: a "[*]" / busy seen; or a dialog (e.g. "Select Kernel") opened instead
    page.wait_for_function("() => window.__nbRunStarted || !!document.querySelector('.jp-Dialog')",
                           timeout=budget.ms(15), polling=50)
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        raise AssertionError("a dialog opened instead of running the notebook: "
                             + dialog.first.inner_text()[:300])
    page.wait_for_function(_RUN_DONE, timeout=budget.ms(90), polling=100)


def prompts(page: Page) -> list[str]:
    loc = page.locator(f"{PANEL} .jp-CodeCell .jp-InputArea-prompt")
    return [t.strip() for t in loc.all_text_contents()]  # innerText is "" off-screen


def code_cell(page: Page, snippet: str) -> Locator:
    """The code cell whose source contains ``snippet`` (exactly one)."""
    cells = page.locator(f"{PANEL} .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=snippet))
    n = cells.count()
    assert n == 1, f"{n} code cells contain {snippet!r} (the quickstart changed?)"
    return cells.first
