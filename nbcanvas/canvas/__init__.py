"""The canvas: immutable signatures and the primitives built from them (the build stage)."""
from __future__ import annotations

from .base import Signature, maybe_signature, new_id, new_ids, signature
from .primitives import branch, chain, check_entry, chord, chunks, foreach, group, xmap
from .walk import count_nodes, freeze, iter_nodes, rekey

__all__ = ["Signature", "signature", "maybe_signature", "new_id", "new_ids", "chain", "group",
           "chord", "chunks", "xmap", "foreach", "branch", "check_entry", "freeze", "iter_nodes",
           "count_nodes", "rekey"]
