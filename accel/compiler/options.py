"""``AccelOptions``: every user-facing option of the backend, in one frozen, documented dataclass.

``torch.compile(model, backend="accel", options={...})`` hands the dict to :meth:`AccelOptions.from_dict`,
which rejects unknown keys and ill-typed values with an error that names the valid ones. Defaults are the
named constants below. :meth:`AccelOptions.compute_hash` covers every field that changes the compiled
result; it enters Inductor's cache key through the post-grad pass's ``uuid()`` (``lowering/inductor.py``).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from accel import envs

DEFAULT_FUSE_ATTENTION = True
DEFAULT_FUSE_FFN = True
DEFAULT_MERGE_PROJECTIONS = True
DEFAULT_REPLACE_LINEAR = True
DEFAULT_FUSE_NORM = True
DEFAULT_FUSE_KV_UPDATE = True
# accel's torch._inductor.config patches, under the user's inductor_config. combo_kernels: measured on the 1B decode
# step on an H200 (benchmarks/results/decode_1b_s4run5_*), 1034 vs 1013 tok/s with the position on the device and
# 808 vs 706 with the host in the loop.
INDUCTOR_DEFAULTS = {"combo_kernels": True}
DEFAULT_CUDAGRAPHS = False
# Programmatic dependent launch: measured on an H200 (benchmarks/results/decode_*_s6run*): +2.4% and +3.4% decode
# tok/s on the 8B shape; on the 1B shape on an H100, once its first step kept 16-byte loads (session 12,
# profile_decode_1b*_s12run9/11_*), 5-6% less GPU time a step. On by default since session 15, once it also covered
# the decode attention chain: one H200 process (decode_1b_pdl_default_s15run3_*), 1B decode against pdl=False at
# device position int8 + head +9.5%, int4 + head +16.6%, bf16 -0.7%; with the host in the loop +6.8%, +6.6%, +4.6%;
# the host's time a token was not longer with it (0.27-0.33 ms against 0.30-0.69 without).
DEFAULT_PDL = True
# Split-K quantized linears reduced in their last program (one launch, not two): measured on an H100
# (benchmarks/results/decode_1b_quant_s10run6_*), 1B int8 + head decode 1223.3 vs 1176.2 tok/s in the same run.
DEFAULT_REDUCE_SPLITS_IN_KERNEL = True
DEFAULT_STRICT = False
DEFAULT_GROUP_SIZE = 128
DEFAULT_GPTQ = True
DEFAULT_AWQ = False
QUANTIZE_SCHEMES = ("int8_weight_only", "int4_weight_only", "w8a8_int8", "w8a8_fp8")
GROUP_SIZES = (32, 64, 128)

# Fields that only change where output goes or how failures surface, never the compiled code.
_NOT_HASHED = frozenset({"dump_dir", "strict"})


class AccelOptionsError(ValueError):
    """A bad key or value in ``options={...}``; the message names what is valid."""


@dataclass(frozen=True)
class AccelOptions:
    fuse_attention: bool = DEFAULT_FUSE_ATTENTION
    """Rewrite attention (``F.scaled_dot_product_attention`` and the written-out matmul → softmax → matmul
    form, with masks, causal, scale and GQA ``repeat_kv``) into one ``accel::attention`` kernel."""

    fuse_ffn: bool = DEFAULT_FUSE_FFN
    """Rewrite feed-forward blocks (gated: act(gate(x)) * up(x) → down, including a merged gate_up linear
    followed by chunk/split; plain: fc1 → activation → fc2) into one ``accel::ffn`` op. Gate and up
    weights are concatenated at compile time so x is multiplied once."""

    merge_projections: bool = DEFAULT_MERGE_PROJECTIONS
    """Merge linears that share one input (Q/K/V) into one GEMM over their concatenated weights, followed
    by a split (an exact reparameterization)."""

    replace_linear: bool = DEFAULT_REPLACE_LINEAR
    """Route every remaining linear with a parameter weight (``linear``, ``addmm`` as in GPT-2's Conv1D,
    ``matmul`` by a weight) through ``accel::linear``, which picks a GEMV, split-K, Triton or cuBLAS
    kernel per shape on the GPU."""

    fuse_norm: bool = DEFAULT_FUSE_NORM
    """Fold each RMSNorm into the projections it feeds (its weight into their columns at compile time, the rsqrt
    applied in the GEMV's prologue at decode) and each residual add into the projection before it (added in the
    kernel's epilogue): two kernels fewer per decoder layer. Runs after quantization, so it applies to the
    unquantized projections."""

    fuse_kv_update: bool = DEFAULT_FUSE_KV_UPDATE
    """In graphs over a static KV cache (transformers' StaticCache), rewrite the rotary embedding of q and k and
    the two cache writes in front of an attention into one ``accel::rope_kv_update`` kernel that rotates q and
    writes rotated k and v into the cache in place; in decode steps the cache's length counter is read and
    advanced by the same kernel (``accel::rope_kv_append``). Five small kernels fewer per decoder layer."""

    split_argmax: bool = True
    """Compute an argmax over a large last dim (a greedy decoder's token choice over the vocabulary) as two
    parallel reductions, first over groups of the row and then over the group maxima, instead of one program per
    row. The result is exactly the same index."""

    outer_products: bool = True
    """Compute a matmul whose inner dimension is 1 (an outer product, such as a rotary embedding's
    ``inv_freq @ position_ids``) as a broadcast multiply, which Inductor fuses into the ops around it, instead of a
    cuBLAS launch. The result is exactly the same."""

    cudagraphs: bool = DEFAULT_CUDAGRAPHS
    """Run the compiled graph under CUDA graphs (Inductor's cudagraph trees), as ``mode="reduce-overhead"``
    does for Inductor. Parameters, accel's derived weights and ``mark_static_address`` buffers (such as
    transformers' StaticCache) are static inputs, so no replay copies them. Call
    ``torch.compiler.cudagraph_mark_step_begin()`` before each step and clone outputs you keep."""

    pdl: bool = DEFAULT_PDL
    """Programmatic dependent launch (Hopper and newer GPUs, ignored elsewhere): Inductor launches accel's decode
    GEMVs with CUDA's PDL attribute; each loads its first weight tile, then waits for the kernel before it, and
    lets the next one launch after its main loop (int4 weight-only ones, by default, on their first line:
    ``pdl_early_trigger``), so launches and first loads overlap the previous kernel's tail (with
    ``pdl_attention``, the decode attention chain too). Results are bit-identical, except int4 GEMVs with a
    fused RMSNorm, whose first step outside the loop rounds its fp32 sums in another order (within 1e-4 of the
    kernel without PDL). On an H200 (session 15), 1B Llama decode against ``pdl=False``: int8 + head +9.5%, int4 +
    head +16.6%, bf16 -0.7% with the positions on the device; +4.6–6.8% with the host in the loop."""

    pdl_attention: bool = True
    """With ``pdl``: also launch the decode attention's kernels (the split-KV kernel and the reduction of its
    splits) and the rotary / KV-cache kernel before them with PDL. Each lets the next kernel launch first thing and
    then waits for the kernel before it, so the chain from the rotary kernel to the output projection launches at
    once and the projection loads its first weights while attention runs. Results are bit-identical. Off leaves PDL
    to the GEMVs alone (an ablation, for same-run comparisons)."""

    pdl_early_trigger: bool | str | None = None
    """With ``pdl``: the GEMVs let the next kernel launch first thing instead of after their main loop, so that the
    next GEMV's programs can take the SMs this one frees and load their first weights while it still streams.
    ``"small"``: only GEMV launches whose warps fit in half of the GPU's warp slots (the next kernel's early
    programs wait resident, and would take slots a larger launch's later programs need). ``None`` (default):
    ``"small"`` with ``quantize="int4_weight_only"``, else off. Results are bit-identical. Profiled 1B decode steps
    (session 16, same process each): int4 + head 575 → 530 µs with ``"small"`` (H100) and 546 → 523 µs with True
    (H200); int8 + head 698 → 708 µs (H100) and 664 → 709 µs (H200), hence off for the other schemes."""

    reduce_splits_in_kernel: bool = DEFAULT_REDUCE_SPLITS_IN_KERNEL
    """Quantized linears split along K (decode GEMVs of long rows, skinny GEMMs) add up their partial sums in the
    last program of each output tile instead of a second kernel launch; the graph keeps a small buffer of int32
    tile counters, which each launch sets back to zero. Results are bit-identical. On an H100 the 1B int8 decode
    step (CUDA graphs) ran 4% faster with it. With it on, one compiled graph must not run on two CUDA streams at
    the same time: turn it off if you do that."""

    pack_derived_inputs: bool = True
    """The tensors accel derives from the weights (quantized weights, scales, zero points, merged or folded
    weights) reach the compiled graph as one flat buffer a dtype, read through views, instead of one graph input
    each: a quantized 16-layer Llama goes from ~195 extra inputs to a few. Every call pays on the host for each
    input (AOTAutograd's wrappers, a CUDA-graph replay's checks of its static inputs). Packing copies the tensors
    once at compile time, which needs room for one more copy of the largest dtype's tensors then. Results are the
    same."""

    quantize: str | None = None
    """Lossy, opt-in: quantize the weights of every linear accel rewrites (projections, FFNs; not the LM head
    unless ``quantize_lm_head``). "int8_weight_only" (per-channel symmetric), "int4_weight_only" (groups of
    ``group_size``, asymmetric unless ``symmetric``), "w8a8_int8" (int8 weights per channel, activations per
    token, dynamic), "w8a8_fp8" (e4m3, per-row weight and per-token activation scales). Weights are quantized once
    at compile time from the real parameters; the compiled graph reads only the quantized copies."""

    group_size: int = DEFAULT_GROUP_SIZE
    """int4 group size along the input dimension: 32, 64 or 128."""

    symmetric: bool = False
    """int4 only: symmetric groups (no zero point) instead of the default asymmetric ones."""

    gptq: bool = DEFAULT_GPTQ
    """int4, w8a8_int8 and w8a8_fp8: choose the weight codes by GPTQ (second-order error feedback on the layer's
    output, from the Hessian of its input activations on the compile's example inputs) instead of rounding to
    nearest; the scales stay those of rounding to nearest (8-bit) or of the group grid (int4). Used when
    at least 128 rows of those activations were captured (not for graphs that mutate their inputs); calibrate on representative
    inputs, ideally thousands of tokens. Off: round to nearest with an activation-weighted clipping search."""

    awq: bool = DEFAULT_AWQ
    """int4 only: activation-aware scaling (AWQ) before quantizing. Per layer, input channel j is scaled by
    s_j = mean|x_j|^α with α searched in 0, 0.1, …, 0.9 to minimize the layer's output error on the compile's
    example inputs; the weight is quantized as W·diag(s) and the input multiplied by 1/s (fused into its producer;
    for a gated FFN's down projection, folded into the up rows). Needs captured activations, as ``gptq`` does."""

    quantize_lm_head: bool = False
    """Also quantize the LM head (the output projection onto the vocabulary; with tied embeddings it is the
    embedding matrix). Off by default: it is the layer most sensitive to quantization."""

    quantize_exclude: tuple[str, ...] = ()
    """Module-path patterns (fnmatch, e.g. "model.layers.0.*", "*.down_proj") whose linears stay unquantized."""

    min_sqnr_db: float | None = None
    """Accuracy guard: a linear whose quantized output has a signal-to-quantization-noise ratio below this (dB,
    measured on the compile's example inputs; on the weights when the graph mutates its inputs) stays in full
    precision, and the report says which."""

    smoothquant: float | str | None = None
    """w8a8 schemes only: SmoothQuant with migration strength α in [0, 1] (typical 0.5). Per input channel j,
    s_j = amax(X_j)^α / amax(W_j)^(1−α) (absolute maxima of the activations seen on the compile's example inputs
    and of the weight column); the weight is quantized as W·diag(s) and the layer's input is multiplied by 1/s
    (fused into its producer, e.g. the norm), moving activation outliers into the weights. ``"auto"`` picks α per
    layer from 0.1–0.9, or no smoothing, by the quantized layer's output error on those activations
    (``quant.smoothquant_search``). Layers whose inputs were not captured (graphs that mutate their inputs) are
    quantized unsmoothed, and the report says so."""

    dump_dir: str | None = field(default_factory=envs.ACCEL_DUMP_DIR)
    """Write numbered before/after graphs per pass, ``report.json``/``report.md`` and Inductor's generated
    code for each compiled graph here. Default: the ``ACCEL_DUMP_DIR`` environment variable, else off."""

    strict: bool = DEFAULT_STRICT
    """Raise instead of falling back to plain Inductor when a pass or the compile of the rewritten graph
    fails (for debugging accel itself)."""

    inductor_config: Mapping[str, Any] = field(default_factory=dict)
    """Extra ``torch._inductor.config`` patches passed to ``compile_fx`` (e.g. ``{"max_autotune": True}``), over
    accel's own (``INDUCTOR_DEFAULTS``: ``combo_kernels`` on, which launches the small independent kernels Inductor
    generates around accel's ops — masks, positions, rotary tables — as one; ``{"combo_kernels": False}`` turns
    it off)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise AccelOptionsError(f"option {f.name!r} must be True or False, got {value!r}")
        if self.pdl_early_trigger is not None and not isinstance(self.pdl_early_trigger, bool) \
                and self.pdl_early_trigger != "small":
            raise AccelOptionsError(f"option 'pdl_early_trigger' must be True, False, 'small' or None, "
                                    f"got {self.pdl_early_trigger!r}")
        if self.quantize is not None and self.quantize not in QUANTIZE_SCHEMES:
            raise AccelOptionsError(f"option 'quantize' must be one of {', '.join(QUANTIZE_SCHEMES)} or None, "
                                    f"got {self.quantize!r}")
        if self.group_size not in GROUP_SIZES or isinstance(self.group_size, bool):
            raise AccelOptionsError(f"option 'group_size' must be one of {GROUP_SIZES}, got {self.group_size!r}")
        if isinstance(self.quantize_exclude, str) or not all(isinstance(p, str) for p in self.quantize_exclude):
            raise AccelOptionsError(f"option 'quantize_exclude' must be a list of module-path patterns, "
                                    f"got {self.quantize_exclude!r}")
        object.__setattr__(self, "quantize_exclude", tuple(self.quantize_exclude))
        if self.min_sqnr_db is not None and (isinstance(self.min_sqnr_db, bool)
                                             or not isinstance(self.min_sqnr_db, (int, float))):
            raise AccelOptionsError(f"option 'min_sqnr_db' must be a number of dB or None, got {self.min_sqnr_db!r}")
        if self.smoothquant is not None:
            if self.smoothquant != "auto" and (isinstance(self.smoothquant, bool)
                                               or not isinstance(self.smoothquant, (int, float))
                                               or not 0.0 <= self.smoothquant <= 1.0):
                raise AccelOptionsError(f"option 'smoothquant' must be a migration strength in [0, 1] (typical 0.5), "
                                        f"'auto' or None, got {self.smoothquant!r}")
            if self.quantize not in ("w8a8_int8", "w8a8_fp8"):
                raise AccelOptionsError(f"option 'smoothquant' needs quantize='w8a8_int8' or 'w8a8_fp8' (it smooths "
                                        f"activation outliers), got quantize={self.quantize!r}")
        if self.awq and self.quantize != "int4_weight_only":
            raise AccelOptionsError(f"option 'awq' needs quantize='int4_weight_only', got quantize={self.quantize!r}")
        if self.quantize is None and (self.symmetric or self.quantize_lm_head or self.min_sqnr_db is not None):
            import warnings

            warnings.warn("accel: symmetric / quantize_lm_head / min_sqnr_db have no effect without 'quantize'",
                          stacklevel=3)
        if self.dump_dir is not None and not isinstance(self.dump_dir, str):
            raise AccelOptionsError(f"option 'dump_dir' must be a path string or None, got {self.dump_dir!r}")
        if not isinstance(self.inductor_config, Mapping):
            raise AccelOptionsError(f"option 'inductor_config' must be a dict, got {self.inductor_config!r}")
        object.__setattr__(self, "inductor_config", dict(self.inductor_config))
        if self.inductor_config:
            import torch._inductor.config as inductor_config

            bad = [k for k in self.inductor_config if not hasattr(inductor_config, k.split(".")[0])]
            if bad:
                raise AccelOptionsError(f"inductor_config has unknown torch._inductor.config keys: {bad}")

    def early_trigger(self) -> bool | str:
        """``pdl_early_trigger`` with its default resolved: ``"small"`` for int4 weight-only, else off."""
        if self.pdl_early_trigger is not None:
            return self.pdl_early_trigger
        return "small" if self.quantize == "int4_weight_only" else False

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | "AccelOptions" | None) -> "AccelOptions":
        """Validate a user's ``options`` dict (``None`` gives the defaults)."""
        if options is None:
            return cls()
        if isinstance(options, AccelOptions):
            return options
        if not isinstance(options, Mapping):
            raise AccelOptionsError(f"accel options must be a dict, got {type(options).__name__}")
        valid = cls.field_names()
        for key in options:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise AccelOptionsError(f"unknown accel option {key!r}{hint}; valid options: {', '.join(valid)}")
        return cls(**options)

    def replace(self, **changes: Any) -> "AccelOptions":
        return dataclasses.replace(self, **changes)

    def compute_hash(self) -> str:
        """A stable hash of every field that changes the compiled code (not ``dump_dir`` or ``strict``)."""
        payload = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_HASHED}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()[:16]

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(name, default, docstring) per field, read from the source, for the CLI and the README table."""
        import ast
        import inspect
        import textwrap

        docs: dict[str, str] = {}
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
        defaults = cls()
        return [(n, repr(getattr(defaults, n)), docs.get(n, "")) for n in cls.field_names()]
