"""Shared vocabulary of the pattern files."""
from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx


@dataclass
class NoMatch:
    """A subgraph that looked like a family member but cannot be rewritten; ``reason`` goes in the report."""

    family: str
    node: fx.Node
    reason: str

    def __bool__(self) -> bool:  # so that ``if match:`` reads naturally
        return False
