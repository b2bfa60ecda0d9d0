"""Compile every Triton launch a launcher makes for sm_90, as Inductor would, without a GPU.

Run as a script (no TRITON_INTERPRET, so kernels are real JITFunctions): launchers are called on CPU tensors with
``wrap_triton`` replaced by a recorder, and each recorded launch is compiled with Triton's NVIDIA backend for an
H100/H200 target, Python floats typed fp64 as Inductor types them for user kernels. Prints one line per launch.
"""
import re
import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

_TYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.bool: "i1",
          torch.int64: "i64", torch.int32: "i32", torch.uint8: "u8", torch.int8: "i8",
          torch.float8_e4m3fn: "fp8e4nv"}
_LAUNCH_OPTIONS = ("num_warps", "num_stages")
launches = []


def record(kernel):
    class Launcher:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((kernel, args, kwargs))

    return Launcher()


def compile_launch(kernel, args, kwargs):
    bound = dict(zip(kernel.arg_names, args))
    bound.update({k: v for k, v in kwargs.items() if k not in _LAUNCH_OPTIONS})
    signature, constants, attrs = {}, {}, {}
    for i, p in enumerate(kernel.params):
        value = bound.get(p.name, p.default)
        # the divisibility hints Triton's launcher (and so Inductor) gives: 16-byte aligned tensors, sizes and
        # strides that are multiples of 16; without them no load is vectorized
        if not p.is_constexpr and (isinstance(value, torch.Tensor) or (type(value) is int and value % 16 == 0)):
            attrs[(i,)] = [["tt.divisibility", 16]]
        if p.is_constexpr:
            signature[p.name], constants[p.name] = "constexpr", value
        elif isinstance(value, torch.Tensor):
            signature[p.name] = "*" + _TYPES[value.dtype]
        elif isinstance(value, bool):
            signature[p.name] = "i1"
        elif isinstance(value, float):
            signature[p.name] = "fp64"  # what Inductor passes for a Python float
        elif isinstance(value, int):
            signature[p.name] = "i64" if abs(value) >= 2**31 else "i32"
        else:
            raise TypeError(f"{kernel.__name__}.{p.name}: cannot type {value!r}")
    options = {k: kwargs[k] for k in _LAUNCH_OPTIONS if k in kwargs}
    return triton.compile(ASTSource(kernel, signature, constants, attrs), target=GPUTarget("cuda", 90, 32),
                          options=options)


def _weight_loads(compiled) -> list[str]:
    """The weight loads in a compiled kernel's PTX: the GEMVs stream their weights with evict_first, or (the MMA
    GEMVs, ``qlinear.MMA_L2PF``) through inline PTX with the L2's 256-byte prefetch."""
    return [line for line in compiled.asm["ptx"].splitlines()
            if "ld.global" in line and ("evict_first" in line or "L2::256B" in line)]


def _vector_weight_loads(compiled) -> int:
    """16-byte weight loads in a compiled kernel's PTX."""
    return sum(".v4.b32" in line for line in _weight_loads(compiled))


def _narrow_weight_loads(compiled) -> int:
    """Weight loads in a compiled kernel's PTX that read less than 16 bytes a lane."""
    return sum(".v4.b32" not in line for line in _weight_loads(compiled))


def _pdl_order(compiled) -> list[str]:
    """The griddepcontrol instructions and global memory accesses of a compiled kernel's PTX, in program order
    (each access named ld.global / atom.global / st.global)."""
    order = []
    for line in compiled.asm["ptx"].splitlines():
        op = line.strip().split(" ")[0].rstrip(";")
        if op.startswith("griddepcontrol."):
            order.append(op)
        elif op.startswith(("ld.global", "st.global", "atom.global")) or (op.startswith("@") and "global" in line):
            order.append(next(a for a in ("ld.global", "atom.global", "st.global") if a in line or a[:2] == "st"))
    return order


