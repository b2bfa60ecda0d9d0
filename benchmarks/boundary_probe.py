"""What a kernel boundary costs in a chain of dependent GEMVs, and whether a flag wait beats PDL's grid wait (GPU).

A probe, not a feature: a chain of ``--length`` dependent bf16 GEMVs (each reads the vector the one before wrote and
its own weight of ``--n`` × ``--n``) is captured in one CUDA graph and replayed; the time a kernel is printed for
each way of chaining them:

- ``plain``: no PDL; a kernel starts when the one before has ended.
- ``pdl``: launched with PDL, the weights loaded before ``griddepcontrol.wait`` and ``launch_dependents`` first
  (accel's early-triggered GEMVs).
- ``flag``: launched with PDL and triggered first as ``pdl``, but each program waits on the kernel before's
  arrival counter (every program of a kernel adds 1 after its stores, release; a waiter polls it, acquire) instead
  of ``griddepcontrol.wait``: the wait ends when the last producer program has stored, not when the grid has
  retired. Program 0 of kernel k resets kernel k-2's counter (every program of k-1, which waited on it, has
  arrived by then); kernel 0 resets the chain's last two.
- ``none``: as ``pdl`` without any wait (wrong results by design: the floor that chaining cannot beat).

Every mode but ``none`` is checked against a torch chain. Prints a table, writes JSON (``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cuda_time_ms  # noqa: E402

MODES = {"plain": 0, "pdl": 1, "flag": 2, "none": 3}


@triton.jit
def _chain_gemv(x_ptr, w_ptr, y_ptr, cnt_ptr, k, L, N: tl.constexpr, BLOCK_N: tl.constexpr, MODE: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, N)
    w = tl.load(w_ptr + rows[:, None] * N + cols[None, :])
    if MODE != 0:
        tl.extra.cuda.gdc_launch_dependents()
    if MODE == 1:
        tl.extra.cuda.gdc_wait()
    if MODE == 2:
        if k > 0:
            target = tl.num_programs(0)
            seen = tl.atomic_add(cnt_ptr + k - 1, 0, sem="acquire")
            while seen < target:
                seen = tl.atomic_add(cnt_ptr + k - 1, 0, sem="acquire")
            if pid == 0:
                if k > 1:
                    tl.atomic_xchg(cnt_ptr + k - 2, 0, sem="relaxed")
        else:
            if pid == 0:
                tl.atomic_xchg(cnt_ptr + L - 1, 0, sem="relaxed")
                tl.atomic_xchg(cnt_ptr + L - 2, 0, sem="relaxed")
    x = tl.load(x_ptr + cols).to(tl.float32)
    y = tl.sum(w.to(tl.float32) * x[None, :], 1)
    # keep the vector's scale: a chain of random GEMVs grows or shrinks it by sqrt(N) a step
    tl.store(y_ptr + rows, (y * (1.0 / N ** 0.5)).to(y_ptr.dtype.element_ty))
    if MODE == 2:
        tl.debug_barrier()
        tl.atomic_add(cnt_ptr + k, 1, sem="release")


def build(mode: str, n: int, length: int, block_n: int, warps: int):
    dev = "cuda"
    ws = [torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(length)]
    xs = [torch.randn(n, device=dev, dtype=torch.bfloat16) for _ in range(length + 1)]
    cnt = torch.zeros(length, device=dev, dtype=torch.int32)
    m = MODES[mode]
    grid = (n // block_n,)

    def run():
        for k in range(length):
            _chain_gemv[grid](xs[k], ws[k], xs[k + 1], cnt, k, length, N=n, BLOCK_N=block_n, MODE=m,
                              num_warps=warps, launch_pdl=m != 0)

    def reference():
        x = xs[0].float()
        for k in range(length):
            x = (ws[k].float() @ x / n ** 0.5).bfloat16().float()
        return x

    return run, reference, xs, cnt


def time_mode(mode: str, n: int, length: int, block_n: int, warps: int, replays: int) -> dict:
    run, reference, xs, cnt = build(mode, n, length, block_n, warps)
    run()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        run()
        torch.cuda.synchronize()
        with torch.cuda.graph(g, stream=s):
            run()
    torch.cuda.synchronize()
    for _ in range(20):
        g.replay()
    torch.cuda.synchronize()
    err = None
    if mode != "none":
        ref = reference()
        err = ((xs[-1].float() - ref).norm() / ref.norm()).item()
    # the median of 5 timings of `replays` replays (the warm-up above: 20 replays)
    us = cuda_time_ms(lambda: [g.replay() for _ in range(replays)], warmup=0, iters=5) * 1e3 / replays / length
    return {"mode": mode, "n": n, "length": length, "block_n": block_n, "warps": warps,
            "us_per_kernel": round(us, 3),
            "weight_mb": round(n * n * 2 / 1e6, 2), "rel_err": err, "counters_after": int(cnt.sum().item())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--block-n", type=int, default=8)
    p.add_argument("--warps", type=int, default=4)
    p.add_argument("--replays", type=int, default=100)
    p.add_argument("--modes", default="plain,pdl,flag,none")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    rows = []
    print(f"{'n':>6} {'MB':>6} {'mode':>6} {'us/kernel':>10} {'rel err':>9}")
    for n in a.n:
        for mode in a.modes.split(","):
            r = time_mode(mode, n, a.length, a.block_n, a.warps, a.replays)
            rows.append(r)
            err = "-" if r["rel_err"] is None else f"{r['rel_err']:.1e}"
            print(f"{n:>6} {r['weight_mb']:>6} {mode:>6} {r['us_per_kernel']:>10} {err:>9}", flush=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "date": time.strftime("%Y-%m-%d")}
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
