"""``CompileContext``: what a pass needs besides the graph — options, real weights, derived tensors, report.

Passes rewrite the Dynamo-level graph in place. When a rewrite needs a tensor that is not in the graph (the
concatenation of Q/K/V weights, say), :meth:`CompileContext.add_derived` computes it once, from the real
parameter values Dynamo passed as example inputs, and adds it as a new graph input marked static, so that
CUDA graphs never copy it; the backend appends these tensors to every call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx

from accel.compiler import fx_utils
from accel.compiler.options import AccelOptions
from accel.compiler.report import Fallback, GraphReport, Match

# Node metadata carried over from the node a rewrite replaces, so reports and stack traces still point at
# the user's module and source line.
_KEPT_META = ("nn_module_stack", "stack_trace", "source_fn_stack", "from_node", "seq_nr")


@dataclass
class CompileContext:
    gm: fx.GraphModule
    example_inputs: Sequence[Any]
    options: AccelOptions
    report: GraphReport
    derived: list[torch.Tensor] = field(default_factory=list)
    derived_sources: dict[fx.Node, tuple[fx.Node, ...]] = field(default_factory=dict)
    """For each derived input, the parameter inputs it was computed from (a merged weight's parts)."""
    norm_folds: dict[fx.Node, tuple[fx.Node, fx.Node]] = field(default_factory=dict)
    """For each weight fuse_norm folded a norm's weight into: (the weight before folding, the norm's weight), so
    that quantize_weights quantizes the unfolded weight and hands the norm's weight to the kernel instead."""
    linear_inputs: dict[fx.Node, torch.Tensor] | None = None
    """Sampled input activations of each parameter linear on the example inputs, by weight node (filled by the
    capture pass when quantizing, for per-layer SQNR); ``None`` when not captured."""

    def __post_init__(self) -> None:
        self._lazy: dict[fx.Node, Callable[[], torch.Tensor]] = {}  # derived inputs not computed yet
        self._unpackable: set[fx.Node] = set()
        self._placeholders = list(self.gm.graph.find_nodes(op="placeholder"))
        self._position = {node: i for i, node in enumerate(self._placeholders)}
        self._fake_mode = _find_fake_mode(self.gm, self.example_inputs)

    # ---- weights -------------------------------------------------------------------------------------
    def weight_value(self, node: Any) -> torch.Tensor | None:
        """The real tensor behind ``node`` if it is a parameter input (or a tensor accel derived), else None.

        Buffers are excluded on purpose: a KV cache is a static buffer that the graph mutates.
        """
        idx = self._position.get(node, -1) if isinstance(node, fx.Node) else -1
        if idx < 0:
            return None
        n_user = len(self._placeholders) - len(self.derived)
        if idx >= n_user:
            return self._derived_value(idx - n_user)
        t = self.example_inputs[idx] if idx < len(self.example_inputs) else None
        if not isinstance(t, torch.nn.Parameter) or _is_fake(t):
            return None
        return t

    def is_weight(self, node: Any) -> bool:
        return self.weight_value(node) is not None

    def add_derived(self, name: str, compute: Callable[[], torch.Tensor], sources: tuple[fx.Node, ...] = (),
                    lazy_like: torch.Tensor | None = None, packable: bool = True) -> fx.Node:
        """Add a graph input holding ``compute()`` (evaluated now, without autograd) and return its node;
        ``sources`` are the weight inputs it is computed from. With ``lazy_like`` (a tensor of the result's shape,
        dtype and device), ``compute`` runs only when the value is asked for (``weight_value``) or the input is
        still read when the graph is finished (``materialize_derived``): a norm-folded weight that quantization
        replaces is never made, and takes no memory at compile time. ``packable=False`` keeps the input out of
        ``pack_derived`` (a buffer that kernels write, such as the split-K tile counters)."""
        value = None
        if lazy_like is None or self._fake_mode is None:
            value = self._computed(compute)
            fake = self._fake_mode.from_tensor(value, static_shapes=True) if self._fake_mode else value
        else:
            with self._fake_mode:
                fake = torch.empty(lazy_like.shape, dtype=lazy_like.dtype, device=lazy_like.device)
        node = self._static_placeholder(f"accel_{name}_{len(self.derived)}", fake, after=self._placeholders[-1])
        self.derived_sources[node] = tuple(sources)
        if not packable:
            self._unpackable.add(node)
        self._position[node] = len(self._placeholders)
        self._placeholders.append(node)
        self.derived.append(value)
        if value is None:
            self._lazy[node] = compute
        else:
            self.report.derived_weight_bytes += value.numel() * value.element_size()
        return node

    def _static_placeholder(self, name: str, fake: torch.Tensor, after: fx.Node) -> fx.Node:
        """A new graph input after ``after`` for a tensor accel provides, with ``fake`` as its example value."""
        with self.gm.graph.inserting_after(after):
            node = self.gm.graph.placeholder(name)
        node._dynamo_source = None  # not a Dynamo input: Dynamo must not look it up
        # AOTAutograd treats this as a static input (no CUDA-graph copies), like a parameter.
        node.meta["tensor_dict"] = {"_dynamo_static_input_type": "unguarded"}
        node.meta["example_value"] = node.meta["val"] = fake
        return node

    def _computed(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return compute().detach().contiguous()

    def _derived_value(self, i: int) -> torch.Tensor:
        """Derived input ``i``'s tensor, computing it now if it was added lazily."""
        if self.derived[i] is None:
            node = self._placeholders[len(self._placeholders) - len(self.derived) + i]
            value = self.derived[i] = self._computed(self._lazy.pop(node))
            self.report.derived_weight_bytes += value.numel() * value.element_size()
        return self.derived[i]

    def materialize_derived(self) -> None:
        """Compute every lazily added derived input that is still in the graph (call after ``drop_unused_derived``)."""
        for i in range(len(self.derived)):
            self._derived_value(i)

    def drop_unused_derived(self) -> int:
        """Remove derived inputs that no node reads any more (a merged weight replaced by its quantized or
        norm-folded copy), so the compiled graph does not keep them alive; returns how many."""
        n_user = len(self._placeholders) - len(self.derived)
        keep = []
        for node, value in zip(self._placeholders[n_user:], self.derived):
            if node.users:
                keep.append((node, value))
                continue
            self.gm.graph.erase_node(node)
            self.derived_sources.pop(node, None)
            if self._lazy.pop(node, None) is None:  # (a lazy one was never made)
                self.report.derived_weight_bytes -= value.numel() * value.element_size()
        dropped = len(self.derived) - len(keep)
        self._placeholders = self._placeholders[:n_user] + [node for node, _ in keep]
        self.derived[:] = [value for _, value in keep]
        self._position = {node: i for i, node in enumerate(self._placeholders)}
        return dropped

    def pack_derived(self, align_bytes: int = 256) -> int:
        """Put the derived inputs of each device and dtype (two or more of them) into one flat buffer that the
        graph reads back through views (``as_strided`` at offsets of ``align_bytes``, so the kernels keep their
        aligned vector loads): a few graph inputs in place of one a tensor, which a CUDA-graph replay and
        AOTAutograd's wrappers pay for on the host, input by input, every call. Call last, after
        ``materialize_derived``; each tensor is freed once copied. Returns how many inputs the graph lost."""
        n_user = len(self._placeholders) - len(self.derived)
        nodes = self._placeholders[n_user:]
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(self.derived):
            if t.numel() and t.is_contiguous() and nodes[i] not in self._unpackable:
                groups.setdefault((t.device, t.dtype), []).append(i)
        groups = {key: idx for key, idx in groups.items() if len(idx) > 1}
        if not groups:
            return 0
        graph = self.gm.graph
        first_op = next(n for n in graph.nodes if n.op != "placeholder")
        packed = {i for idx in groups.values() for i in idx}
        keep = [i for i in range(len(self.derived)) if i not in packed]
        new_nodes, new_values = [nodes[i] for i in keep], [self.derived[i] for i in keep]
        last = self._placeholders[-1]
        for (device, dtype), idx in groups.items():
            step = max(1, align_bytes // dtype.itemsize)
            offsets, total = [], 0
            for i in idx:
                offsets.append(total)
                total += -(-self.derived[i].numel() // step) * step
            flat = torch.empty(total, dtype=dtype, device=device)
            shapes = []
            for i, off in zip(idx, offsets):
                t = self.derived[i]
                shapes.append((tuple(t.shape), tuple(t.stride())))
                flat[off:off + t.numel()].copy_(t.reshape(-1))
                self.derived[i] = None  # (the copy is the only one left)
            fake = self._fake_mode.from_tensor(flat, static_shapes=True) if self._fake_mode else flat
            name = f"accel_packed_{str(dtype).removeprefix('torch.')}_{len(new_nodes)}"
            holder = last = self._static_placeholder(name, fake, after=last)
            for i, off, (shape, stride) in zip(idx, offsets, shapes):
                with graph.inserting_before(first_op):
                    view = graph.create_node("call_function", torch.as_strided, (holder, shape, stride, off),
                                             name=f"{nodes[i].name}_view")  # names in dumps and tests say what it is
                self.propagate(view)
                view.meta["val"] = view.meta.get("example_value")
                nodes[i].replace_all_uses_with(view)
                graph.erase_node(nodes[i])
                self.derived_sources.pop(nodes[i], None)
            new_nodes.append(holder)
            new_values.append(flat)
        self._placeholders = self._placeholders[:n_user] + new_nodes
        self.derived[:] = new_values
        self._position = {node: i for i, node in enumerate(self._placeholders)}
        self.gm.recompile()
        return len(packed) - len(groups)

    # ---- building nodes ------------------------------------------------------------------------------
    def call(self, target: Any, args: tuple, kwargs: dict | None = None, *, like: fx.Node,
             provenance: fx.Node | None = None) -> fx.Node:
        """Insert ``target(*args, **kwargs)`` before ``like``, copying the provenance (module path, source line) of
        ``provenance`` (default: ``like``) and computing the new node's example value with the graph's fake mode."""
        with self.gm.graph.inserting_before(like):
            node = self.gm.graph.call_function(target, args, kwargs or {})
        origin = like if provenance is None else provenance
        for key in _KEPT_META:
            if key in origin.meta:
                node.meta[key] = origin.meta[key]
        self.propagate(node)
        return node

    def propagate(self, node: fx.Node) -> None:
        """Compute ``node.meta['example_value']`` by running it on its inputs' example values (fake)."""
        if self._fake_mode is None:
            return
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), fx_utils.val)
        with self._fake_mode:
            node.meta["example_value"] = node.target(*args, **kwargs)

    # ---- reporting -----------------------------------------------------------------------------------
    def matched(self, family: str, pattern: str, node: fx.Node, detail: str = "") -> None:
        self.report.matches.append(
            Match(family, pattern, fx_utils.module_path(node), fx_utils.source_line(node), detail)
        )

    def fallback(self, family: str, node: fx.Node, reason: str) -> None:
        self.report.fallbacks.append(
            Fallback(family, fx_utils.module_path(node), fx_utils.source_line(node), reason)
        )


def _is_fake(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor)


def _find_fake_mode(gm: fx.GraphModule, example_inputs: Sequence[Any]):
    """The fake mode of the graph's own example values (Dynamo gives the backend a different one in its
    tracing context; node metadata must not mix the two)."""
    from torch._guards import detect_fake_mode
    from torch._subclasses.fake_tensor import FakeTensor

    for node in gm.graph.nodes:
        v = fx_utils.val(node)
        if isinstance(v, FakeTensor):
            return v.fake_mode
    return detect_fake_mode(example_inputs)
