"""The pass list, in order. Read it top to bottom: this is everything accel does to a graph."""
from __future__ import annotations

from accel.compiler.options import AccelOptions
from accel.compiler.pass_base import AccelPass


def build_pipeline(options: AccelOptions) -> list[AccelPass]:
    from accel.lowering.add_split_counters import AddSplitCountersPass
    from accel.lowering.capture_linear_inputs import CaptureLinearInputsPass
    from accel.lowering.fuse_attention import FuseAttentionPass
    from accel.lowering.fuse_ffn import FuseFFNPass
    from accel.lowering.fuse_kv_update import FuseKVUpdatePass
    from accel.lowering.fuse_norm import FuseNormPass
    from accel.lowering.merge_projections import MergeProjectionsPass
    from accel.lowering.outer_product import OuterProductPass
    from accel.lowering.quantize_weights import QuantizeWeightsPass
    from accel.lowering.replace_linear import ReplaceLinearPass
    from accel.lowering.split_argmax import SplitArgmaxPass

    passes: list[AccelPass] = []
    # First, on the untouched graph: the activations each linear sees, for the quantization guard's SQNR.
    if options.quantize:
        passes.append(CaptureLinearInputsPass())
    if options.fuse_attention:
        passes.append(FuseAttentionPass())
        if options.fuse_kv_update:  # the rotary embedding and cache write in front of each fused attention
            passes.append(FuseKVUpdatePass())
    # FFNs before projection merging: gate and up share an input and would otherwise be merged as a
    # plain projection pair, hiding the block from the FFN pattern.
    if options.fuse_ffn:
        passes.append(FuseFFNPass())
    if options.merge_projections:
        passes.append(MergeProjectionsPass())
    # Last: whatever linear no fusion took (o_proj, lm_head, ...).
    if options.replace_linear:
        passes.append(ReplaceLinearPass())
    # Norms and residual adds into the projections around them (norm weights folded into the weights).
    if options.fuse_norm:
        passes.append(FuseNormPass())
    # After every linear is an accel op: swap weights (norm-folded ones included) for quantized copies (lossy,
    # opt-in); the fused norms and residuals carry over to the quantized ops.
    if options.quantize:
        passes.append(QuantizeWeightsPass())
    # Independent of the rest: a greedy step's argmax over the vocabulary.
    if options.split_argmax:
        passes.append(SplitArgmaxPass())
    # And a matmul with an inner dimension of 1 (the rotary embedding's angles) as a multiply Inductor can fuse.
    if options.outer_products:
        passes.append(OuterProductPass())
    # Last, once every accel op is in place: tile counters for the kernels that split their reduction.
    if options.reduce_splits_in_kernel:
        passes.append(AddSplitCountersPass())
    return passes
