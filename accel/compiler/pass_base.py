"""``AccelPass``: the contract every pass follows.

A pass has a ``name`` (its file name, verb first: ``fuse_attention``), rewrites the graph in
``__call__(gm, ctx)`` and returns how many rewrites it made. ``uuid()`` hashes the pass's source, so editing
a pass changes Inductor's cache key. The pass manager times, logs and dumps around each call.
"""
from __future__ import annotations

import hashlib
import inspect

import torch.fx as fx

from accel.compiler.context import CompileContext


class AccelPass:
    name: str = "unnamed"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        raise NotImplementedError

    def uuid(self) -> str:
        src = inspect.getsource(inspect.getmodule(type(self)))
        return hashlib.sha256(src.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
