"""Do Triton compiles overlap on threads? The question behind ``ACCEL_COMPILE_THREADS``: a fresh tuning compiles every
candidate kernel of every shape, and threads help only if Triton's compiler and ptxas release the GIL.

    python benchmarks/compile_threads.py --threads 1,2      # CPU only: compiles for sm_90, launches nothing

Records the launches of the word-GEMV candidates of one shape (1B gate/up, int8 weight-only, M = 1) as
``tests/runtime/sm90_compile.py`` does and compiles them for sm_90 with each thread count, each time into an empty
Triton cache. Prints seconds per thread count and writes the rows as JSON.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "runtime"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sm90_compile as sc  # noqa: E402
from common import print_table, write_result  # noqa: E402

from accel.runtime import quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402


def recorded_launches(N: int, K: int) -> list:
    kq.wrap_triton = sc.record
    q, s, z = quant.quantize_weight(torch.randn(2 * N, K, dtype=torch.bfloat16), "int8_weight_only")
    x = torch.randn(1, K, dtype=torch.bfloat16)
    for cfg in kq.candidate_configs(1, N, K, "int8_weight_only", 128, True, 2, 132):
        if cfg["kernel"] == "gemv":
            kq.qlinear(x, q, s, z, None, "int8_weight_only", 128, "silu", True, _config=cfg)
    return list(sc.launches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    os.environ.pop("TRITON_INTERPRET", None)
    launches = recorded_launches(8192, 2048)
    rows = []
    for n in (int(t) for t in args.threads.split(",")):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["TRITON_CACHE_DIR"] = cache
            t0 = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(lambda launch: sc.compile_launch(*launch), launches))
            rows.append({"threads": n, "kernels": len(launches), "seconds": round(time.perf_counter() - t0, 2),
                         "cpus": os.cpu_count()})
            print(rows[-1], flush=True)
    print_table(rows, ["threads", "kernels", "seconds", "cpus"])
    print("wrote", write_result("compile_threads", {"rows": rows}))


if __name__ == "__main__":
    main()
