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
import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..errors import StreamVAEError
from ..latents import frames_from_latent_frames
from .base import ChunkDecoder
from .tiling import Tile, TileGrid, assemble_cache, crop_cache

log = logging.getLogger("streamvae")


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
        x = self.parts.pre_conv(latent.to(device=self.device, dtype=self.dtype))
        # One slot per cache user is what the models allocate; a list as long as the module count is always
        # enough whatever a future version counts, and a list of Nones costs nothing.
        layout = _Layout.untiled([None] * len(list(self.parts.decoder.modules())))
        for step_index, frames in enumerate(self._latent_steps(x.shape[2])):
            kwargs = {"first_chunk": True} if (step_index == 0 and self._first_chunk_kwarg) else {}
            while True:
                # The models replace cache entries rather than writing into them, so a shallow copy taken
                # before the step is the cache as it was if the step fails part-way.
                before = layout.snapshot()
                try:
                    pixels = self._step(layout, x[:, :, frames], kwargs)
                    break
                except torch.OutOfMemoryError:
                    pass
                # Outside the except block, so the exception's frames (holding the failed step's tensors)
                # are gone before the retry allocates again.
                layout = self._finer_layout(layout.restored(before), x, frames.start)
            yield from pixels

    def _step(self, layout: "_Layout", x: torch.Tensor, kwargs: dict) -> list[torch.Tensor]:
        if not layout.tiles:
            return [self._to_pixels(chunk) for chunk in self._decode(x, layout.caches[0], kwargs)]
        scale = self.parts.spatial_scale
        blended = None
        for tile, cache, weights in zip(layout.tiles, layout.caches, layout.weights):
            pixels = self._to_pixels(torch.cat(self._decode(tile.crop(x), cache, kwargs), dim=2))
            if blended is None:
                blended = pixels.new_zeros((*pixels.shape[:-2], x.shape[-2] * scale, x.shape[-1] * scale),
                                           dtype=torch.float32)
            tile.crop(blended, scale).add_(pixels.float() * weights)
        return [blended]

    def _decode(self, x: torch.Tensor, cache: list, kwargs: dict) -> list[torch.Tensor]:
        out = self.parts.decoder(x, feat_cache=cache, feat_idx=[0], **kwargs)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _to_pixels(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.parts.unpatchify(chunk) if self.parts.unpatchify else chunk

    def _finer_layout(self, layout: "_Layout", x: torch.Tensor, latent_frame: int) -> "_Layout":
        """After running out of memory: the same decode in twice as many spatial tiles, its cache cut to match.

        The chunk is already the smallest step the causal cache allows (one latent frame), so tiles are what
        is left to shrink. ComfyUI's own VAE Decode falls back to tiles on out-of-memory too.
        """
        height, width = x.shape[-2:]
        grid = layout.grid.finer(height, width)
        if grid is None:
            raise StreamVAEError(
                f"out of GPU memory decoding latent frame {latent_frame} even in {layout.grid} spatial tiles of "
                f"this {height}x{width} latent; free GPU memory (unload other models, close other programs on "
                "this GPU) or decode a smaller video")
        log.warning("streamvae: out of GPU memory at latent frame %d of %d; going on in %s spatial tiles "
                    "(slower; tile seams cross-faded)", latent_frame, x.shape[2], grid)
        whole = layout.caches[0] if not layout.tiles else assemble_cache(layout.tiles, layout.caches, height)
        return _Layout.tiled(grid, whole, height, width, self.parts.spatial_scale, x.device)


@dataclass
class _Layout:
    """How the chunk loop decodes now: the whole frame (no tiles, one cache) or a grid, a cache per tile."""

    grid: TileGrid
    tiles: list[Tile]
    caches: list[list]
    weights: list[torch.Tensor]

    @classmethod
    def untiled(cls, cache: list) -> "_Layout":
        return cls(TileGrid(), [], [cache], [])

    @classmethod
    def tiled(cls, grid: TileGrid, whole_cache: list, height: int, width: int, scale: int,
              device: torch.device) -> "_Layout":
        tiles = grid.tiles(height, width)
        return cls(grid, tiles, [crop_cache(whole_cache, tile, height) for tile in tiles],
                   [tile.blend_weights(scale, device) for tile in tiles])

    def snapshot(self) -> list[list]:
        return [list(cache) for cache in self.caches]

    def restored(self, snapshot: list[list]) -> "_Layout":
        for cache, saved in zip(self.caches, snapshot):
            cache[:] = saved
        return self
