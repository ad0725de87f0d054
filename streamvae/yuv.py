"""RGB uint8 -> yuv420p planes on the decoder's device, so the host hands the encoder 1.5 bytes a pixel, not 3.

What it computes is what FFmpeg's swscale does for rgb24 -> yuv420p (BT.601, limited range, the conversion
PyAV runs inside `stream.encode` and so inside ComfyUI's Save Video), in the same integer arithmetic:

- Y: swscale's 15-bit coefficients and rounding (`rgb24ToY_c`); bit-identical to swscale.
- U, V: each horizontal pair summed (`rgb24ToUV_half_c`), then the vertical 2:1 bilinear filter swscale builds for
  MPEG-2 chroma siting (taps 1/8, 3/8, 3/8, 1/8 over rows 2i-1 .. 2i+2, edges repeated), correctly rounded.
  swscale's default x86 path truncates inside its SIMD filter, so it lands 1 lower on a few percent of chroma
  samples (measured: up to 7% on noise, ~0.8% against its accurate-rounding path); never more than 1 apart.

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
_U = tuple(_coefficient(c * 224 / 255) for c in (-0.169, -0.331, 0.500))
_V = tuple(_coefficient(c * 224 / 255) for c in (0.500, -0.419, -0.081))
_VERTICAL_TAPS = ((-1, 1), (0, 3), (1, 3), (2, 1))  # (row offset from 2i, weight in eighths)


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
    x = rgb.to(torch.int32)
    r, g, b = x.unbind(-1)
    luma = (_Y[0] * r + _Y[1] * g + _Y[2] * b + (32 << (_SHIFT - 1)) + (1 << (_SHIFT - 7))) >> (_SHIFT - 6)
    y_plane = (luma + 32) >> 6  # luma is 8-bit << 6: round to 8 bits
    r2, g2, b2 = (channel[:, :, 0::2] + channel[:, :, 1::2] for channel in (r, g, b))
    rows = torch.arange(0, height, 2, device=rgb.device)
    planes = [y_plane]
    for cr, cg, cb in (_U, _V):
        chroma = (cr * r2 + cg * g2 + cb * b2 + (256 << _SHIFT) + (1 << (_SHIFT - 6))) >> (_SHIFT - 5)
        acc = sum(weight * chroma[:, (rows + offset).clamp(0, height - 1)] for offset, weight in _VERTICAL_TAPS)
        planes.append((acc + 256) >> 9)  # eighths of 8-bit << 6: round to 8 bits
    flat = out.view(frames, -1)
    area = height * width
    flat[:, :area].copy_(planes[0].reshape(frames, -1))
    flat[:, area:area + area // 4].copy_(planes[1].reshape(frames, -1))
    flat[:, area + area // 4:].copy_(planes[2].reshape(frames, -1))
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
