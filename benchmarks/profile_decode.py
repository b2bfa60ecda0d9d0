"""Where does a decode step's time go? Profiles five compiled decode steps per variant and prints the top kernels,
so that kernel work targets what the baselines actually spend time on.

    python benchmarks/profile_decode.py --config 1b --variants inductor,accel
    python benchmarks/profile_decode.py --config 1b --variants accel --cudagraphs   # the replayed graph, and its copies
    python benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --batch 8  # 8 sequences

Without ``--cudagraphs`` each kernel is launched from the host, so the launch count is the graph's. With it, the
step runs as deployed (CUDA graph replay) and the script also counts every memory copy the profiler saw per step:
device-to-device memcpys and copy kernels. A step that copies no weights or caches shows only the few bytes of its
token and position inputs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_accel_from, use_accel_from  # noqa: E402
from decode_model import CONFIGS, build_model, make_step, prefilled_cache  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="1b", choices=sorted(CONFIGS))
    ap.add_argument("--variants", default="inductor")
    ap.add_argument("--context", type=int, default=160)
    # decode.py's cache (prompt 128 + 256 new + 8): kernels are tuned per power-of-two cache length, and at 224 (the
    # old context + 64) the H100's attention took another config than decode.py's 392 gets
    ap.add_argument("--cache-len", type=int, default=392, help="StaticCache length (at least context + 58)")
    ap.add_argument("--batch", type=int, default=1, help="sequences decoded together (as decode.py --batch)")
    ap.add_argument("--cudagraphs", action="store_true", help="profile CUDA graph replays and count per-step copies")
    ap.add_argument("--top", type=int, default=25, help="kernels listed per variant, by time")
    ap.add_argument("--timeline", action="store_true",
                    help="also print the busy and idle time per step, and its largest gaps between kernels")
    ap.add_argument("--sequence", type=int, default=0,
                    help="also print the first N kernels of a step (and the last 3) in order: mean time and gap before")
    ap.add_argument("--decode-loop", type=int, default=0, metavar="NEW",
                    help="also time decode.py's loop in the same process (a 32-token prompt, then NEW tokens with the "
                         "position advanced on the device, on the profiled cache reset), median of 3: its time a "
                         "token beside the step's busy time says what the loop adds outside the step's kernels")
    add_accel_from(ap)
    args = ap.parse_args()
    use_accel_from(args.accel_from)

    model, cfg = build_model(args.config, torch.bfloat16, "cuda")
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        step = make_step(variant, cudagraphs=args.cudagraphs)
        cache = prefilled_cache(model, cfg, args.context, max(args.cache_len, args.context + 58), batch=args.batch)
        tok = torch.randint(0, cfg.vocab_size, (args.batch, 1), device="cuda")
        with torch.no_grad():
            for i in range(3):  # compile, record and warm the graph
                step(model, cache, tok, torch.tensor([args.context + i], device="cuda"))
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                for i in range(5):
                    step(model, cache, tok, torch.tensor([args.context + 3 + i], device="cuda"))
                torch.cuda.synchronize()
            # wall time per step beside the profile's GPU time: far above it, the step is host-bound (launches)
            t0 = time.perf_counter()
            for i in range(50):
                step(model, cache, tok, torch.tensor([args.context + 8 + i], device="cuda"))
            torch.cuda.synchronize()
            wall_us = (time.perf_counter() - t0) / 50 * 1e6
            loop_us = decode_loop_us(model, cfg, step, cache, args.decode_loop, args.batch) if args.decode_loop else None
        report(variant, prof, steps=5, cudagraphs=args.cudagraphs, top=args.top)
        if args.timeline:
            timeline(prof, steps=5)
        if args.sequence:
            sequence(prof, args.sequence)
        print(f"   wall time per step (host position, 50 steps): {wall_us:.0f} us")
        if loop_us is not None:
            print(f"   decode.py's loop (device position, {args.decode_loop} tokens, median of 3): {loop_us:.0f} us a token")


def decode_loop_us(model, cfg, step, cache, new: int, batch: int, runs: int = 3, device: str = "cuda") -> float:
    """Microseconds a token of ``decode.run_decode`` at device position (decode.py's timed loop) with ``step`` and
    ``cache`` (reset, prefilled with a random 32-token prompt): the median of ``runs``."""
    from decode import median, run_decode

    prompt = torch.randint(0, cfg.vocab_size, (batch, 32), device=device)
    cache_len = cache.layers[0].keys.shape[2]
    if 32 + new > cache_len:
        raise SystemExit(f"--decode-loop {new}: the cache holds {cache_len} rows, the loop needs {32 + new}")
    times = [run_decode(model, cfg, step, prompt, new, device, cache_len, device_pos=True, cache=cache)[0]
             for _ in range(runs)]
    return median(times) / new * 1e6


def is_copy(name: str) -> bool:
    """A memory copy as the profiler names it: a memcpy/memset activity or one of ATen's copy kernels."""
    low = name.lower()
    return low.startswith("memcpy") or "copy_kernel" in low or "copykernel" in low or "catarraybatchedcopy" in low


def report(variant: str, prof, steps: int, cudagraphs: bool, top: int = 25) -> None:
    per_kernel = defaultdict(lambda: [0.0, 0])
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            k = per_kernel[ev.name[:90]]
            k[0] += ev.device_time_total / steps
            k[1] += 1
    total = sum(v[0] for v in per_kernel.values())
    mode = "CUDA graph replay" if cudagraphs else "host launches"
    print(f"== {variant} ({mode}): {total:.0f} us of GPU time per step, "
          f"{sum(v[1] for v in per_kernel.values()) // steps} kernels/copies per step")
    for name, (us, n) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {us:8.1f} us  {n // steps:4d}x  {name}")
    copies = {name: v for name, v in per_kernel.items() if is_copy(name)}
    n_copies = sum(v[1] for v in copies.values()) / steps
    print(f"   copies per step: {n_copies:g} ({sum(v[0] for v in copies.values()):.1f} us)"
          + "".join(f"\n    {v[1] / steps:g}x {v[0]:.1f} us  {name}" for name, v in copies.items()))


# A gap between kernels this long or longer is the host's (between CUDA-graph replays, around the token's copy),
# not the step's own: ``timeline`` leaves it out of the step's idle time, ``sequence`` splits the steps at it.
HOST_GAP_US = 20.0


def _gpu_events(prof) -> list[tuple[float, float, str]]:
    return sorted((ev.time_range.start, ev.time_range.end, ev.name[:60]) for ev in prof.events()
                  if ev.device_type == torch.autograd.DeviceType.CUDA)


def launch_gaps(prof, host_gap_us: float = HOST_GAP_US) -> list[tuple[float, str, str]]:
    """(idle µs, kernel before, kernel after) for each gap between kernels shorter than ``host_gap_us``, measured from
    the latest end so far (kernels that overlap, as with PDL, leave no gap)."""
    gaps, prev_end, prev_name = [], None, ""
    for start, end, name in _gpu_events(prof):
        if prev_end is not None and 0 <= start - prev_end < host_gap_us:
            gaps.append((start - prev_end, prev_name, name))
        if prev_end is None or end >= prev_end:
            prev_end, prev_name = end, name
    return gaps


def sequence(prof, first: int, last: int = 3, host_gap_us: float = HOST_GAP_US) -> None:
    """The step's kernels in launch order (steps split at the host's gaps, as in ``timeline``): for each of the
    first ``first`` and the last ``last`` positions, the mean time, the mean gap before it (its start after the
    latest end before it: negative when it overlaps, as with PDL) and what it adds to the step (its end past that
    latest end, 0 if none: the step's busy and idle time, kernel by kernel), over the steps that have that many
    kernels. Every layer of a decoder repeats the same kernels, so the first ones show each projection's own time,
    and ``adds`` its share of the step once the overlaps are counted (a kernel launched early runs long and may add
    little; one whose waiting programs hold the SMs that the kernel before needs adds to that kernel's share)."""
    steps, cur, prev_end = [], [], None
    for start, end, name in _gpu_events(prof):
        if prev_end is not None and start - prev_end >= host_gap_us and cur:
            steps.append(cur)
            cur = []
        gap, adds = (start - prev_end, max(end - prev_end, 0.0)) if cur else (0.0, end - start)
        cur.append((gap, end - start, adds, name))
        prev_end = end if prev_end is None else max(prev_end, end)
    if cur:
        steps.append(cur)
    n = max(len(s) for s in steps)
    steps = [s for s in steps if len(s) == n]  # whole steps only (the token copy may sit apart)
    positions = list(range(min(first, n))) + list(range(max(first, n - last), n))
    print(f"   sequence ({len(steps)} steps of {n} kernels/copies): position  time  gap-before  adds  kernel")
    for i in positions:
        gap_us, time_us, adds_us = (sum(s[i][j] for s in steps) / len(steps) for j in range(3))
        print(f"    {i:4d}  {time_us:7.2f} us  {gap_us:5.2f} us  {adds_us:6.2f} us  {steps[0][i][3]}")


def timeline(prof, steps: int, largest: int = 8, host_gap_us: float = HOST_GAP_US) -> None:
    """Kernels' start and end on the GPU's clock: the time covered by at least one kernel (overlaps, as with
    programmatic dependent launch, counted once) and the idle time between kernels, split at ``host_gap_us``: gaps
    that long are the host's (between graph replays, and around the token's host-to-device copy), the rest are the
    step's own launch gaps. Prints per step: busy, the step's idle time and gap count, and the largest of its gaps
    with the kernels on either side. Busy plus the step's idle time is what a step costs once the host keeps up."""
    evs = _gpu_events(prof)
    if not evs:
        return
    busy, gaps, cur_end, prev = 0.0, [], evs[0][0], evs[0][2]
    for start, end, name in evs:
        if start > cur_end:
            gaps.append((start - cur_end, prev, name))
        else:
            start = cur_end if end > cur_end else end
        busy += max(end - start, 0.0)
        if end >= cur_end:
            cur_end, prev = end, name
    own = sorted((g for g in gaps if g[0] < host_gap_us), reverse=True)
    host = [g[0] for g in gaps if g[0] >= host_gap_us]
    idle = sum(g[0] for g in own)
    print(f"   timeline: {busy / steps:.0f} us busy + {idle / steps:.0f} us idle in {len(own) / steps:.0f} gaps "
          f"per step (median {own[len(own) // 2][0] if own else 0:.2f} us) = {(busy + idle) / steps:.0f} us; "
          f"{len(host)} gaps >= {host_gap_us:g} us ({sum(host) / steps:.0f} us a step) left out as the host's")
    for g, before, after in own[:largest]:
        print(f"    gap {g:6.2f} us  after {before}  before {after}")


if __name__ == "__main__":
    main()
