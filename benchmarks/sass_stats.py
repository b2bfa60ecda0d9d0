"""What a quantized GEMV's K loop costs in instructions, without a GPU: compiles qlinear launches for sm_90 on the
CPU (as ``tests/runtime/sm90_compile.py`` does, with Inductor's divisibility hints), disassembles the cubin with
the ``nvdisasm`` Triton ships and counts the SASS of the kernel's main loop by the pipe that issues it.

    python benchmarks/sass_stats.py                                    # the 8B MLP shapes' heuristic GEMVs, M = 1
    python benchmarks/sass_stats.py --scheme int8_weight_only --shape 2048x8192 \\
        --config '{"BLOCK_N": 4, "BLOCK_K": 2048, "SUB": 2, "num_warps": 8}'

Why: session 18 (``notes/perf.md``) found the word GEMVs bound by the integer pipe, not by the bytes they stream:
summing the products in FMA chains took 9% of the int4 loop's instructions off the FMA pipe and changed nothing
(H200), while decoding int8 codes by byte permutes (one PRMT a code instead of a shift, an AND and an OR) took a
fifth to a third off the integer pipe and made the 1B GEMVs 1-11% faster (H100). On sm_90 the integer pipe (LOP3, PRMT,
SHF, IADD3, ...) issues a warp instruction every other cycle, the FMA pipe (FFMA, FADD, FMUL, IMAD, HFMA2) every
cycle, so the column to watch is ``int/code``. The pipe of each opcode is an approximation from NVIDIA's
throughput tables; the counts themselves are exact for the compiled kernel (this Triton, this ptxas).

Columns: registers and stack (spills) a thread, the loop's instructions, and per weight code a thread decodes in
one pass of it: integer-pipe, FMA-pipe, load and all instructions. A kernel without a loop (TILES, or all of K in
one step) is counted whole, per code of the whole program.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tests", "runtime"))

# sm_90 issue pipes (approximate): the integer ALU pipe at half the FMA pipe's rate
INT_PIPE = {"LOP3", "PRMT", "SHF", "IADD3", "VIADD", "ISETP", "SEL", "LEA", "IABS", "IMNMX", "FLO", "POPC", "BMSK",
            "FSEL", "FSETP", "FMNMX", "P2R", "R2P", "PLOP3"}
FMA_PIPE = {"FFMA", "FADD", "FMUL", "IMAD", "HFMA2", "HADD2", "HMUL2", "FMNMX2"}
LOADS = {"LDG", "LDS", "LDSM", "LDGSTS", "LD"}  # global and shared memory (not the constant bank's LDC)
_INSTR = re.compile(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_BRANCH = re.compile(r"BRA\s+`?\(?(\.L_x_\d+)\)?")


def loop_opcodes(sass: str) -> tuple[collections.Counter, bool]:
    """(opcode counts, whether they are a loop's) of the longest backward branch's body in ``sass`` (nvdisasm
    text), or of the whole kernel when it has no loop."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := _LABEL.match(line))}
    best = None
    for i, line in enumerate(lines):
        m = _BRANCH.search(line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            start = labels[m.group(1)]
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
    body = lines[best[0]:best[1] + 1] if best else lines
    ops = collections.Counter(m.group(1) for line in body if (m := _INSTR.search(line)))
    return ops, best is not None


def pipes(ops: collections.Counter) -> dict:
    return {"int": sum(v for k, v in ops.items() if k in INT_PIPE),
            "fma": sum(v for k, v in ops.items() if k in FMA_PIPE),
            "loads": sum(v for k, v in ops.items() if k in LOADS),
            "all": sum(ops.values())}


def _cubin_stats(cubin: bytes) -> tuple[int, int, str]:
    bin_dir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([os.path.join(bin_dir, "cuobjdump"), "-res-usage", f.name], capture_output=True,
                               text=True, check=True).stdout
        sass = subprocess.run([os.path.join(bin_dir, "nvdisasm"), "-c", f.name], capture_output=True, text=True,
                              check=True).stdout
    regs = int(re.search(r"REG:(\d+)", usage).group(1))
    stack = int(m.group(1)) if (m := re.search(r"STACK:(\d+)", usage)) else 0
    return regs, stack, sass


def codes_per_pass(cfg: dict, K: int, gated: bool, in_loop: bool) -> float:
    """Weight codes one thread decodes in one pass of the loop (one K step, or one tile of TILES, of BLOCK_N
    rows), or in the whole program when the kernel has no loop."""
    threads = 32 * cfg["num_warps"]
    rows = cfg["BLOCK_N"] * (2 if gated else 1)
    if in_loop:
        return rows * min(cfg["BLOCK_K"], K) / threads
    return rows * max(cfg.get("TILES", 0), 1) * K / cfg["SPLIT_K"] / threads


def stats(scheme: str, N: int, K: int, cfg: dict, gated: bool = False, group_size: int = 128) -> dict:
    import sm90_compile as sc

    from accel.runtime import quant
    from accel.runtime.kernels import linear as kl
    from accel.runtime.kernels import qlinear as kq

    kq.wrap_triton = kl.wrap_triton = sc.record
    sc.launches.clear()
    q, s, z = quant.quantize_weight(torch.randn((2 if gated else 1) * N, K, dtype=torch.bfloat16), scheme,
                                    group_size, symmetric=scheme != "int4_weight_only")
    x = torch.randn(1, K, dtype=torch.bfloat16)
    kq.qlinear(x, q, s, z, None, scheme, group_size, "silu" if gated else "identity", gated, _config=cfg)
    kernel, args, kwargs = next(launch for launch in sc.launches if "epilogue" not in launch[0].__name__)
    regs, stack, sass = _cubin_stats(sc.compile_launch(kernel, args, kwargs).asm["cubin"])
    ops, in_loop = loop_opcodes(sass)
    p = pipes(ops)
    codes = codes_per_pass(cfg, K, gated, in_loop)
    return {"scheme": scheme, "shape": f"{N}x{K}", "kernel": kernel.__name__, "regs": regs, "stack": stack,
            "loop": "yes" if in_loop else "none", "instr": p["all"], "codes": round(codes, 1),
            "int/code": round(p["int"] / codes, 2), "fma/code": round(p["fma"] / codes, 2),
            "loads/code": round(p["loads"] / codes, 3), "all/code": round(p["all"] / codes, 2),
            "top": ", ".join(f"{k}:{v}" for k, v in ops.most_common(8))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scheme", default="int8_weight_only,int4_weight_only")
    ap.add_argument("--shape", default="14336x4096,4096x14336", help="NxK, comma-separated")
    ap.add_argument("--config", default=None,
                    help="JSON config keys over the heuristic GEMV candidate's (e.g. BLOCK_N, BLOCK_K, SUB, num_warps)")
    ap.add_argument("--gated", action="store_true", help="a gated weight (2N rows), as the gate/up GEMV")
    args = ap.parse_args()
    from common import print_table

    from accel.runtime.kernels import qlinear as kq

    rows = []
    for scheme in args.scheme.split(","):
        for shape in args.shape.split(","):
            N, K = (int(v) for v in shape.split("x"))
            cfg = next(c for c in kq.candidate_configs(1, N, K, scheme, 128, args.gated, 2, 132)
                       if c["kernel"] == "gemv")
            cfg = {**cfg, **json.loads(args.config or "{}")}
            rows.append(stats(scheme, N, K, cfg, args.gated))
            print(rows[-1], flush=True)
    print_table(rows, ["scheme", "shape", "kernel", "regs", "stack", "loop", "instr", "codes", "int/code",
                       "fma/code", "loads/code", "all/code"])


if __name__ == "__main__":
    main()
