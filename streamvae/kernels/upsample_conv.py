"""Nearest 2x upsample followed by a 3x3 convolution, computed as a sub-pixel convolution of the small image.

After a nearest 2x upsample, each output pixel's 3x3 window covers only 2x2 distinct input pixels, and which
kernel taps share an input pixel depends only on the pixel's phase (row and column parity). So the same result
is four 2x2 convolutions of the input before upsampling, one per phase, with kernels made by summing the taps
that land on the same input pixel: 16 multiply-adds per input pixel and output channel instead of 36
(2.25x fewer), and the 4x-sized upsampled tensor is never written. The four phases run as one convolution with
4x the output channels; on CUDA one Triton pass then interleaves them into the 2x image and adds the bias
(elsewhere: four strided copies, the bias added by the convolution).

Same arithmetic up to rounding: the folded kernels are summed in float32 (or better) and rounded once to the
weight's dtype. Timings at the shapes a decode gives these layers: docs/benchmarks.md, "Upsampling kernels".
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .triton_support import HAVE_TRITON, triton_takes

if HAVE_TRITON:  # pragma: no cover - depends on the install
    import triton
    import triton.language as tl

BLOCK = 1024

# Which of the 3 kernel taps (along one axis) fall on the 2 input pixels a phase's window covers: phase 0 (even
# output rows) sees input rows i-1, i, i; phase 1 (odd rows) sees i, i, i+1.
_TAPS_PER_PIXEL = {0: ((0,), (1, 2)), 1: ((0, 1), (2,))}


def fold_weight(weight: torch.Tensor) -> torch.Tensor:
    """`[C_out, C_in, 3, 3]` -> `[4 * C_out, C_in, 2, 2]`, phases in (row parity, column parity) order."""
    w = weight.to(torch.promote_types(weight.dtype, torch.float32))  # sums in float32 at least
    phases = []
    for row_phase in (0, 1):
        rows = torch.stack([w[:, :, list(taps)].sum(2) for taps in _TAPS_PER_PIXEL[row_phase]], 2)
        for col_phase in (0, 1):
            phases.append(torch.stack([rows[..., list(taps)].sum(-1) for taps in _TAPS_PER_PIXEL[col_phase]], -1))
    return torch.cat(phases, 0).to(weight.dtype)


class SubpixelUpsampleConv:
    """`conv(nearest_upsample_2x(x))` for a 3x3, stride-1, padding-1 conv, from the conv's weight and bias."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], memory_format: torch.memory_format):
        self.out_channels = weight.shape[0]
        self.weight = fold_weight(weight).contiguous(memory_format=memory_format)
        self.bias = None if bias is None else bias.repeat(4)
        self.memory_format = memory_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Padding 1 on every side gives (H+1) x (W+1) windows: phase (a, b) of output pixel (i, j) is window
        # (i + a, j + b), since phase 0 looks one input pixel up/left and phase 1 one down/right.
        if _use_triton(x, self.memory_format):
            # The bias goes in with the interleave: cuDNN's own bias add is a slow extra pass on channels-last.
            return _interleave_triton(F.conv2d(x, self.weight, None, 1, 1), self.bias, self.out_channels)
        return _interleave_torch(F.conv2d(x, self.weight, self.bias, 1, 1), self.out_channels, self.memory_format)


def _use_triton(x: torch.Tensor, memory_format: torch.memory_format) -> bool:
    return triton_takes(x) and memory_format == torch.channels_last


def _interleave_torch(phases: torch.Tensor, channels: int, memory_format: torch.memory_format) -> torch.Tensor:
    """`[N, 4C, H+1, W+1]` phase images -> `[N, C, 2H, 2W]`: four strided copies."""
    batch, height, width = phases.shape[0], phases.shape[2] - 1, phases.shape[3] - 1
    windows = phases.permute(0, 2, 3, 1)  # [N, H+1, W+1, 4C]
    out = torch.empty((batch, channels, 2 * height, 2 * width), dtype=phases.dtype, device=phases.device,
                      memory_format=memory_format)
    pixels = out.permute(0, 2, 3, 1).unflatten(2, (width, 2)).unflatten(1, (height, 2))  # [N, H, 2, W, 2, C]
    for row_phase in (0, 1):
        for col_phase in (0, 1):
            phase = 2 * row_phase + col_phase
            pixels[:, :, row_phase, :, col_phase].copy_(
                windows[:, row_phase:row_phase + height, col_phase:col_phase + width,
                        phase * channels:(phase + 1) * channels])
    return out


def _interleave_triton(phases: torch.Tensor, bias: Optional[torch.Tensor], channels: int) -> torch.Tensor:
    """The same interleave (plus the bias) as one pass writing the channels-last output in order."""
    phases = phases.contiguous(memory_format=torch.channels_last)  # a no-op for cuDNN's channels-last output
    batch, height, width = phases.shape[0], phases.shape[2] - 1, phases.shape[3] - 1
    out = torch.empty((batch, channels, 2 * height, 2 * width), dtype=phases.dtype, device=phases.device,
                      memory_format=torch.channels_last)
    count = out.numel()
    bias_arg = phases if bias is None else bias[:channels].to(torch.float32).contiguous()
    _interleave_kernel[(triton.cdiv(count, BLOCK),)](phases, bias_arg, out, count, channels, height, width,
                                                     HAS_BIAS=bias is not None, BLOCK=BLOCK, num_warps=4)
    return out


if HAVE_TRITON:  # pragma: no cover - runs on a GPU only

    @triton.jit
    def _interleave_kernel(phases_ptr, bias_ptr, out_ptr, count, channels, height, width,
                           HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < count
        c = offsets % channels  # output element (n, y, x, c) in channels-last order
        rest = offsets // channels
        x = rest % (2 * width)
        rest = rest // (2 * width)
        y = rest % (2 * height)
        n = rest // (2 * height)
        row_phase, col_phase = y % 2, x % 2
        window = (n * (height + 1) + y // 2 + row_phase) * (width + 1) + x // 2 + col_phase
        source = window * (4 * channels) + (2 * row_phase + col_phase) * channels + c
        value = tl.load(phases_ptr + source, mask=mask).to(tl.float32)
        if HAS_BIAS:
            value += tl.load(bias_ptr + c, mask=mask)
        tl.store(out_ptr + offsets, value.to(out_ptr.dtype.element_ty), mask=mask)
