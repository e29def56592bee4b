"""The report: one JSON document, the same table as text (stdout) and Markdown (README).

JSON layout (``bench/results/<timestamp>.json`` and ``latest.json``)::

    {"schema": 1, "meta": {...}, "sizes": {...}, "systems": [...],
     "workloads": [{"key", "label", "unit", "target", "higher_is_better"}],
     "results": {system: {workload: {"value", "runs", "note"}}},
     "pass": {workload: {"nbcanvas-embedded": bool | null, "nbcanvas-threads": ..., ...}}}
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from . import SYSTEM_LABELS, SYSTEMS, Sizes, workloads
from .common import Cell, na

__all__ = ["build_report", "text_table", "markdown_table", "write_json", "update_readme",
           "fmt", "cell_of", "START", "END", "NB_SYSTEMS"]

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
NB_SYSTEMS = ("nbcanvas-embedded", "nbcanvas-threads", "nbcanvas-localcluster")
_SHORT = {"nbcanvas-embedded": "emb", "nbcanvas-threads": "thr", "nbcanvas-localcluster": "LC"}
SCHEMA = 1


def cell_of(results: dict[str, dict[str, Cell]], system: str, key: str) -> Cell:
    """A system's cell for a workload (its error, or "not run", when missing)."""
    cells = results.get(system)
    if cells is None:
        return na("not run")
    return cells.get(key) or cells.get("_error") or na("not run")


def build_report(results: dict[str, dict[str, Cell]], sizes: Sizes, meta: dict[str, Any],
                 kill: bool = False) -> dict[str, Any]:
    """The JSON document for one run (pass marks only at full sizes)."""
    rows = [w for w in workloads(sizes, kill=kill)  # rows no system ran are left out
            if any(cell_of(results, s, w.key).get("note") != "not run" for s in results)]
    passes: dict[str, dict[str, bool | None]] = {}
    for w in rows:
        passes[w.key] = {s: (None if sizes.quick else w.passes(cell_of(results, s, w.key)["value"]))
                         for s in NB_SYSTEMS}
    systems = [s for s in SYSTEMS if s in results]
    return {"schema": SCHEMA, "meta": meta, "sizes": sizes.to_dict(), "systems": systems,
            "workloads": [{"key": w.key, "label": w.label, "unit": w.unit, "target": w.target,
                           "higher_is_better": w.higher_is_better} for w in rows],
            "results": {s: {w.key: cell_of(results, s, w.key) for w in rows} for s in systems},
            "pass": passes}


def fmt(c: Cell) -> str:
    """A cell as table text: 3 significant digits, or n/a / err / — (not run)."""
    v = c.get("value")
    if v is None:
        note = c.get("note", "")
        return "err" if note.startswith("error") else ("n/a" if note.startswith("n/a") else "—")
    if abs(v) >= 100 or (float(v).is_integer() and abs(v) >= 1):
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _mark(ok: bool | None) -> str:
    return {True: "✓", False: "✗", None: "·"}[ok]


def _grid(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    systems = report["systems"]
    head = ["workload", "unit", "target"] + [SYSTEM_LABELS[s] for s in systems]
    nb = [s for s in NB_SYSTEMS if s in systems]
    if nb:
        head.append("pass (" + " / ".join(_SHORT[s] for s in nb) + ")")
    body = []
    for w in report["workloads"]:
        target = ""
        if w["target"] is not None:
            target = f"{'≥' if w['higher_is_better'] else '≤'} {w['target']:g}"
        row = [w["label"], w["unit"], target]
        row += [fmt(report["results"][s][w["key"]]) for s in systems]
        if nb:
            row.append(" / ".join(_mark(report["pass"][w["key"]][s]) for s in nb)
                       if w["target"] is not None else "")
        body.append(row)
    return head, body


def text_table(report: dict[str, Any]) -> str:
    """The table for a terminal (aligned columns)."""
    head, body = _grid(report)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    for r in body:
        out.append("  ".join((c.ljust(w) if i == 0 else c.rjust(w))
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


def _notes(report: dict[str, Any]) -> list[str]:
    """One line per failed or skipped cell that says why (once per system for a shared reason)."""
    labels = {w["key"]: w["label"] for w in report["workloads"]}
    out = []
    for s in report["systems"]:
        why: dict[str, list[str]] = {}
        for k, c in report["results"][s].items():
            note = c.get("note", "")
            if c.get("value") is None and note.startswith(("error", "not run")):
                why.setdefault(note, []).append(labels.get(k, k))
        for note, rows in why.items():
            where = "every row" if len(rows) == len(labels) > 1 else ", ".join(rows)
            out.append(f"{SYSTEM_LABELS[s]}, {where}: {note}")
    return out


def markdown_table(report: dict[str, Any]) -> str:
    """The table in Markdown, with the notes for failed or skipped cells under it."""
    head, body = _grid(report)
    esc = [[c.replace("|", "\\|") for c in r] for r in [head] + body]
    out = ["| " + " | ".join(esc[0]) + " |",
           "|" + "|".join("---" if i == 0 else "--:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    notes = _notes(report)
    if notes:
        out.append("")
        out += ["- " + n.replace("|", "\\|") for n in notes]
    return "\n".join(out)


def write_json(report: dict[str, Any], outdir: Path, latest: bool) -> Path:
    """``<outdir>/<timestamp>.json`` (and ``latest.json`` when ``latest``); returns the first."""
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = report["meta"]["started"].replace(":", "").replace("-", "")
    path = outdir / f"{stamp}.json"
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    for target in [path] + ([outdir / "latest.json"] if latest else []):
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
    return path


def update_readme(readme: Path, section: str) -> None:
    """Put ``section`` between the bench markers (appending the markers if missing)."""
    text = readme.read_text() if readme.exists() else ""
    block = f"{START}\n{section.strip()}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text,
                      count=1, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, readme)
