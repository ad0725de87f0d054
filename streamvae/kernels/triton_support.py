"""Whether Triton is installed, and whether a tensor is one the Triton kernels here can take."""

from __future__ import annotations

import os

import torch

try:  # pragma: no cover - depends on the install
    import triton  # noqa: F401 - only whether it imports

    HAVE_TRITON = True
except ImportError:  # CPU-only or Windows installs
    HAVE_TRITON = False

# Triton's interpreter (TRITON_INTERPRET=1, set before Triton is imported) runs the same kernel code on the CPU
# through numpy: far too slow to decode with, but how the tests check the kernels' arithmetic on a machine
# without a GPU (tests/engine/test_triton_interpreted.py).
INTERPRETED = HAVE_TRITON and os.environ.get("TRITON_INTERPRET") == "1"
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def triton_takes(tensor: torch.Tensor) -> bool:
    """Triton is there, and `tensor` is on a CUDA device (or the CPU, interpreted) in a dtype the kernels take."""
    on_its_device = tensor.is_cuda or (INTERPRETED and tensor.device.type == "cpu")
    return HAVE_TRITON and on_its_device and tensor.dtype in TRITON_DTYPES
