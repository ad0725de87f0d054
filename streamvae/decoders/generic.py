"""The fallback for any VAE we cannot step chunk by chunk: decode everything, then stream the result.

Memory is not flat on this path (the whole video exists once), but every VAE ComfyUI can load still gets a
streamed, encoded file with progress and cancel between chunks.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..errors import StreamVAEError, is_out_of_memory
from .base import ChunkDecoder

FRAMES_PER_CHUNK = 4


class GenericDecoder(ChunkDecoder):
    def __init__(self, vae: Any, comfy: bool):
        self.vae = vae
        self.comfy = comfy
        # ComfyUI's VAE.decode already applies process_output: frames in [0, 1], channels last.
        self.unit_range = comfy
        model = type(vae.first_stage_model if comfy else vae).__name__  # ComfyUI's VAE: name the model inside
        self.name = f"{model}: decoded whole, then streamed"
        self._cache_key = None
        self._decoded = None

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode once per latent; returns `[1, 3, T, H, W]` (a view, no copy)."""
        if self._cache_key is not latent:
            self._decoded = None  # let the previous video go before decoding the next
            try:
                out = self.vae.decode(latent)
            except (RuntimeError, ValueError, TypeError) as error:
                if is_out_of_memory(error):
                    raise  # callers (ComfyUI) recognise it and react: unload models, retry tiled
                # Typically an image VAE (or another family) given a video latent: conv2d on a 5-D tensor.
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise StreamVAEError(
                    f"{type(self.vae).__name__}.decode failed on the latent {tuple(latent.shape)}: {first_line}. "
                    "Is this the VAE of the model that made the latent? Video latents need a video VAE "
                    "(Wan 2.1 / Wan 2.2)") from error
            out = getattr(out, "sample", out)
            if isinstance(out, (tuple, list)):
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise StreamVAEError(f"{type(self.vae).__name__}.decode returned {type(out).__name__}, not a tensor")
            if self.comfy:  # [B, T, H, W, C] -> [B, C, T, H, W]
                out = out.reshape((1, -1) + tuple(out.shape[-3:])).movedim(-1, 1)
            if out.dim() != 5 or out.shape[1] != 3:
                raise StreamVAEError(
                    f"{type(self.vae).__name__}.decode gave shape {tuple(out.shape)}, not an RGB video")
            self._decoded, self._cache_key = out, latent
        return self._decoded

    def output_frames(self, latent: torch.Tensor) -> int:
        return self._decode(latent).shape[2]

    def output_size(self, latent: torch.Tensor) -> tuple[int, int]:
        out = self._decode(latent)
        return out.shape[3], out.shape[4]

    def chunks(self, latent: torch.Tensor) -> Iterator[torch.Tensor]:
        out = self._decode(latent)
        self.device, self.dtype = out.device, out.dtype
        try:
            for start in range(0, out.shape[2], FRAMES_PER_CHUNK):
                yield out[:, :, start:start + FRAMES_PER_CHUNK]
        finally:
            self._decoded = self._cache_key = None
