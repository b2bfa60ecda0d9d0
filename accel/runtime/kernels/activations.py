"""Triton versions of ``accel.runtime.activations.ACTIVATIONS``, selected by a constexpr code.

The codes must stay in the order of that table (``tests/runtime/test_activations.py`` checks each one
against its torch reference). Everything is computed in fp32; tanh is written through exp so that it needs
no libdevice call and runs under the Triton interpreter too.
"""
import triton
import triton.language as tl

@triton.jit
def _tanh(x):
    # tanh(x) = 1 - 2 / (exp(2x) + 1); exact at both tails (exp overflow gives 1, underflow gives -1)
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def apply_activation(x, ACT: tl.constexpr):
    """act(x) for an fp32 block ``x``; ACT is the index in ``ACTIVATION_IDS`` (0 identity, 1 relu, 2 gelu,
    3 gelu_tanh, 4 silu, 5 quick_gelu, 6 sigmoid, 7 tanh, 8 relu2)."""
    if ACT == 1:
        x = tl.maximum(x, 0.0)
    elif ACT == 2:
        x = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))  # 1/sqrt(2)
    elif ACT == 3:
        x = 0.5 * x * (1.0 + _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))  # sqrt(2/pi)
    elif ACT == 4:
        x = x * tl.sigmoid(x)
    elif ACT == 5:
        x = x * tl.sigmoid(1.702 * x)
    elif ACT == 6:
        x = tl.sigmoid(x)
    elif ACT == 7:
        x = _tanh(x)
    elif ACT == 8:
        x = tl.maximum(x, 0.0)
        x = x * x
    return x
