"""What accel did to a model: the rewrites it made, what it left alone and why, and how long each pass took.

One :class:`GraphReport` per graph Dynamo handed the backend (a model with graph breaks has several); a
:class:`Report` gathers them. ``accel.explain`` returns a Report; every compile with ``dump_dir`` writes one
as ``report.json`` and ``report.md``.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

FAMILIES = ("attention", "ffn", "linear", "quantize", "norm")


@dataclass
class Match:
    """One rewrite: ``family`` (attention / ffn / linear), the ``pattern`` spelling it matched, where."""

    family: str
    pattern: str
    module: str
    source: str
    detail: str = ""


@dataclass
class Fallback:
    """A subgraph accel recognised but left to Inductor, with the reason."""

    family: str
    module: str
    source: str
    reason: str

    def __str__(self) -> str:
        where = self.module or self.source or "<graph>"
        return f"{self.family} at {where}: {self.reason}"


@dataclass
class PassRecord:
    name: str
    matches: int
    ms: float
    error: str | None = None


@dataclass
class GraphReport:
    index: int
    num_nodes: int = 0
    passes: list[PassRecord] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    fallbacks: list[Fallback] = field(default_factory=list)
    compiled_with: str = "accel"
    """"accel" (rewritten graph through Inductor), "inductor" when accel fell back to the unmodified graph, or
    "discarded" when Dynamo restarted its trace (to specialize a float, say) and threw this graph away."""
    error: str | None = None
    calls: int = 0
    """How often the compiled graph has run."""
    compile_ms: float = 0.0
    derived_weight_bytes: int = 0
    packed_inputs: int = 0
    """Graph inputs saved by packing the derived tensors into one buffer a dtype (option ``pack_derived_inputs``)."""
    accel_ops: dict[str, int] = field(default_factory=dict)
    """accel ops in the rewritten graph handed to Inductor, by op name."""
    output_code: list[str] = field(default_factory=list)
    output_code_note: str = ""
    """Why ``output_code`` is empty where Inductor did compile (its caches disabled), else empty."""
    kernels: list[str] = field(default_factory=list)
    """accel Triton kernels launched by the graph Inductor lowered (empty on CPU, where ops run their torch
    reference, and on an Inductor cache hit, when no pass runs)."""
    kernel_analyses: dict = field(default_factory=dict)
    """PyTorch's analysis of which tensors a kernel launch reads and writes: how often it was asked for accel
    kernels during the compile ("asked"), how often it ran ("ran"; the rest came from accel's memo), and for
    each kernel analyzed more than once the arguments that differed ("varying")."""
    pdl_kernels: dict = field(default_factory=dict)
    """Programmatic dependent launch (option ``pdl``): accel kernel definitions Inductor generated that were
    compiled for it ("asked") and those given the launch attribute ("launched"); zero on CPU and before Hopper."""


@dataclass
class Report:
    graphs: list[GraphReport] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Rewrites per family over every graph; always has the keys attention, ffn, linear, quantize (quantized
        linears) and norm (RMSNorms and residual adds folded into projections)."""
        c = Counter({f: 0 for f in FAMILIES})
        for g in self.graphs:
            if g.compiled_with == "accel":
                c.update(m.family for m in g.matches)
        return dict(c)

    @property
    def matches(self) -> list[Match]:
        return [m for g in self.graphs if g.compiled_with == "accel" for m in g.matches]

    @property
    def fallbacks(self) -> list[Fallback]:
        return [f for g in self.graphs if g.compiled_with != "discarded" for f in g.fallbacks]

    @property
    def pass_ms(self) -> dict[str, float]:
        """Total milliseconds per pass over every graph."""
        t: Counter = Counter()
        for g in self.graphs:
            for p in g.passes:
                t[p.name] += p.ms
        return {k: round(v, 3) for k, v in t.items()}

    def to_dict(self) -> dict:
        return {"counts": self.counts, "pass_ms": self.pass_ms, "graphs": [asdict(g) for g in self.graphs]}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        lines = ["# accel report", ""]
        lines.append("| family | rewrites |")
        lines.append("|---|---|")
        lines += [f"| {k} | {v} |" for k, v in self.counts.items()]
        for g in self.graphs:
            lines += ["", f"## graph {g.index} ({g.num_nodes} nodes, compiled with {g.compiled_with}, "
                          f"{g.compile_ms:.0f} ms)"]
            if g.error:
                lines.append(f"\n**fell back to Inductor:** {g.error}")
            lines += ["", "| pass | matches | ms |", "|---|---|---|"]
            lines += [f"| {p.name} | {p.matches} | {p.ms:.2f} |" + (f" error: {p.error}" if p.error else "")
                      for p in g.passes]
            if g.matches:
                lines += ["", "| family | pattern | module | source | detail |", "|---|---|---|---|---|"]
                lines += [f"| {m.family} | {m.pattern} | {m.module} | {m.source} | {m.detail} |" for m in g.matches]
            if g.fallbacks:
                lines += ["", "Not rewritten:"]
                lines += [f"- {f}" for f in g.fallbacks]
            if g.output_code:
                lines += ["", "Inductor output code: " + ", ".join(g.output_code)]
            elif g.output_code_note:
                lines += ["", "Inductor output code: " + g.output_code_note]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        lines = [f"accel: {len(self.graphs)} graph(s); rewrites: {counts}"]
        by_pattern = Counter((m.family, m.pattern) for m in self.matches)
        for (family, pattern), n in sorted(by_pattern.items()):
            lines.append(f"  {family:9s} {n:4d} x {pattern}")
        for g in self.graphs:
            if g.error:
                lines.append(f"  graph {g.index} fell back to plain Inductor: {g.error}")
        if self.fallbacks:
            lines.append(f"  not rewritten ({len(self.fallbacks)}):")
            lines += [f"    {f}" for f in self.fallbacks[:20]]
            if len(self.fallbacks) > 20:
                lines.append(f"    ... {len(self.fallbacks) - 20} more (see report.json)")
        timings = ", ".join(f"{k} {v:.1f}" for k, v in self.pass_ms.items())
        if timings:
            lines.append(f"  pass ms: {timings}")
        return "\n".join(lines)
