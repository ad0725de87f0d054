"""Pixel chunks from the decoder -> uint8 frames, on the decoder's device, before anything is copied."""

from __future__ import annotations

import torch

MODES = ("exact", "fast")


def to_uint8_frames(chunk: torch.Tensor, *, unit_range: bool = False, mode: str = "exact",
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """`[1, 3, t, H, W]` pixels -> `[t, H, W, 3]` uint8, written into `out` when given.

    exact: the bytes stock ComfyUI writes. VAE Decode computes `clamp((x + 1) / 2, 0, 1)` in float32 and Save
    Video then `(x * 255).clamp(0, 255).byte()`, which truncates. The same float32 operations in the same order
    give the same bytes on any device (doing it in bf16 instead differs in ~9.5% of bytes; rounding in ~45%).
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
