"""Greedy decode (batch 1 by default): eager, Inductor (mode="reduce-overhead") and accel (CUDA graphs) on a
Llama-shaped model built from a config (random weights), bf16 on the GPU, fp32 on CPU.

    python benchmarks/decode.py --config 1b            # tiny | 1b | 8b
    python benchmarks/decode.py --config tiny --new 16  # seconds on CPU
    python benchmarks/decode.py --config 1b --batch 8 --variants inductor,accel-int4-head  # 8 sequences a step

With ``--batch B`` the B sequences share one prompt length and decode together: every projection multiplies B rows
of x (int4's tensor-core GEMV serves 2-16). ``tok_s`` then counts the tokens of all B sequences; ``ms_per_tok``,
``host_ms_per_tok`` and ``weight_gbs`` stay per step (one token of each sequence), and ``ms_per_step`` says so.

For each variant: tokens/s and ms/token over NEW greedy tokens after a PROMPT-token prefill (median of 3 runs),
achieved weight bandwidth (bytes of every weight read once per token, over ms/token) against a copy bandwidth
measured in the same run, compile + warm-up seconds, greedy-token agreement with eager, the logits' error
against an fp32 reference on the same prompt, and 2,048-token prefill latency. Correctness comes first: a
variant whose first tokens disagree with eager everywhere is reported, not timed silently.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (GcPauses, GraphTreeCalls, HostUsage, add_accel_from, copy_bandwidth_gbs, cuda_time_ms,  # noqa: E402
                    environment, pin_to_cpu, print_table, use_accel_from, write_result)
from decode_model import (ACCEL_VARIANTS, CONFIGS, TORCHAO_VARIANTS, build_model, make_step,  # noqa: E402
                          torchao_quantize)

VARIANTS = ("eager", "inductor", "accel")
ALL_VARIANTS = ("eager", "inductor", *ACCEL_VARIANTS, *TORCHAO_VARIANTS)


def weight_bytes(model) -> int:
    """Bytes read per decoded token: every parameter once, except the embedding table (one row is gathered),
    unless it is tied to the LM head, which streams it whole."""
    emb = model.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    tied = model.get_output_embeddings().weight is emb
    return total if tied else total - emb.numel() * emb.element_size()


def run_decode(model, cfg, step, prompt, new: int, device: str, cache_len: int, device_pos: bool = False,
               step_marks: list | None = None, cache=None):
    """(seconds for ``new`` tokens, generated token ids) with transformers' StaticCache of ``cache_len``
    (one length for every run: a new length is a new static shape, and would recompile).

    The position is made on the host each step (``torch.tensor(..., device=)``, as the anchors do: the copy
    waits for the GPU, so host work and GPU work add up) or, with ``device_pos``, advanced on the device as
    gpt-fast does (the host can run ahead; the step costs the larger of the two). ``step_marks`` receives a list
    of the seconds at which each step was issued (its last: the host's time for the run). ``cache``, when given,
    is reset (zeroed in place) and reused, so its tensors keep their addresses: the CUDA-graph tree, which takes
    the cache's tensors as static inputs, then records once per variant instead of again whenever a new cache
    lands elsewhere in memory (run 8 of session 17: Inductor recorded 3 times in 3 timed runs, each with a new
    cache); else a new one."""
    from transformers import StaticCache

    if cache is None:
        cache = StaticCache(config=cfg, max_cache_len=cache_len)
    else:
        cache.reset()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        out = model(input_ids=prompt, past_key_values=cache, cache_position=torch.arange(prompt.shape[1], device=device),
                    use_cache=True)
        tok = out.logits[:, -1:].argmax(-1)
        toks = [tok]
        pos = torch.tensor([prompt.shape[1]], device=device)
        sync()
        marks: list[float] = []
        t0 = time.perf_counter()
        for i in range(new):
            if device_pos:
                pos = pos + 1 if i else pos
            else:
                pos = torch.tensor([prompt.shape[1] + i], device=device)
            if device == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            tok = step(model, cache, tok, pos).clone()
            toks.append(tok)
            if step_marks is not None:
                marks.append(time.perf_counter() - t0)
        if step_marks is not None:
            step_marks.append(marks)
        sync()
        return time.perf_counter() - t0, torch.cat(toks, 1)


def host_ms_per_tok(marks: list[list[float]], new: int) -> float:
    """The host's milliseconds a token over timed runs (median), from ``run_decode``'s ``step_marks``: each run's
    last mark is when its last step was issued."""
    return round(median([m[-1] for m in marks]) / new * 1e3, 3)


def issue_pace(marks: list[list[float]], n: int = 32) -> dict:
    """The host's time a step over the first and the last ``n`` steps of the timed runs (median over runs), from
    the times each step was issued. A host that is slow by itself issues every step slowly; a host held back by
    the GPU (its launch queue full) issues the first steps at its own pace and the last at the GPU's."""
    def pace(times: list[float], first: bool) -> float:
        span = times[:n + 1] if first else times[-n - 1:]
        return (span[-1] - span[0]) / (len(span) - 1) if len(span) > 1 else float("nan")

    return {f"host_ms_first{n}": round(median([pace(t, True) for t in marks]) * 1e3, 3),
            f"host_ms_last{n}": round(median([pace(t, False) for t in marks]) * 1e3, 3)}


def median(values: list[float]) -> float:
    """The middle of ``values`` (the upper middle for an even count)."""
    return sorted(values)[len(values) // 2]


def teacher_forced_agreement(model, cfg, step, prompt, ref_toks, device: str, cache_len: int) -> float:
    """Fraction of steps (of every sequence) whose greedy token equals ``ref_toks`` when every step is fed the
    reference prefix (one early flip does not derail the rest, unlike free-running agreement)."""
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
            same += int((tok[:, 0] == ref_toks[:, i + 1]).sum())  # every sequence of the batch
    return same / ((ref_toks.shape[1] - 1) * ref_toks.shape[0])


def generate_matches(model, prompt, new: int, backend: str) -> float:
    """``model.generate(..., cache_implementation="static")`` with the forward compiled by ``backend``: the
    fraction of new tokens equal to eager generate's."""
    with torch.no_grad():
        ref = model.generate(prompt, max_new_tokens=new, do_sample=False, cache_implementation="static")
        compiled = copy.copy(model)
        compiled.forward = torch.compile(model.forward, backend=backend, fullgraph=False)
        out = compiled.generate(prompt, max_new_tokens=new, do_sample=False, cache_implementation="static")
    # generate() stops at EOS: a run that stops earlier or later than eager's disagrees on the extra tokens
    out, ref = out[:, prompt.shape[1]:], ref[:, prompt.shape[1]:]
    n = min(out.shape[1], ref.shape[1])
    return float((out[:, :n] == ref[:, :n]).float().sum()) / max(out.shape[1], ref.shape[1], 1)


def whole_model_forward(model, variant: str):
    """The model's forward for the logits check and the prefill timing: eager, or compiled by the variant's
    backend with static shapes (the 2,048-token prefill gets its own graph with that length, tuned, instead of a
    dynamic-length recompile after the 128-token logits check, where accel cannot tune)."""
    if variant == "eager":
        return model
    if variant in ACCEL_VARIANTS:
        return torch.compile(model, backend="accel", options=ACCEL_VARIANTS[variant], dynamic=False)
    return torch.compile(model, backend="inductor", dynamic=False)


def logits_error(model, prompt, ref_logits, compiled_forward) -> float:
    with torch.no_grad():
        out = compiled_forward(input_ids=prompt, use_cache=False).logits.float()
    return ((out - ref_logits).norm() / ref_logits.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="1b", choices=sorted(CONFIGS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(ALL_VARIANTS)}")
    ap.add_argument("--pos", default="host", choices=("host", "device", "both"),
                    help="position tensor per step made on the host (as the anchors) or advanced on the device "
                         "(as gpt-fast); both: time compiled variants each way")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1, help="sequences decoded together (rows of x in every projection)")
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--prefill", type=int, default=2048)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per compiled variant (median reported)")
    ap.add_argument("--generate", type=int, default=0, help="also check HF generate() for this many new tokens")
    ap.add_argument("--name", default=None, help="result file stem (default decode_CONFIG)")
    ap.add_argument("--checks", default="all", choices=("all", "speed"),
                    help="speed: skip the second compile (whole-model forward) that the logits error and the prefill "
                         "latency need, so that one call on the lent GPU fits more variants")
    add_accel_from(ap)
    ap.add_argument("--fresh-cache", action="store_true",
                    help="a new StaticCache for every run, as before session 17 (each can land at other addresses "
                         "and make the CUDA-graph tree record again inside a timed run); by default each variant "
                         "resets and reuses one")
    ap.add_argument("--pin", type=int, default=None, metavar="CPU",
                    help="run on this CPU only (common.pin_to_cpu): unpinned, the lent machines' hosts had slow phases "
                         "that made batch-1 decode host-bound")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="collect and freeze Python's heap (gc.freeze) for each variant's timed runs, so that garbage "
                         "collections during them walk only what the steps allocate (see common.GcPauses)")
    args = ap.parse_args()
    pin_to_cpu(args.pin)
    use_accel_from(args.accel_from)
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
    if args.batch < 1:
        raise SystemExit(f"--batch must be at least 1, got {args.batch}")
    prompt = torch.randint(0, cfg.vocab_size, (args.batch, args.prompt), device=device)
    long_prompt = torch.randint(0, cfg.vocab_size, (1, args.prefill), device=device)
    with torch.no_grad():
        ref_logits = copy.deepcopy(base).float()(input_ids=prompt, use_cache=False).logits.float()

    from transformers import StaticCache

    rows: list[dict] = []
    payload = {"args": vars(args), "copy_bw_gbs": bw, "weight_bytes": nbytes, "rows": rows}
    # the reference tokens: one eager greedy decode (its own rerun below shows eager's run-to-run agreement)
    cache_len = args.prompt + args.new + 8
    _, eager_toks = run_decode(base, cfg, make_step("eager"), prompt, args.new, device, cache_len)
    for variant in args.variants.split(","):
        if variant not in ALL_VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(ALL_VARIANTS)}")
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        model = base
        row = {"variant": variant, "batch": args.batch}
        try:
            if variant in TORCHAO_VARIANTS:
                model = copy.deepcopy(base)
                torchao_quantize(model, variant)
            step = make_step(variant, cudagraphs=device == "cuda")
            device_pos = args.pos == "device"
            # one cache for all of the variant's runs (reset by each), unless --fresh-cache
            cache = None if args.fresh_cache else StaticCache(config=cfg, max_cache_len=cache_len)
            t0 = time.perf_counter()
            run_decode(model, cfg, step, prompt, 4, device, cache_len, device_pos, cache=cache)
            run_decode(model, cfg, step, prompt, 4, device, cache_len, device_pos, cache=cache)
            row["compile_s"] = round(time.perf_counter() - t0, 1)
            print(f"{variant}: compiled and warm in {row['compile_s']} s", flush=True)
            runs = 1 if variant == "eager" else args.runs  # eager is slow and only the reference
            marks: list = []
            tree = GraphTreeCalls() if device == "cuda" else contextlib.nullcontext()
            with GcPauses(freeze=args.gc_freeze) as pauses, HostUsage() as usage, tree:
                sec = median([run_decode(model, cfg, step, prompt, args.new, device, cache_len, device_pos, marks,
                                         cache=cache)[0] for _ in range(runs)])
            row.update(pauses.record())  # the garbage collections during the timed runs (all of them)
            row.update(usage.record())  # where the host's time went during them
            if device == "cuda":  # what the CUDA-graph tree did with those steps
                row.update(tree.record(runs * args.new))
            _, toks = run_decode(model, cfg, step, prompt, args.new, device, cache_len, device_pos, cache=cache)
            row.update(tok_s=round(args.batch * args.new / sec, 1), ms_per_tok=round(sec / args.new * 1e3, 3),
                       weight_gbs=round(nbytes * args.new / sec / 1e9, 1))
            if args.batch > 1:
                row["ms_per_step"] = row["ms_per_tok"]
            if device_pos and variant != "eager":
                # with the position on the device the host may run ahead; when issuing the steps took about as long
                # as running them, the host set the rate and the row says nothing about the GPU's step (session 12
                # saw one variant's rate 25-35% under its profile that way)
                row["host_ms_per_tok"] = host_ms_per_tok(marks, args.new)
                row.update(issue_pace(marks))
                row["host_bound"] = row["host_ms_per_tok"] >= 0.9 * row["ms_per_tok"]
                if row["host_bound"]:
                    print(f"{variant}: host-bound (issuing took {row['host_ms_per_tok']} of {row['ms_per_tok']} "
                          f"ms a token): this rate is the host's, not the GPU's", flush=True)
            if args.pos == "both" and variant != "eager":
                # warm the device-position loop too: its first run can pay a one-off cost (Inductor's 1B rate fell
                # to half when an untimed run was missing and the upper median of 2 runs took it; notes/perf.md)
                run_decode(model, cfg, step, prompt, 4, device, cache_len, True, cache=cache)
                host: list = []
                dev_sec = median([run_decode(model, cfg, step, prompt, args.new, device, cache_len, True, host,
                                             cache=cache)[0] for _ in range(runs)])
                row.update(tok_s_device_pos=round(args.batch * args.new / dev_sec, 1),
                           host_ms_per_tok=host_ms_per_tok(host, args.new))
            if bw:
                row["pct_of_copy_bw"] = round(100 * row["weight_gbs"] / bw, 1)
            row["token_match"] = round(float((toks == eager_toks).float().mean()), 4)
            row["teacher_forced_match"] = round(
                teacher_forced_agreement(model, cfg, step, prompt, eager_toks, device, cache_len), 4)
            if args.checks == "all":
                forward = whole_model_forward(model, variant)
                row["logits_rel_err_vs_fp32"] = round(logits_error(model, prompt, ref_logits, forward), 5)
                if device == "cuda" and args.prefill:
                    with torch.no_grad():
                        row["prefill_ms"] = round(cuda_time_ms(
                            lambda: forward(input_ids=long_prompt, use_cache=False), warmup=2, iters=5), 2)
            if args.generate and variant in ("inductor", "accel"):
                row["generate_match"] = round(generate_matches(model, prompt[:, :16], args.generate, variant), 4)
        except Exception as e:  # report and keep going: the other variants are still worth measuring
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        print(row, flush=True)
        rows.append(row)
        write_result(args.name or f"decode_{args.config}", {**payload, "partial": True})  # kept if a later variant dies
        if model is not base:  # free torchao's quantized copy before the next variant
            model = step = forward = None
            if device == "cuda":
                torch.cuda.empty_cache()

    by = {r["variant"]: r for r in rows}
    inductor = by.get("inductor", {})
    for r in rows:
        if r["variant"] != "inductor" and "tok_s" in r and "tok_s" in inductor:
            r["speedup_vs_inductor"] = round(r["tok_s"] / inductor["tok_s"], 3)
            if "tok_s_device_pos" in r and "tok_s_device_pos" in inductor:
                r["speedup_device_pos"] = round(r["tok_s_device_pos"] / inductor["tok_s_device_pos"], 3)
    print()
    print_table(rows, ["variant", "batch", "tok_s", "ms_per_tok", "weight_gbs", "pct_of_copy_bw", "compile_s", "token_match",
                       "teacher_forced_match", "generate_match", "logits_rel_err_vs_fp32", "prefill_ms",
                       "speedup_vs_inductor", "tok_s_device_pos", "host_ms_per_tok", "host_bound", "speedup_device_pos",
                       "host_ms_first32", "host_ms_last32", "gc_collections", "gc_ms", "host_thread_cpu_share",
                       "host_other_threads_cpu_ms", "host_ctx_switches", "host_busy_cpus", "host_steal_cpus",
                       "cg_calls", "cg_replays", "cg_warmups", "cg_recordings", "cg_other", "cg_host_ms_per_step",
                       "error"])
    path = write_result(args.name or f"decode_{args.config}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
