"""accel in one page: build a small Llama from a config (random weights, no download), compile it with
``backend="accel"``, print what accel rewrote, the error against eager and the timings.

    python examples/quickstart.py            # CPU when there is no GPU, CUDA + bf16 when there is
    python examples/quickstart.py --device cpu --layers 2

On CPU accel's ops run their torch reference and Inductor emits C++; on a GPU the same graph carries accel's
Triton kernels inside Inductor's generated code (``report.graphs[0].kernels`` lists them).
"""
from __future__ import annotations

import argparse
import time

import torch

import accel


def build(device: str, dtype: torch.dtype, layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=layers, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=1024, max_position_embeddings=512)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(cfg).to(dtype).eval(), cfg


def timed(fn, device: str, iters: int) -> float:
    """Median milliseconds per call."""
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model, cfg = build(args.device, dtype, args.layers)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=args.device)
    print(f"model: Llama, {args.layers} layers, hidden {cfg.hidden_size}, GQA {cfg.num_attention_heads}/"
          f"{cfg.num_key_value_heads}; input {tuple(ids.shape)} on {args.device} ({dtype})")

    with torch.no_grad():
        ref = model(ids, use_cache=False).logits
        fp64 = model.double()(ids, use_cache=False).logits.float() if args.device == "cpu" else None
        model.to(dtype)

        backend = accel.AccelBackend()
        compiled = torch.compile(model, backend=backend)
        t0 = time.perf_counter()
        out = compiled(ids, use_cache=False).logits
        compile_s = time.perf_counter() - t0
        inductor = torch.compile(model)
        t0 = time.perf_counter()
        inductor(ids, use_cache=False)
        inductor_compile_s = time.perf_counter() - t0

        print("\n" + str(backend.report))
        kernels = sorted({k for g in backend.report.graphs for k in g.kernels})
        if kernels:
            print(f"  accel Triton kernels in Inductor's code: {', '.join(kernels)}")
        err = (out.float() - ref.float()).abs().max().item()
        rel = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
        print(f"\nmax |accel - eager| = {err:.3e}   relative L2 = {rel:.3e}")
        if fp64 is not None:
            print(f"relative L2 vs fp64: eager {((ref - fp64).norm() / fp64.norm()).item():.2e}, "
                  f"accel {((out - fp64).norm() / fp64.norm()).item():.2e}")

        iters = 20 if args.device == "cuda" else 5
        t_eager = timed(lambda: model(ids, use_cache=False), args.device, iters)
        t_ind = timed(lambda: inductor(ids, use_cache=False), args.device, iters)
        t_acc = timed(lambda: compiled(ids, use_cache=False), args.device, iters)
    print(f"\n{'':10s}{'ms/forward':>12s}{'compile s':>12s}")
    print(f"{'eager':10s}{t_eager:12.2f}{'':>12s}")
    print(f"{'inductor':10s}{t_ind:12.2f}{inductor_compile_s:12.1f}")
    print(f"{'accel':10s}{t_acc:12.2f}{compile_s:12.1f}")


if __name__ == "__main__":
    main()
