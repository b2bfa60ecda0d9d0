"""``benchmarks/int4_learned_rounding_study.py``'s quantizer: with no learned offsets it is round to nearest on each
group's min / max grid (K padded to whole groups), its values lie on 16 levels a group, and the loss reaches all
three learned tensors (else the signed steps would not move them)."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "benchmarks"))
import int4_learned_rounding_study as S  # noqa: E402


def test_round_to_nearest_on_the_group_grid_with_padding():
    torch.manual_seed(0)
    w = torch.randn(6, 200)  # 200 = one group of 128 and a padded one
    fq = S.LearnedInt4(w)
    wq = fq(w).detach()
    assert wq.shape == w.shape
    padded = torch.nn.functional.pad(w, (0, 56)).reshape(6, 2, 128)
    hi, lo = padded.amax(-1, keepdim=True).clamp_min(0), padded.amin(-1, keepdim=True).clamp_max(0)
    scale = (hi - lo) / 15
    err = torch.nn.functional.pad(wq, (0, 56)).reshape(6, 2, 128) - padded
    err[:, 1, 72:] = 0  # the padding's columns are not outputs
    assert (err.abs() <= scale / 2 + 1e-6).all()
    for row in range(6):
        for cols in (slice(0, 128), slice(128, 200)):
            assert wq[row, cols].unique().numel() <= 16


def test_offsets_move_codes_and_the_loss_reaches_every_learned_tensor():
    torch.manual_seed(0)
    w = torch.randn(4, 256)
    fq = S.LearnedInt4(w)
    base = fq(w).detach()
    with torch.no_grad():
        fq.v.fill_(0.49)
    assert (fq(w).detach() != base).any()  # codes whose fraction was above 0.01 round up now
    with torch.no_grad():
        fq.v.zero_()
    ((fq(w) - w * 1.01) ** 2).sum().backward()
    for p in (fq.v, fq.alpha, fq.beta):
        assert p.grad is not None and p.grad.abs().sum() > 0
