"""A convolution's per-channel bias added in place, optionally with a residual in the same pass.

PyTorch's cuDNN convolution adds the bias as a separate broadcast `add_` after the kernel; on channels-last
activations that add runs as a non-vectorised elementwise kernel well below memory bandwidth (its share of the
GPU time: docs/benchmarks.md). Fast mode runs its convolutions without bias and adds it
here: on channels-last-dense tensors the channel of element i is i % C, so one flat, vectorised pass does it, and
a residual that follows (the residual block's shortcut) rides along instead of costing a pass of its own.
Portable Triton only: sm_80, sm_90 and sm_120 alike. Anything else takes the torch fallback.
"""

from __future__ import annotations

from typing import Optional

import torch

from .triton_support import HAVE_TRITON, triton_takes

if HAVE_TRITON:  # pragma: no cover - depends on the install
    import triton
    import triton.language as tl

BLOCK = 2048


def _channels_last_dense(t: torch.Tensor) -> bool:
    if t.dim() == 5:
        return t.is_contiguous(memory_format=torch.channels_last_3d)
    if t.dim() == 4:
        return t.is_contiguous(memory_format=torch.channels_last)
    return False


def _use_triton(out: torch.Tensor, bias: torch.Tensor, residual: Optional[torch.Tensor]) -> bool:
    return (triton_takes(out) and _channels_last_dense(out) and bias.numel() == out.shape[1]
            and (residual is None or (residual.shape == out.shape and residual.stride() == out.stride()
                                      and residual.dtype == out.dtype)))


def add_channel_bias_(out: torch.Tensor, bias: Optional[torch.Tensor],
                      residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`out += bias[c] (+ residual)` in place for `[N, C, ...]`, computed in float32 and rounded once."""
    if bias is None:
        return out if residual is None else out.add_(residual)
    if not _use_triton(out, bias, residual):
        out.add_(bias.to(out.dtype).reshape((1, -1) + (1,) * (out.dim() - 2)))
        return out if residual is None else out.add_(residual)
    bias = bias.reshape(-1).to(device=out.device, dtype=torch.float32).contiguous()
    count = out.numel()
    _add_channel_bias_kernel[(triton.cdiv(count, BLOCK),)](
        out, bias, out if residual is None else residual, count, out.shape[1],
        HAS_RESIDUAL=residual is not None, BLOCK=BLOCK, num_warps=8)
    return out


if HAVE_TRITON:  # pragma: no cover - runs on a GPU only

    @triton.jit
    def _add_channel_bias_kernel(out_ptr, bias_ptr, residual_ptr, count, channels,
                                 HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < count
        y = tl.load(out_ptr + offsets, mask=mask).to(tl.float32)
        y += tl.load(bias_ptr + offsets % channels, mask=mask)
        if HAS_RESIDUAL:
            y += tl.load(residual_ptr + offsets, mask=mask).to(tl.float32)
        tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
