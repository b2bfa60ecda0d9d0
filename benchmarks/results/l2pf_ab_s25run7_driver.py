"""kernels.py with qlinear.MMA_L2PF set from argv[1] (0/1), the rest of argv passed on."""
import sys
sys.path.insert(0, "benchmarks")
flag = sys.argv.pop(1) == "1"
import kernels  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
kq.MMA_L2PF = flag
if flag:  # the loads agree with the plain ones bit for bit
    import torch
    from accel.runtime import quant
    for scheme in ("int4_weight_only", "int8_weight_only"):
        q, s, z = quant.quantize_weight(torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16), scheme, 128)
        x = torch.randn(16, 4096, device="cuda", dtype=torch.bfloat16)
        for cfg in [c for c in kq.candidate_configs(16, 4096, 4096, scheme, 128, False, 2, 132) if c["kernel"] == "mma"][:6]:
            kq.MMA_L2PF = False
            a = kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, _config=cfg)
            kq.MMA_L2PF = True
            b = kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, _config=cfg)
            assert torch.equal(a, b), (scheme, cfg)
    print("L2PF outputs identical to plain loads", flush=True)
sys.argv = ["kernels.py"] + sys.argv[1:]
kernels.main()
