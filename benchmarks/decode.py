"""Batch-1 decode: eager, Inductor (mode="reduce-overhead") and accel (CUDA graphs) on a Llama-shaped model
built from a config (random weights), bf16 on the GPU, fp32 on CPU.

    python benchmarks/decode.py --config 1b            # tiny | 1b | 8b
    python benchmarks/decode.py --config tiny --new 16  # seconds on CPU

For each variant: tokens/s and ms/token over NEW greedy tokens after a PROMPT-token prefill (median of 3 runs),
achieved weight bandwidth (bytes of every weight read once per token, over ms/token) against a copy bandwidth
measured in the same run, compile + warm-up seconds, greedy-token agreement with eager, the logits' error
against an fp32 reference on the same prompt, and 2,048-token prefill latency. Correctness comes first: a
variant whose first tokens disagree with eager everywhere is reported, not timed silently.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import copy_bandwidth_gbs, cuda_time_ms, environment, print_table, write_result  # noqa: E402
from decode_model import CONFIGS, build_model, make_step  # noqa: E402

VARIANTS = ("eager", "inductor", "accel")


def weight_bytes(model) -> int:
    """Bytes read per decoded token: every parameter once, except the embedding table (one row is gathered),
    unless it is tied to the LM head, which streams it whole."""
    emb = model.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    tied = model.get_output_embeddings().weight is emb
    return total if tied else total - emb.numel() * emb.element_size()


def run_decode(model, cfg, step, prompt, new: int, device: str, cache_len: int):
    """(seconds for ``new`` tokens, generated token ids) with transformers' StaticCache of ``cache_len``
    (one length for every run: a new length is a new static shape, and would recompile)."""
    from transformers import StaticCache

    cache = StaticCache(config=cfg, max_cache_len=cache_len)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        out = model(input_ids=prompt, past_key_values=cache, cache_position=torch.arange(prompt.shape[1], device=device),
                    use_cache=True)
        tok = out.logits[:, -1:].argmax(-1)
        toks = [tok]
        sync()
        t0 = time.perf_counter()
        for i in range(new):
            pos = torch.tensor([prompt.shape[1] + i], device=device)
            if device == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            tok = step(model, cache, tok, pos).clone()
            toks.append(tok)
        sync()
        return time.perf_counter() - t0, torch.cat(toks, 1)


def teacher_forced_agreement(model, cfg, step, prompt, ref_toks, device: str, cache_len: int) -> float:
    """Fraction of steps whose greedy token equals ``ref_toks`` when every step is fed the reference prefix
    (one early flip does not derail the rest, unlike free-running agreement)."""
    from transformers import StaticCache

    cache = StaticCache(config=cfg, max_cache_len=cache_len)
    ref_toks = ref_toks.contiguous()
    same = 0
    with torch.no_grad():
        model(input_ids=prompt, past_key_values=cache, cache_position=torch.arange(prompt.shape[1], device=device),
              use_cache=True)
        for i in range(ref_toks.shape[1] - 1):
            if device == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            tok = step(model, cache, ref_toks[:, i:i + 1].clone(), torch.tensor([prompt.shape[1] + i], device=device))
            same += int(tok.item() == ref_toks[0, i + 1].item())
    return same / (ref_toks.shape[1] - 1)


def generate_matches(model, prompt, new: int, backend: str) -> float:
    """``model.generate(..., cache_implementation="static")`` with the forward compiled by ``backend``: the
    fraction of new tokens equal to eager generate's."""
    with torch.no_grad():
        ref = model.generate(prompt, max_new_tokens=new, do_sample=False, cache_implementation="static")
        compiled = copy.copy(model)
        compiled.forward = torch.compile(model.forward, backend=backend, fullgraph=False)
        out = compiled.generate(prompt, max_new_tokens=new, do_sample=False, cache_implementation="static")
    return float((out[:, prompt.shape[1]:] == ref[:, prompt.shape[1]:]).float().mean())


