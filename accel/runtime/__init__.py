"""How accel ops run: op definitions, torch references, Triton kernels, the autotune cache.

Imports nothing from accel.compiler, accel.patterns or accel.lowering."""
