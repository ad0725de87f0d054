"""Whether Triton is installed, and whether a tensor is one the Triton kernels here can take."""

from __future__ import annotations

import torch

try:  # pragma: no cover - depends on the install
    import triton  # noqa: F401 - only whether it imports

    HAVE_TRITON = True
except ImportError:  # CPU-only or Windows installs
    HAVE_TRITON = False

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def triton_takes(tensor: torch.Tensor) -> bool:
    """Triton is there, and `tensor` is on a CUDA device in a dtype the kernels are written for."""
    return HAVE_TRITON and tensor.is_cuda and tensor.dtype in TRITON_DTYPES