def logits_error(model, prompt, ref_logits, compiled_forward) -> float:
    with torch.no_grad():
        out = compiled_forward(input_ids=prompt, use_cache=False).logits.float()
    return ((out - ref_logits).norm() / ref_logits.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="1b", choices=sorted(CONFIGS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--prefill", type=int, default=2048)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per compiled variant (median reported)")
    ap.add_argument("--generate", type=int, default=0, help="also check HF generate() for this many new tokens")
    args = ap.parse_args()
    device = args.device
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    base, cfg = build_model(args.config, dtype, device)
    nbytes = weight_bytes(base)
    env = environment()
    print(f"{env['device']}  torch {env['torch']}  triton {env['triton']}  transformers {env['transformers']}")
    bw = copy_bandwidth_gbs() if device == "cuda" else None
    print(f"config {args.config}: {sum(p.numel() for p in base.parameters()) / 1e9:.3f} B params, "
          f"{nbytes / 1e9:.2f} GB read per token" + (f"; copy bandwidth {bw:.0f} GB/s" if bw else ""))
    torch.manual_seed(1)
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt), device=device)
    long_prompt = torch.randint(0, cfg.vocab_size, (1, args.prefill), device=device)
    with torch.no_grad():
        ref_logits = copy.deepcopy(base).float()(input_ids=prompt, use_cache=False).logits.float()

    rows = []
    # the reference tokens: one eager greedy decode (its own rerun below shows eager's run-to-run agreement)
    cache_len = args.prompt + args.new + 8
    _, eager_toks = run_decode(base, cfg, make_step("eager"), prompt, args.new, device, cache_len)
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        model = base
        row = {"variant": variant}
        try:
            step = make_step(variant, cudagraphs=device == "cuda")
            t0 = time.perf_counter()
            run_decode(model, cfg, step, prompt, 4, device, cache_len)
            run_decode(model, cfg, step, prompt, 4, device, cache_len)
            row["compile_s"] = round(time.perf_counter() - t0, 1)
            runs = 1 if variant == "eager" else args.runs  # eager is slow and only the reference
            times = sorted(run_decode(model, cfg, step, prompt, args.new, device, cache_len)[0] for _ in range(runs))
            _, toks = run_decode(model, cfg, step, prompt, args.new, device, cache_len)
            sec = times[len(times) // 2]
            row.update(tok_s=round(args.new / sec, 1), ms_per_tok=round(sec / args.new * 1e3, 3),
                       weight_gbs=round(nbytes * args.new / sec / 1e9, 1))
            if bw:
                row["pct_of_copy_bw"] = round(100 * row["weight_gbs"] / bw, 1)
            row["token_match"] = round(float((toks == eager_toks).float().mean()), 4)
            row["teacher_forced_match"] = round(
                teacher_forced_agreement(model, cfg, step, prompt, eager_toks, device, cache_len), 4)
            forward = model if variant == "eager" else torch.compile(
                model, backend="accel" if variant == "accel" else "inductor")
            row["logits_rel_err_vs_fp32"] = round(logits_error(model, prompt, ref_logits, forward), 5)
            if args.generate and variant != "eager":
                row["generate_match"] = round(generate_matches(model, prompt[:, :16], args.generate, variant), 4)
            if device == "cuda" and args.prefill:
                with torch.no_grad():
                    row["prefill_ms"] = round(cuda_time_ms(lambda: forward(input_ids=long_prompt, use_cache=False),
                                                           warmup=2, iters=5), 2)
        except Exception as e:  # report and keep going: the other variants are still worth measuring
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        print(row, flush=True)
        rows.append(row)

    by = {r["variant"]: r for r in rows}
    if "accel" in by and "inductor" in by and "tok_s" in by["accel"] and "tok_s" in by["inductor"]:
        by["accel"]["speedup_vs_inductor"] = round(by["accel"]["tok_s"] / by["inductor"]["tok_s"], 3)
    print()
    print_table(rows, ["variant", "tok_s", "ms_per_tok", "weight_gbs", "pct_of_copy_bw", "compile_s", "token_match",
                       "teacher_forced_match", "generate_match", "logits_rel_err_vs_fp32", "prefill_ms",
                       "speedup_vs_inductor", "error"])
    path = write_result(f"decode_{args.config}", {"args": vars(args), "copy_bw_gbs": bw, "weight_bytes": nbytes,
                                                 "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
