"""``python -m accel <command>``: env (versions, device, supported ranges, environment flags), passes (the
pipeline for given options), options (every option with its default and meaning)."""
from __future__ import annotations

import argparse
import json
import sys

SUPPORTED_TORCH = ((2, 11), (2, 13))
SUPPORTED_TRITON = ((3, 6), (3, 9))


def _version(v: str) -> tuple[int, int]:
    major, minor = v.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def _in_range(v: str, lo_hi) -> str:
    lo, hi = lo_hi
    return "supported" if lo <= _version(v) <= hi else f"untested (accel is tested on {lo}..{hi})"


def cmd_env(_args) -> int:
    import torch

    from accel import __version__, envs

    print(f"accel      {__version__}")
    print(f"python     {sys.version.split()[0]}")
    print(f"torch      {torch.__version__:24s} {_in_range(torch.__version__, SUPPORTED_TORCH)}")
    try:
        import triton

        print(f"triton     {triton.__version__:24s} {_in_range(triton.__version__, SUPPORTED_TRITON)}")
    except ImportError:
        print("triton     not installed (accel's ops run their torch reference)")
    if torch.cuda.is_available():
        cc = torch.cuda.get_device_capability()
        print(f"device     {torch.cuda.get_device_name()} (sm_{cc[0]}{cc[1]})")
    else:
        print("device     cpu (no CUDA device: accel ops run their torch reference, Inductor emits C++)")
    for name, fn in envs.ALL.items():
        print(f"{name:22s} {fn()!r}")
    return 0


def cmd_passes(args) -> int:
    from accel.compiler.options import AccelOptions
    from accel.compiler.pipeline import build_pipeline

    opts = AccelOptions.from_dict(json.loads(args.options) if args.options else None)
    for i, p in enumerate(build_pipeline(opts), 1):
        doc = (type(p).__module__ and sys.modules[type(p).__module__].__doc__ or "").strip().splitlines()[0]
        print(f"{i:2d}. {p.name:20s} {doc}")
    return 0


def cmd_options(_args) -> int:
    from accel.compiler.options import AccelOptions

    for name, default, doc in AccelOptions.describe():
        print(f"{name} (default {default})\n    {doc}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m accel", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="versions, device, supported ranges, environment flags").set_defaults(fn=cmd_env)
    p = sub.add_parser("passes", help="the ordered pass list")
    p.add_argument("--options", help='options as JSON, e.g. \'{"fuse_ffn": false}\'')
    p.set_defaults(fn=cmd_passes)
    sub.add_parser("options", help="every option with its default and meaning").set_defaults(fn=cmd_options)
    args = ap.parse_args(argv)
    return args.fn(args)
