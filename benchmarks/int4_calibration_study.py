"""Does GPTQ's int4 g128 gain from more calibration tokens? A fake-quantization study on SmolLM2-135M (the model
``accuracy.py`` measures int4 g128 on), in plain PyTorch like ``int4_rotation_study.py``, whose helpers it uses.

accel calibrates on the activations of the compile's example call, at most ``capture_linear_inputs.MAX_ROWS`` (2,048)
rows per linear; ``accuracy.py``'s call is 4 windows of 512 tokens, so GPTQ's Hessian of a 1,536-column input (the
MLP's down projection) rests on 2,048 rows. Here each linear's Hessian XᵀX comes from the unquantized model on 4, 16
or 64 windows of the calibration articles (2,048 to 32,768 tokens), and the model's perplexity on ``accuracy.py``'s 16
evaluation windows is measured with every linear's weight replaced by its int4 g128 asymmetric GPTQ round trip
through ``accel.runtime.quant``.

    python benchmarks/int4_calibration_study.py --windows 4,16,64
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import accuracy as A  # noqa: E402
from common import write_result  # noqa: E402
from int4_rotation_study import capture_hessians, fake_quantize, smollm2_study  # noqa: E402

WINDOW = 512


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", default="4,16,64", help="calibration windows of 512 tokens, per variant")
    ap.add_argument("--articles", type=int, default=400)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, evaluation, calib_ids, base = smollm2_study(args.articles, WINDOW)
    print(f"SmolLM2-135M fp32 perplexity {base:.4f}; {calib_ids.numel()} calibration tokens available", flush=True)
    rows = []
    for n in (int(v) for v in args.windows.split(",")):
        if n * WINDOW > calib_ids.numel():
            print(f"{n} windows: only {calib_ids.numel()} calibration tokens, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        calib = calib_ids[: n * WINDOW].reshape(n, WINDOW)
        hessians = capture_hessians(model, lambda m: [m(input_ids=c, use_cache=False) for c in calib.split(A.BATCH)])
        _, m = A.load_smollm2()
        fake_quantize(m, rotate=False, hessians=hessians)
        ppl = A.perplexity(m, evaluation)
        rows.append(dict(windows=n, tokens=n * WINDOW, perplexity=round(ppl, 4),
                         delta_pct=round(100 * (ppl / base - 1), 2), seconds=round(time.perf_counter() - t0)))
        print(f"SmolLM2-135M int4 g128 GPTQ, {n * WINDOW} calibration tokens: perplexity {ppl:.4f} "
              f"({rows[-1]['delta_pct']:+.2f}%), {rows[-1]['seconds']} s", flush=True)
    print("wrote", write_result("int4_calibration_study_smollm2", {"fp32_perplexity": base, "rows": rows}))


if __name__ == "__main__":
    main()
