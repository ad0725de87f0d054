"""Step a Wan VAE decoder one latent frame at a time through its causal cache.

Both Wan VAEs, in ComfyUI and in diffusers, decode the same way inside their own `decode()`: a 1x1 conv over the
whole latent, then the 3-D decoder called once per latent frame with a feature cache (`feat_cache`, `feat_idx`)
that carries the last two time steps of every causal conv into the next call. Their `decode()` concatenates every
chunk on the GPU (quadratic copying, the whole video in VRAM). Driving the same loop ourselves yields each chunk as
soon as it exists, and the result is bit-identical to the model's own decode because the arithmetic is the same.

Upstream code moves; we detect what the module offers instead of pinning versions:
- `first_chunk=True` on the first call where the decoder's forward takes it (Wan 2.2 needs it; DupUp3D trims);
- the decoder may return a tensor (ComfyUI 0.3.64, diffusers) or a list of chunks (newer ComfyUI);
- newer ComfyUI's Wan 2.1 module (`count_cache_layers`) steps 1 latent frame, then 2 at a time.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..errors import StreamVAEError
from ..latents import frames_from_latent_frames
from .base import ChunkDecoder


@dataclass
class WanParts:
    """The pieces of a Wan VAE the chunk loop needs, whichever library built it."""

    family: str                     # "wan2.1" or "wan2.2", for messages and logs
    pre_conv: torch.nn.Module       # ComfyUI's conv2 / diffusers' post_quant_conv
    decoder: torch.nn.Module        # Decoder3d / WanDecoder3d
    latent_channels: int
    spatial_scale: int              # 8 (Wan 2.1) or 16 (Wan 2.2, decoder 8x and unpatchify 2x)
    unpatchify: Optional[Callable[[torch.Tensor], torch.Tensor]]
    latent_frames_per_step: int = 1  # after the first frame; 2 for newer ComfyUI Wan 2.1


def takes_first_chunk(decoder: torch.nn.Module) -> bool:
    return "first_chunk" in inspect.signature(decoder.forward).parameters


class WanChunkDecoder(ChunkDecoder):
    """The causal-cache loop shared by ComfyUI's and diffusers' Wan VAEs."""

    def __init__(self, parts: WanParts, device: torch.device, dtype: torch.dtype, name: str):
        self.parts = parts
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = name
        self._first_chunk_kwarg = takes_first_chunk(parts.decoder)

    def check_latent(self, latent: torch.Tensor) -> None:
        channels = latent.shape[1]
        if channels != self.parts.latent_channels:
            raise StreamVAEError(
                f"the latent has {channels} channels but this VAE ({self.parts.family}) takes "
                f"{self.parts.latent_channels}; connect the VAE that matches the model that made the latent "
                "(Wan 2.2 5B TI2V uses wan2.2_vae with 48 channels; Wan 2.1 and Wan 2.2 14B use wan_2.1_vae "
                "with 16)")

    def output_frames(self, latent: torch.Tensor) -> int:
        return frames_from_latent_frames(latent.shape[2])

    def output_size(self, latent: torch.Tensor) -> tuple[int, int]:
        scale = self.parts.spatial_scale
        return latent.shape[3] * scale, latent.shape[4] * scale

    def _latent_steps(self, frames: int) -> Iterator[slice]:
        yield slice(0, 1)
        step = self.parts.latent_frames_per_step
        for start in range(1, frames, step):
            yield slice(start, min(start + step, frames))

    def chunks(self, latent: torch.Tensor) -> Iterator[torch.Tensor]:
        parts = self.parts
        x = parts.pre_conv(latent.to(device=self.device, dtype=self.dtype))
        # One slot per cache user is what the models allocate; a list as long as the module count is always
        # enough whatever a future version counts, and a list of Nones costs nothing.
        feat_cache = [None] * len(list(parts.decoder.modules()))
        for step_index, frames in enumerate(self._latent_steps(x.shape[2])):
            kwargs = {"first_chunk": True} if (step_index == 0 and self._first_chunk_kwarg) else {}
            out = parts.decoder(x[:, :, frames], feat_cache=feat_cache, feat_idx=[0], **kwargs)
            for chunk in (out if isinstance(out, (list, tuple)) else [out]):
                yield parts.unpatchify(chunk) if parts.unpatchify else chunk
