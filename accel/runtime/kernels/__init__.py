"""Triton kernels and their launchers. Launchers take CUDA tensors and call ``wrap_triton(kernel)[grid]``
so that, inside a ``torch.library.triton_op``, Inductor copies the kernel into its generated code."""
