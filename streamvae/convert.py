"""Pixel chunks from the decoder -> the bytes the encoder takes, on the decoder's device, before anything is copied."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .yuv import even_pad, rgb_to_yuv420p, yuv420p_preview, yuv420p_shape

log = logging.getLogger("streamvae")

MODES = ("exact", "fast")


def to_uint8_frames(chunk: torch.Tensor, *, unit_range: bool = False, mode: str = "exact",
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """`[1, 3, t, H, W]` pixels -> `[t, H, W, 3]` uint8, written into `out` when given.

    exact: the bytes stock ComfyUI writes. VAE Decode computes `clamp((x + 1) / 2, 0, 1)` in float32 and Save
    Video then `(x * 255).clamp(0, 255).byte()`, which truncates. The same float32 operations in the same order
    give the same bytes on any device (in bf16, or rounding instead of truncating, many bytes differ: docs/benchmarks.md).
    fast: the same formula in the decoder's own dtype, one pass fewer over the data; close, not byte-identical.
    """
    frames = chunk[0].permute(1, 2, 3, 0)  # [t, H, W, 3]: channels last is what encoders read
    if mode == "exact":
        x = frames.float()
        if not unit_range:
            x = torch.clamp((x + 1.0) / 2.0, min=0.0, max=1.0)
        x = (x * 255).clamp(0, 255)
    elif mode == "fast":
        x = frames if unit_range else (frames + 1.0) * 0.5
        x = (x * 255).clamp_(0, 255)
    else:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    if out is None:
        return x.to(torch.uint8)
    out.copy_(x)  # float -> uint8 truncates toward zero, as .byte() does
    return out


@dataclass(frozen=True)
class FrameLayout:
    """How frames travel from a device slot to the encoder: their pixel format, shape, conversion and preview."""

    pix_fmt: str  # what the encoder receives; PyAV's name
    frame_shape: Callable[[int, int], tuple[int, ...]]  # (height, width) -> one host frame's shape
    convert: Callable[..., torch.Tensor]  # (chunk, *, unit_range, mode, out) -> out
    preview: Callable[[np.ndarray, int], np.ndarray]  # (one host frame, step) -> small RGB picture


def _to_yuv420p(chunk: torch.Tensor, *, unit_range: bool = False, mode: str = "fast",
                out: torch.Tensor | None = None) -> torch.Tensor:
    return rgb_to_yuv420p(even_pad(to_uint8_frames(chunk, unit_range=unit_range, mode=mode)), out)


RGB24 = FrameLayout("rgb24", lambda height, width: (height, width, 3), to_uint8_frames,
                    lambda frame, every: frame[::every, ::every].copy())
YUV420P = FrameLayout("yuv420p", lambda height, width: yuv420p_shape(height + height % 2, width + width % 2),
                      _to_yuv420p, yuv420p_preview)


def layout_for(mode: str, pix_fmt: str, matrix: str = "BT.601") -> FrameLayout:
    """yuv420p planes from the GPU in fast mode when the file is yuv420p converted with BT.601; rgb24 otherwise.

    Exact mode promises stock ComfyUI's bytes, and stock converts rgb24 -> yuv420p with swscale inside the
    encoder; our GPU conversion matches swscale's luma bit for bit but its chroma only within ±1 (see `yuv`), so
    exact mode leaves that step to swscale. Other pixel formats (yuv444p, 10-bit, bgr0) also go through swscale, and
    so does another matrix (a host whose Save Video converts with BT.709): the device conversion is BT.601's.
    """
    if mode == "fast" and pix_fmt == "yuv420p" and matrix != "BT.601":
        log.warning("streamvae: fast mode converts to yuv420p on the GPU with BT.601 only; this file is %s, so the "
                    "CPU converts the frames (slower encoding, same decode)", matrix)
        return RGB24
    return YUV420P if mode == "fast" and pix_fmt == "yuv420p" else RGB24
