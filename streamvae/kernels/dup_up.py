"""Wan 2.2's DupUp3D shortcut (repeat channels, then fold channels into time and space), channels-last.

DupUp3D repeats each input channel `repeats` times and reads the result as `[C, factor_t, factor_s, factor_s]`
blocks: output pixel (t * ft + i, h * fs + j, w * fs + k) of channel c is input channel
`(c * ft * fs * fs + (i * fs + j) * fs + k) // repeats` at (t, h, w). The libraries do it as a repeat and a
permute-copy, and so did fast mode's first version in channels-last order, but both copies read or write with a
stride on the channel axis and run non-vectorised (timings: docs/benchmarks.md). On CUDA one
Triton pass computes each output element from that formula and writes the output in order.
"""

from __future__ import annotations

import torch

from .triton_support import HAVE_TRITON, triton_takes

if HAVE_TRITON:  # pragma: no cover - depends on the install
    import triton
    import triton.language as tl

BLOCK = 1024


def dup_up(x: torch.Tensor, out_channels: int, factor_t: int, factor_s: int, repeats: int) -> torch.Tensor:
    """`[B, C_in, T, H, W]` -> `[B, out_channels, T * factor_t, H * factor_s, W * factor_s]`, channels_last_3d."""
    if triton_takes(x):
        return _dup_up_triton(x, out_channels, factor_t, factor_s, repeats)
    return dup_up_reference(x, out_channels, factor_t, factor_s, repeats)


def dup_up_reference(x: torch.Tensor, out_channels: int, factor_t: int, factor_s: int, repeats: int) -> torch.Tensor:
    b, _, t, h, w = x.shape
    y = x.permute(0, 2, 3, 4, 1).repeat_interleave(repeats, dim=-1)  # [b, t, h, w, c_in * repeats]
    y = y.reshape(b, t, h, w, out_channels, factor_t, factor_s, factor_s).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return y.reshape(b, t * factor_t, h * factor_s, w * factor_s, out_channels).permute(0, 4, 1, 2, 3)


def _dup_up_triton(x: torch.Tensor, out_channels: int, factor_t: int, factor_s: int, repeats: int) -> torch.Tensor:
    b, _, t, h, w = x.shape
    out = torch.empty((b, out_channels, t * factor_t, h * factor_s, w * factor_s), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last_3d)
    count = out.numel()
    _dup_up_kernel[(triton.cdiv(count, BLOCK),)](
        x, out, count, out_channels, t, h, w, *x.stride(), factor_t, factor_s, repeats, BLOCK=BLOCK, num_warps=4)
    return out


if HAVE_TRITON:  # pragma: no cover - runs on a GPU only

    @triton.jit
    def _dup_up_kernel(x_ptr, out_ptr, count, channels, frames, height, width, s_b, s_c, s_t, s_h, s_w,
                       factor_t, factor_s, repeats, BLOCK: tl.constexpr):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < count
        c = offsets % channels  # output element (b, t', h', w', c) in channels-last order
        rest = offsets // channels
        out_w = rest % (width * factor_s)
        rest = rest // (width * factor_s)
        out_h = rest % (height * factor_s)
        rest = rest // (height * factor_s)
        out_t = rest % (frames * factor_t)
        n = rest // (frames * factor_t)
        phase = ((out_t % factor_t) * factor_s + out_h % factor_s) * factor_s + out_w % factor_s
        source_c = (c * (factor_t * factor_s * factor_s) + phase) // repeats
        source = (n * s_b + source_c * s_c + (out_t // factor_t) * s_t + (out_h // factor_s) * s_h
                  + (out_w // factor_s) * s_w)
        tl.store(out_ptr + offsets, tl.load(x_ptr + source, mask=mask), mask=mask)
