"""Compile: a frozen canvas -> units of work, a node table and where the result will be.

The units become one dask graph (``compile.taskspec``) or run in process (``sig.apply()``).

>>> from nbcanvas import App, chain
>>> app = App("doc-compile")
>>> @app.task
... def inc(x):
...     return x + 1
>>> cg = compile_canvas(chain(inc.s(1), inc.s(), inc.s()).freeze(), "wf-1")
>>> len(cg.units), len(cg.nodes)   # fused: one unit, three steps
(1, 3)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..canvas import Signature
from ..canvas.base import no_gc
from .lower import Lowering, Lst, NodeInfo, Ref, Unit

__all__ = ["CompiledGraph", "compile_canvas", "Ref", "Lst", "Unit", "NodeInfo"]


@dataclass
class CompiledGraph:
    """Everything about one workflow that is fixed when it is sent."""

    workflow_id: str
    canvas: Signature                 # frozen
    units: dict[str, Unit]            # in dependency order
    nodes: dict[str, NodeInfo]
    result: Ref | Lst                 # where the workflow's result will be
    extra: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, float] = field(default_factory=dict)  # as compiled with (see compile_canvas)
    fan_outs: frozenset[str] = frozenset()  # keys of units with a foreach or branch step

    def tiny_for(self, key: str) -> dict[str, float] | None:
        """What unit ``key`` carries of ``tiny``: only a unit with a foreach or branch step
        sizes fan-outs (``UnitProgram.tiny``)."""
        return (self.tiny or None) if key in self.fan_outs else None

    @property
    def keys(self) -> list[str]:
        """Every dask key of the workflow."""
        return list(self.units)

    def where(self, node_id: str) -> Ref | Lst | None:
        """Where the outcome of ``node_id`` will be (None if it is not a node of this graph)."""
        info = self.nodes.get(node_id)
        if info is None:
            return None
        if info.key is not None:
            return Ref(info.key, node_id)
        return Lst(tuple(self.where(m) for m in info.members))  # type: ignore[misc]


def compile_canvas(sig: Signature, workflow_id: str, *, parallelism: int = 2, fusion: bool = True,
                   batching: bool = True, salt: str = "",
                   tiny: Mapping[str, float] | None = None,
                   batch_tags: bool = True) -> CompiledGraph:
    """Lower a frozen canvas. Raises ``TypeError`` for a call whose arguments can't be completed.

    ``salt`` is appended to every dask key (a canvas sent again with the same ids);
    ``tiny`` names tasks known to be very short (their small groups are packed tighter);
    ``batch_tags`` names batch units per workflow (``add_batch.1a2b3c4d``), for schedulers
    that assign a name's root tasks in blocks (see ``Lowering``); without, ``add_batch``.
    """
    tag = str(workflow_id or "").replace("-", "")[:8] if batch_tags else ""
    low = Lowering(parallelism=parallelism, fusion=fusion, batching=batching, salt=salt,
                   tag=tag, tiny=tiny)
    with no_gc():
        out = low.lower(sig, None, 0, {})
    return CompiledGraph(workflow_id, sig, low.units, low.nodes, out, tiny=low.tiny,
                         fan_outs=frozenset(low.fan_outs))
