"""``benchmarks/sass_stats.py``'s counting on made-up nvdisasm text: the longest backward branch's body is the loop,
predicated and suffixed opcodes count under their base name and pipe, a kernel without a loop is counted whole, and
codes a pass follow the config. (Compiling a real launch is ``tests/runtime/sm90_compile.py``'s job.)"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import sass_stats  # noqa: E402

SASS = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   S2R R0, SR_TID.X ;
.L_x_0:
        /*0020*/                   LOP3.LUT R2, R0, 0xf, RZ, 0xc0, !PT ;
        /*0030*/                   BRA `(.L_x_0) ;
.L_x_1:
        /*0040*/              @!P0 LDG.E.EF.128 R4, desc[UR4][R2.64] ;
        /*0050*/                   PRMT R8, R4, 0x7044, R9 ;
        /*0060*/                   PRMT R10, R4, 0x7144, R9 ;
        /*0070*/                   FFMA R12, R8, R6, R12 ;
        /*0080*/                   IMAD.U32 R13, R5, 0x10000, RZ ;
        /*0090*/                   SHFL.BFLY PT, R14, R12, 0x1, 0x1f ;
        /*00a0*/               @P1 BRA `(.L_x_1) ;
        /*00b0*/                   EXIT ;
"""


def test_the_loop_is_the_longest_backward_branch():
    ops, in_loop = sass_stats.loop_opcodes(SASS)
    assert in_loop
    assert ops == {"LDG": 1, "PRMT": 2, "FFMA": 1, "IMAD": 1, "SHFL": 1, "BRA": 1}
    assert sass_stats.pipes(ops) == {"int": 2, "fma": 2, "loads": 1, "all": 7}


def test_a_kernel_without_a_loop_is_counted_whole():
    straight = "\n".join(line for line in SASS.splitlines() if "BRA" not in line)
    ops, in_loop = sass_stats.loop_opcodes(straight)
    assert not in_loop
    assert sum(ops.values()) == 10 and ops["LDC"] == ops["S2R"] == ops["EXIT"] == 1 and ops["PRMT"] == 2


def test_codes_per_pass():
    cfg = {"BLOCK_N": 4, "BLOCK_K": 2048, "SPLIT_K": 1, "num_warps": 2}
    assert sass_stats.codes_per_pass(cfg, 4096, False, True) == 4 * 2048 / 64  # one K step of 4 rows
    assert sass_stats.codes_per_pass(cfg, 4096, True, True) == 2 * 4 * 2048 / 64  # gate and up rows
    tiles = {**cfg, "BLOCK_K": 4096, "TILES": 2}
    assert sass_stats.codes_per_pass(tiles, 4096, False, False) == 2 * 4 * 4096 / 64  # the whole program