def _quantized_linear_launches(kq, quant, dt) -> None:
    """Each scheme through its GEMV (M=1, + split-K, + the other axis order), skinny (M=48) and tiled (M=256)
    configs, a gated SiLU epilogue, the activation-quantization and dequantization (cuBLAS candidate) kernels."""
    N, K = 512, 1024
    for scheme in quant.SCHEMES:
        sym = scheme != "int4_weight_only"
        q, s, z = quant.quantize_weight(torch.randn(N, K, dtype=dt), scheme, 128, symmetric=sym)
        b = torch.randn(N, dtype=dt)
        for M in (1, 48, 256):
            x = torch.randn(M, K, dtype=dt)
            cands = kq.candidate_configs(M, N, K, scheme, 128, False, 2, 132)
            kq.qlinear(x, q, s, z, b, scheme, 128, "identity", False, _config=cands[0])
            if M == 1:  # + split-K, and the GEMV's tile axes in the order another Triton version prefers
                kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, _config={**cands[0], "SPLIT_K": 2})
                # split-K reduced in the last program, with the residual
                kq.qlinear(x, q, s, z, b, scheme, 128, "identity", False, None, None, torch.randn(M, N, dtype=dt),
                           torch.zeros(N, dtype=torch.int32), _config={**cands[0], "SPLIT_K": 2})
                flipped = {**cands[0], "CHUNKS_FIRST": not kq.CHUNKS_FIRST}
                kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, _config=flipped)
                # the RMSNorm prologue and the residual epilogue, in both axis orders
                r, g = torch.randn(M, N, dtype=dt), torch.randn(K, dtype=dt)
                for cfg in ({**cands[0], "SPLIT_K": 1}, {**flipped, "SPLIT_K": 1}):
                    kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, 1e-5, g, r, _config=cfg)
                if scheme == "int4_weight_only":  # words summed on packed bf16 instructions, per word and chunk
                    for cfg in ({**cands[0], "BF16X2": 1}, {**flipped, "SPLIT_K": 1, "BF16X2": 2}):
                        kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, 1e-5, g, r, _config=cfg)
                    # Σx on bf16 pairs too, with the norm (fp32 x) and without (x's own bf16 words): a K loop with
                    # PREFETCH, one step, and its TILES twin right after it (the TILES check below compares the two)
                    three = {**cands[0], "SPLIT_K": 1, "BLOCK_K": K, "BF16X2": 3}
                    for norm in ((1e-5, g, r), ()):
                        for cfg in ({**flipped, "SPLIT_K": 1, "BLOCK_K": K // 2, "PREFETCH": True, "BF16X2": 3},
                                    three, {**three, "TILES": 2}):
                            kq.qlinear(x, q, s, z, b, scheme, 128, "identity", False, *norm, _config=cfg)
                if scheme in kq.WEIGHT_ONLY:  # each K step's words loaded one step ahead, with and without the norm
                    ahead = {**cands[0], "SPLIT_K": 1, "BLOCK_K": K // 2, "PREFETCH": True}
                    kq.qlinear(x, q, s, z, b, scheme, 128, "identity", False, _config=ahead)
                    kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, 1e-5, g, r, _config=ahead)
                    # several tiles of weight rows a program, x loaded once (and its one-tile twin, to compare)
                    one_step = {**cands[0], "SPLIT_K": 1, "BLOCK_K": K}
                    for cfg in (one_step, {**one_step, "TILES": 2}):
                        kq.qlinear(x, q, s, z, b, scheme, 128, "identity", False, 1e-5, g, r, _config=cfg)
        x = torch.randn(2, K, dtype=dt)
        for M in (2, 32):
            cfg = kq.candidate_configs(M, N // 2, K, scheme, 128, True, 2, 132)[0]
            kq.qlinear(x[:1].expand(M, K), q, s, z, None, scheme, 128, "silu", True, _config=cfg)
            if cfg["kernel"] == "gemv" and scheme in kq.WEIGHT_ONLY:
                ahead = {**cfg, "SPLIT_K": 1, "BLOCK_K": K // 2, "PREFETCH": True}
                kq.qlinear(x[:1].expand(M, K), q, s, z, None, scheme, 128, "silu", True, _config=ahead)
                one_step = {**cfg, "SPLIT_K": 1, "BLOCK_K": K}
                for c in (one_step, {**one_step, "TILES": 2}):
                    kq.qlinear(x[:1].expand(M, K), q, s, z, None, scheme, 128, "silu", True, _config=c)
            # gated, split-K reduced in the last program (a GEMV at M = 2, a skinny tl.dot tile at M = 32)
            kq.qlinear(x[:1].expand(M, K), q, s, z, None, scheme, 128, "silu", True, None, None, None,
                       torch.zeros(N, dtype=torch.int32), _config={**cfg, "SPLIT_K": 2})
        if scheme in kq.WEIGHT_ONLY:
            kq.qlinear(x, q, s, z, b, scheme, 128, "gelu_tanh", True, _config=kq.CUBLAS)
    _mma_gemv_launches(kq, quant, dt)
    # int8 weight-only with K % 4 != 0: the byte GEMV instead of int32 words
    q, s, _ = quant.quantize_weight(torch.randn(N, K - 2, dtype=dt), "int8_weight_only")
    x = torch.randn(1, K - 2, dtype=dt)
    cfg = kq.candidate_configs(1, N, K - 2, "int8_weight_only", 128, False, 2, 132)[0]
    kq.qlinear(x, q, s, None, None, "int8_weight_only", 128, "relu", False, _config=cfg)
    # int4 asymmetric with 32-groups (the zero-point loads), fp32 activations (x no longer in 16-byte chunks)
    q, s, z = quant.quantize_weight(torch.randn(N, K), "int4_weight_only", 32)
    for M in (1, 32):
        cfg = kq.candidate_configs(M, N, K, "int4_weight_only", 32, False, 4, 132)[0]
        kq.qlinear(torch.randn(M, K), q, s, z, None, "int4_weight_only", 32, "identity", False, _config=cfg)


def _mma_gemv_launches(kq, quant, dt) -> None:
    """The int4 and int8 tensor-core GEMVs: every tile at M = 2, 8 and 16 (two token tiles), unsplit and split with
    the residual reduced in the last program; gated (M = 2 and 16), fp16 x; int4 symmetric and the norm in the
    prologue."""
    N, K = 512, 1024
    b = torch.randn(N, dtype=dt)

    def every_tile(scheme, q, s, z):
        for M in (2, 8, 16):
            x = torch.randn(M, K, dtype=dt)
            for cfg in [c for c in kq._mma_configs(M, N, K, scheme, 128, False, 2, 132) if c["SPLIT_K"] == 1]:
                kq.qlinear(x, q, s, z, b, scheme, 128, "identity", False, _config=cfg)
            kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, None, None,
                       torch.randn(M, N, dtype=dt), torch.zeros(N, dtype=torch.int32), _config={**cfg, "SPLIT_K": 2})

    q, s, z = quant.quantize_weight(torch.randn(N, K, dtype=dt), "int4_weight_only", 128)
    every_tile("int4_weight_only", q, s, z)
    gated = kq._mma_configs(2, N // 2, K, "int4_weight_only", 128, True, 2, 132)[0]
    kq.qlinear(torch.randn(2, K, dtype=dt), q, s, z, None, "int4_weight_only", 128, "silu", True, _config=gated)
    # two token tiles (9-16 rows of x), gated
    kq.qlinear(torch.randn(16, K, dtype=dt), q, s, z, None, "int4_weight_only", 128, "silu", True,
               _config=kq._mma_configs(16, N // 2, K, "int4_weight_only", 128, True, 2, 132)[0])
    # the norm in the prologue (kq.MMA_GEMV_NORM), with and without its weight: one and two token tiles, gated
    kq.MMA_GEMV_NORM = True
    g = torch.randn(K, dtype=dt)
    for M, weight in ((4, g), (12, g), (8, None)):
        cfg = kq._mma_configs(M, N, K, "int4_weight_only", 128, False, 2, 132)[0]
        kq.qlinear(torch.randn(M, K, dtype=dt), q, s, z, None, "int4_weight_only", 128, "identity", False, 1e-5,
                   weight, _config=cfg)
    kq.qlinear(torch.randn(16, K, dtype=dt), q, s, z, None, "int4_weight_only", 128, "silu", True, 1e-5, g,
               _config=kq._mma_configs(16, N // 2, K, "int4_weight_only", 128, True, 2, 132)[0])
    q, s, _ = quant.quantize_weight(torch.randn(N, K, dtype=torch.float16), "int4_weight_only", 128, symmetric=True)
    kq.qlinear(torch.randn(3, K, dtype=torch.float16), q, s, None, None, "int4_weight_only", 128, "identity", False,
               _config=gated)
    kq.qlinear(torch.randn(3, K, dtype=torch.float16), q, s, None, None, "int4_weight_only", 128, "identity", False,
               1e-5, g.half(), _config=gated)
    kq.MMA_GEMV_NORM = False
    # int8: every tile at M = 2, 8 and 16, both UNROLLs, unsplit; split with the residual reduced in the last
    # program; gated at M = 2 and 16; fp16 x
    q, s, _ = quant.quantize_weight(torch.randn(N, K, dtype=dt), "int8_weight_only", 128)
    every_tile("int8_weight_only", q, s, None)
    for M in (2, 16):
        kq.qlinear(torch.randn(M, K, dtype=dt), q, s, None, None, "int8_weight_only", 128, "silu", True,
                   _config=kq._mma_configs(M, N // 2, K, "int8_weight_only", 128, True, 2, 132)[0])
    q, s, _ = quant.quantize_weight(torch.randn(N, K, dtype=torch.float16), "int8_weight_only", 128)
    kq.qlinear(torch.randn(3, K, dtype=torch.float16), q, s, None, None, "int8_weight_only", 128, "identity", False,
               _config=kq._mma_configs(3, N, K, "int8_weight_only", 128, False, 2, 132)[-1])


def _mma_lanes_ok(compiled, warps: int) -> bool:
    """Every tensor the tensor-core GEMV hands to inline PTX (the MMAs, the decoding, x's repacking) is 1-D over the
    program's threads with element t in thread t: the lane mapping the PTX fragments assume."""
    ttgir = compiled.asm["ttgir"]
    layouts = dict(re.findall(r"^(#\w+) = (#ttg\.blocked<.*>)$", ttgir, re.M))
    want = f"sizePerThread = [1], threadsPerWarp = [32], warpsPerCTA = [{warps}], order = [0]"
    used = set()
    for line in ttgir.splitlines():
        if "tt.elementwise_inline_asm" in line:
            used |= set(re.findall(rf"tensor<{32 * warps}x(?:i32|f32), (#\w+)>", line.split('"')[-1]))
            if re.search(r"tensor<(?!" + str(32 * warps) + r"x)", line.split('"')[-1]):
                return False
    return bool(used) and all(want in layouts.get(name, "") for name in used)


def main() -> int:
    from accel.runtime.kernels import attention as ka
    from accel.runtime.kernels import ffn as kf
    from accel.runtime.kernels import linear as kl

    ka.wrap_triton = record
    kl.wrap_triton = record
    from accel.runtime import quant
    from accel.runtime.kernels import qlinear as kq

    kq.wrap_triton = record
    dt = torch.bfloat16
    q, k, v = torch.randn(1, 8, 40, 64, dtype=dt), torch.randn(1, 2, 40, 64, dtype=dt), torch.randn(1, 2, 40, 64, dtype=dt)
    mask = torch.ones(1, 1, 40, 40, dtype=torch.bool)
    ka.attention(q, k, v, mask, 0.125, False)  # prefill, bool mask
    ka.attention(q[:, :, :1], k, v, None, 0.125, True)  # decode (+ reduce)
    split = {**ka._decode_configs(64, dt, 4)[0], "splits": 2}  # split-KV and the reduce kernel
    ka._decode(q[:, :, :1], k, v, torch.ones(40, dtype=torch.bool), 0.125, False, split)
    rot = torch.randn(1, 1, 1, 64, dtype=dt)  # rope_attention_append: RoPE and the cache append in the same launches
    ka._decode(q[:, :, :1], k, v, torch.ones(40, dtype=torch.bool), 0.125, False, split,
               append=(k[:, :, :1], v[:, :, :1], rot, rot, torch.tensor(3)))
    ka._decode(q[:, :, :1], k, v, torch.ones(40, dtype=torch.bool), 0.125, False, {**split, "splits": 1},
               append=(k[:, :, :1], v[:, :, :1], rot, rot, torch.tensor(3)))  # one split of one block (PRE)
    ka._decode(q[:, :, :1], k, v, torch.ones(40, dtype=torch.bool), 0.125, False, {**split, "splits": 1, "BLOCK_N": 16},
               append=(k[:, :, :1], v[:, :, :1], rot, rot, torch.tensor(3)))  # one split of 3 blocks: tickets after
    ka.attention(q, k, v, torch.zeros(40, 40, dtype=dt), 0.125, True)  # additive mask and causal
    x, w = torch.randn(1, 256, dtype=dt), torch.randn(512, 256, dtype=dt)
    for cfg in kl.candidate_configs(1, 512, 256, False, 2, 132, True)[:3]:
        kl.linear(x, w, None, _config=cfg)
    xs = torch.randn(48, 256, dtype=dt)
    for cfg in kl.candidate_configs(48, 512, 256, False, 2, 132, True)[:2]:
        kl.linear(xs, w, torch.randn(512, dtype=dt), _config=cfg)
    gemv = kl.candidate_configs(1, 512, 256, False, 2, 132, True)[0]
    kl.linear(x, w, None, _config={**gemv, "SPLIT_K": 2})  # split-K: partials + the epilogue (reduce) kernel
    res = torch.randn(1, 512, dtype=dt)
    kl.linear(x, w, None, 1e-6, res, _config={**gemv, "SPLIT_K": 1})  # RMSNorm prologue + residual epilogue
    kl.linear(x, w, None, None, res, _config={**gemv, "SPLIT_K": 2})  # residual added by the split-K epilogue
    kl.linear(xs, w, None, 1e-6, torch.randn(48, 512, dtype=dt),
              _config=kl.candidate_configs(48, 512, 256, False, 2, 132, True)[0])  # tl.dot + residual
    w1 = torch.randn(1024, 256, dtype=dt)
    kf.ffn_up(x, w1, None, "silu", True)
    kf.ffn_up(x, w1, None, "gelu_tanh", True, _config=kl.CUBLAS)  # cuBLAS + the act·mul epilogue kernel
    _quantized_linear_launches(kq, quant, dt)
    from accel.runtime.kernels import rope as kr

    kr.wrap_triton = record
    qkv = torch.randn(1, 1, (8 + 4) * 64, dtype=dt)
    cs = torch.randn(1, 1, 1, 64, dtype=dt)
    kr.rope_kv_update(qkv[..., :512].reshape(1, 1, 8, 64).transpose(1, 2),
                      qkv[..., 512:640].reshape(1, 1, 2, 64).transpose(1, 2),
                      qkv[..., 640:].reshape(1, 1, 2, 64).transpose(1, 2), cs, cs,
                      torch.zeros(1, 2, 16, 64, dtype=dt), torch.zeros(1, 2, 16, 64, dtype=dt), torch.tensor([3]))
    kr.rope_kv_append(qkv[..., :512].reshape(1, 1, 8, 64).transpose(1, 2),
                      qkv[..., 512:640].reshape(1, 1, 2, 64).transpose(1, 2),
                      qkv[..., 640:].reshape(1, 1, 2, 64).transpose(1, 2), cs, cs,
                      torch.zeros(1, 2, 16, 64, dtype=dt), torch.zeros(1, 2, 16, 64, dtype=dt), torch.tensor(3))
    # every kernel that can be compiled for programmatic dependent launch, also with its griddepcontrol instructions
    plain = [i for i, (_, _, kwargs) in enumerate(launches) if kwargs.get("PDL") is False]
    launches.extend([(launches[i][0], launches[i][1], {**launches[i][2], "PDL": True}) for i in plain])
    pdl_of = dict(zip(plain, range(len(launches) - len(plain), len(launches))))
    # and the GEMVs with the pdl_early_trigger experiment: launch_dependents on their first line
    early = [i for i in plain if "PDL_EARLY" in launches[i][0].arg_names]
    launches.extend([(launches[i][0], launches[i][1], {**launches[i][2], "PDL": True, "PDL_EARLY": True})
                     for i in early])
    early_of = dict(zip(early, range(len(launches) - len(early), len(launches))))
    failed, compiled = 0, {}
    for i, (kernel, args, kwargs) in enumerate(launches):
        try:
            compiled[i] = compile_launch(kernel, args, kwargs)
            pdl = " (PDL, early)" if kwargs.get("PDL_EARLY") else " (PDL)" if kwargs.get("PDL") else ""
            print(f"ok     {kernel.__name__}{pdl}")
        except Exception as e:  # report every failing launch, not just the first
            failed += 1
            print(f"FAILED {kernel.__name__}: {type(e).__name__}: {str(e).splitlines()[-1][:300]}")
    # A GEMV compiled for PDL does its first K step before the loop (one step's loads more): with whole steps
    # (EVEN_K) that step's weight loads must stay 16-byte vectors as the loop's are (linear._first_step_ok), so
    # the plain kernel's plus one step's: twice them, or 3/2 with PREFETCH (whose plain kernel loads a step before
    # its loop and one in it). A mask per element had split them into 4-byte loads. A TILES kernel loads its
    # first tile before the loop either way: PDL adds none, and it has twice its one-tile twin's (the launch
    # before it), the next tile's words loaded in the loop.
    for i, j in pdl_of.items():
        kernel, _, kwargs = launches[i]
        if kwargs.get("TILES", 1) > 1 and i - 1 in compiled and i in compiled:
            want, got = 2 * _vector_weight_loads(compiled[i - 1]), _vector_weight_loads(compiled[i])
            if got != want or not want:
                failed += 1
                print(f"FAILED {kernel.__name__} (TILES): {got} 16-byte weight loads, {want} expected")
        if kwargs.get("EVEN_K") and i in compiled and j in compiled and kernel.__name__ != "_qgemv_bytes_kernel":
            plain = _vector_weight_loads(compiled[i])
            more = 0 if kwargs.get("TILES", 1) > 1 else plain // (2 if kwargs.get("PREFETCH") else 1)
            want, got = plain + more, _vector_weight_loads(compiled[j])
            if got != want:
                failed += 1
                print(f"FAILED {kernel.__name__} (PDL): {got} 16-byte weight loads, {want} expected (one step more)")
        # the attention chain's kernels (launched with PDL, they trigger and wait first thing): both instructions
        # come before the first global load or store, so no program reads what the kernel before is still writing
        # PRE (one block of rope_attention_append): between them only the counter's atomics and the cache's loads
        if kernel.__name__.startswith(("_attn_decode", "_rope_kv")) and j in compiled:
            order = _pdl_order(compiled[j])
            if kwargs.get("PRE"):
                wait = order.index("griddepcontrol.wait") if "griddepcontrol.wait" in order else 0
                before = set(order[1:wait])
                if order[0] != "griddepcontrol.launch_dependents" or "atom.global" not in before or (
                        before - {"atom.global", "ld.global"}):
                    failed += 1
                    print(f"FAILED {kernel.__name__} (PDL, PRE): instructions in this order: {order[:wait + 1]}")
            elif order[:2] != ["griddepcontrol.launch_dependents", "griddepcontrol.wait"]:
                failed += 1
                print(f"FAILED {kernel.__name__} (PDL): instructions in this order: {order[:4]}")
    # a GEMV triggers once: after its first loads (the usual trigger, after the main loop), or before any access
    # with the early trigger
    for i, j in early_of.items():
        kernel = launches[i][0]
        if i not in pdl_of or pdl_of[i] not in compiled or j not in compiled:
            continue
        usual, first = _pdl_order(compiled[pdl_of[i]]), _pdl_order(compiled[j])
        trigger = "griddepcontrol.launch_dependents"
        if usual.count(trigger) != 1 or usual.index(trigger) == 0 or first.count(trigger) != 1 or first[0] != trigger:
            failed += 1
            print(f"FAILED {kernel.__name__} (PDL early): usual {usual[:3]}..., early {first[:3]}...")
    for name in ("_qgemv_mma_kernel", "_qgemv_mma_int8_kernel"):
        mma = [i for i, (kernel, _, _) in enumerate(launches) if kernel.__name__ == name and i in compiled]
        for i in mma:
            if not _mma_lanes_ok(compiled[i], launches[i][2]["num_warps"]):
                failed += 1
                print(f"FAILED {name}: inline PTX on tensors not laid out one element a thread")
            # each lane's 16 bytes of a weight row in one vector load (int4 once read them as two 8-byte halves)
            narrow, wide = _narrow_weight_loads(compiled[i]), _vector_weight_loads(compiled[i])
            if narrow or not wide:
                failed += 1
                print(f"FAILED {name}: {narrow} weight loads narrower than 16 bytes, {wide} of 16 bytes")
        if not mma:
            failed += 1
            print(f"FAILED {name}: no launch compiled")
    print(f"{len(launches)} launches, {failed} failed")
    return 1 if failed or not launches else 0


if __name__ == "__main__":
    sys.exit(main())
