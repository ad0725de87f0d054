"""The Wan decoder of our own: a latent in, pixel frames out, one latent frame per step through causal histories.

Steps follow the models' chunk boundaries: the first latent frame gives 1 pixel frame, each later one 4 (after
two temporal upsamplers). Its weights are its own (converted once, see cache.py); every computation runs under
`torch.inference_mode()`, so it works from any thread, inside or outside the caller's inference mode, with
weights that a host loaded as inference tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .layers import CausalConv, Head
from .ops import Ops


@dataclass(frozen=True)
class Architecture:
    """What the weights say about the VAE."""

    family: str           # "wan2.1" or "wan2.2"
    latent_channels: int  # 16 or 48
    spatial_scale: int    # pixels per latent pixel: 8, or 16 with Wan 2.2's 2x2 patches
    patch_size: int       # 1, or 2 for Wan 2.2 (the head makes 12 channels: 3 colours x 2 x 2)


class WanDecoder:
    """`prepare(latent)` once, then `step(x[:, :, i:i+1], state, first=(i == 0))` per latent frame, in order,
    with one `new_state()` per stream (a spatial tile is a stream of its own)."""

    def __init__(self, architecture: Architecture, pre_conv: CausalConv, conv_in: CausalConv, layers: list,
                 head: Head, slots: int, ops: Ops, device: torch.device, dtype: torch.dtype):
        self.architecture = architecture
        self.pre_conv, self.conv_in, self.layers, self.head = pre_conv, conv_in, layers, head
        self.slots, self.ops, self.device, self.dtype = slots, ops, device, dtype

    @property
    def name(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float", "fp")
        return f"streamvae-{self.architecture.family} {dtype} ({self.ops.describe(self.device)})"

    def new_state(self) -> list[Optional[torch.Tensor]]:
        return [None] * self.slots

    @torch.inference_mode()
    def prepare(self, latent: torch.Tensor) -> torch.Tensor:
        """The latent on the decoder's device and dtype, through the 1x1x1 conv that precedes the decoder."""
        x = latent.to(device=self.device, dtype=self.dtype).contiguous(memory_format=self.ops.format_3d)
        return self.pre_conv(x, [])

    @torch.inference_mode()
    def step(self, x: torch.Tensor, state: list, first: bool) -> torch.Tensor:
        """Pixels `[B, 3, t, H, W]` (in about [-1, 1], unclamped) of the latent frames `x` (prepared)."""
        x = self.conv_in(x, state)
        for layer in self.layers:
            x = layer(x, state, first)
        return _unpatchify(self.head(x, state, first), self.architecture.patch_size)


def _unpatchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """`[b, c*p*p, t, h, w]` -> `[b, c, t, h*p, w*p]`, channel (c, r, q) to pixel (h*p + q, w*p + r) as the models'
    `rearrange("b (c r q) f h w -> b c f (h q) (w r)")`."""
    if patch == 1:
        return x
    b, channels, t, h, w = x.shape
    x = x.reshape(b, channels // (patch * patch), patch, patch, t, h, w)  # c, r, q
    return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, channels // (patch * patch), t, h * patch, w * patch)

