"""RGB uint8 -> yuv420p planes on the decoder's device, so the host hands the encoder 1.5 bytes a pixel, not 3.

What it computes is what FFmpeg's swscale does for rgb24 -> yuv420p (BT.601, limited range, the conversion
PyAV runs inside `stream.encode` and so inside ComfyUI's Save Video), in the same integer arithmetic:

- Y: swscale's 15-bit coefficients and rounding (`rgb24ToY_c`); bit-identical to swscale.
- U, V: each horizontal pair summed (`rgb24ToUV_half_c`), then the vertical 2:1 bilinear filter swscale builds for
  MPEG-2 chroma siting (taps 1/8, 3/8, 3/8, 1/8 over rows 2i-1 .. 2i+2, edges repeated), correctly rounded.
  swscale's default x86 path truncates inside its SIMD filter, so it lands 1 lower on some chroma samples (how
  many: docs/benchmarks.md, "Encoder throughput"); never more than 1 apart.

Because of that ±1 in chroma, only fast mode converts here; exact mode still hands rgb24 to the encoder, so
swscale converts it exactly as stock ComfyUI does (see `convert.layout_for`).

A frame is one contiguous I420 buffer viewed as `[H * 3 / 2, W]`: the Y plane, then U, then V. That is the layout
`av.VideoFrame.from_ndarray(..., format="yuv420p")` reads, and one slot-sized copy moves all three planes.
"""

from __future__ import annotations

import numpy as np
import torch

_SHIFT = 15  # swscale's RGB2YUV_SHIFT


def _coefficient(value: float) -> int:
    return int(value * (1 << _SHIFT) + 0.5)


# BT.601 scaled to limited range (219 steps of luma, 224 of chroma), as swscale's ff_sws_init_range_convert.
_Y = tuple(_coefficient(c * 219 / 255) for c in (0.299, 0.587, 0.114))
_UV = tuple(tuple(_coefficient(c * 224 / 255) for c in row)
            for row in ((-0.169, -0.331, 0.500), (0.500, -0.419, -0.081)))  # U, then V
# swscale's offsets, with its two luma roundings (to 8-bit << 6, then to 8 bits) folded into one shift by 15.
_Y_OFFSET = (32 << (_SHIFT - 1)) + (1 << (_SHIFT - 7)) + (1 << (_SHIFT - 1))
_UV_OFFSET = (256 << _SHIFT) + (1 << (_SHIFT - 6))


def yuv420p_shape(height: int, width: int) -> tuple[int, int]:
    """The `[rows, columns]` of one I420 frame; both sizes must be even."""
    return height * 3 // 2, width


def even_pad(rgb: torch.Tensor) -> torch.Tensor:
    """Repeat the last row/column of `[t, H, W, 3]` frames where a size is odd (yuv420p needs even sizes)."""
    pad_y, pad_x = rgb.shape[1] % 2, rgb.shape[2] % 2
    if not (pad_x or pad_y):
        return rgb
    rows = torch.cat([rgb, rgb[:, -1:]], 1) if pad_y else rgb
    return torch.cat([rows, rows[:, :, -1:]], 2) if pad_x else rows


def rgb_to_yuv420p(rgb: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """`[t, H, W, 3]` uint8 RGB (even H, W) -> `[t, H*3/2, W]` uint8 I420, on rgb's device."""
    frames, height, width, _ = rgb.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even sizes, got {height}x{width}; pad with even_pad() first")
    if out is None:
        out = torch.empty((frames, *yuv420p_shape(height, width)), dtype=torch.uint8, device=rgb.device)
    # Few, whole-tensor kernels: this runs on the decoder's stream between chunks, so launches count.
    x = rgb.to(torch.int32)
    y_weights = torch.tensor(_Y, dtype=torch.int32, device=rgb.device)
    uv_weights = torch.tensor(_UV, dtype=torch.int32, device=rgb.device)  # [plane, channel]
    planes = out.view(frames, -1)
    area = height * width
    planes[:, :area].view(frames, height, width).copy_(((x * y_weights).sum(-1) + _Y_OFFSET) >> _SHIFT)
    pairs = x.unflatten(2, (width // 2, 2)).sum(3)  # [t, H, W/2, 3]: each horizontal pair summed
    chroma = ((pairs.unsqueeze(-2) * uv_weights).sum(-1) + _UV_OFFSET) >> (_SHIFT - 5)  # [t, H, W/2, 2], 8-bit << 6
    edged = torch.cat([chroma[:, :1], chroma, chroma[:, -1:]], 1)  # rows -1 and H repeat the edges
    # Output row i takes input rows 2i-1, 2i, 2i+1, 2i+2 (edged rows 2i .. 2i+3) with weights 1, 3, 3, 1 eighths.
    taps = edged[:, 0:height:2] + edged[:, 3:height + 3:2] + 3 * (edged[:, 1:height + 1:2] + edged[:, 2:height + 2:2])
    planes[:, area:].view(frames, 2, height // 2, width // 2).copy_(((taps + 256) >> 9).permute(0, 3, 1, 2))
    return out


def yuv420p_preview(frame: np.ndarray, every: int) -> np.ndarray:
    """A small RGB picture of one I420 frame (`[H*3/2, W]` uint8), every `every`-th pixel: for live previews."""
    height, width = frame.shape[0] * 2 // 3, frame.shape[1]
    flat = frame.reshape(-1)
    area = height * width
    y = flat[:area].reshape(height, width)[::every, ::every].astype(np.float32)
    u = flat[area:area + area // 4].reshape(height // 2, width // 2)
    v = flat[area + area // 4:].reshape(height // 2, width // 2)
    u = np.repeat(np.repeat(u, 2, 0), 2, 1)[::every, ::every].astype(np.float32) - 128
    v = np.repeat(np.repeat(v, 2, 0), 2, 1)[::every, ::every].astype(np.float32) - 128
    y = (y - 16) * (255 / 219)
    rgb = np.stack([y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
