"""Step a Wan VAE decoder one latent frame at a time through its causal cache.

Both Wan VAEs, in ComfyUI and in diffusers, decode the same way inside their own `decode()`: a 1x1 conv over the
whole latent, then the 3-D decoder called once per latent frame with a feature cache (`feat_cache`, `feat_idx`)
that carries the last two time steps of every causal conv into the next call. Their `decode()` concatenates every
chunk on the GPU (quadratic copying, the whole video in VRAM). Driving the same loop ourselves yields each chunk as
soon as it exists. The loop here is shared by exact mode, which drives the host's own modules (bit-identical to
the model's own decode, because the arithmetic is the same), and fast mode, which steps our own decoder
(streamvae/wan_decoder, through fast_wan.py).

The host's code moves; we detect what its module offers instead of pinning versions:
- `first_chunk=True` on the first call where the decoder's forward takes it (Wan 2.2 needs it; DupUp3D trims);
- the decoder may return a tensor (ComfyUI 0.3.64, diffusers) or a list of chunks (newer ComfyUI);
- newer ComfyUI's Wan 2.1 module (`count_cache_layers`) steps 1 latent frame, then 2 at a time.

A step that runs out of GPU memory is not the end: the loop goes on in spatial tiles (tiling.py), each with its
own causal cache, and never delivers a frame twice.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..errors import StreamVAEError, is_out_of_memory
from ..latents import frames_from_latent_frames
from .base import ChunkDecoder
from .tiling import Tile, TileGrid

log = logging.getLogger("streamvae")


@dataclass
class WanParts:
    """The pieces of a host's Wan VAE module the chunk loop drives, whichever library built it."""

    family: str                     # "wan2.1" or "wan2.2", for messages and logs
    pre_conv: torch.nn.Module       # ComfyUI's conv2 / diffusers' post_quant_conv
    decoder: torch.nn.Module        # Decoder3d / WanDecoder3d
    latent_channels: int
    spatial_scale: int              # 8 (Wan 2.1) or 16 (Wan 2.2, decoder 8x and unpatchify 2x)
    unpatchify: Optional[Callable[[torch.Tensor], torch.Tensor]]
    latent_frames_per_step: int = 1  # after the first frame; 2 for newer ComfyUI Wan 2.1


def host_name(model: torch.nn.Module) -> str:
    """What DecodeStats.decoder says for the host's modules: "host comfy.ldm.wan.vae.WanVAE (exact)"."""
    return f"host {type(model).__module__}.{type(model).__name__} (exact)"


def takes_first_chunk(decoder: torch.nn.Module) -> bool:
    return "first_chunk" in inspect.signature(decoder.forward).parameters


class WanChunkDecoder(ChunkDecoder, ABC):
    """The causal-cache loop (and its out-of-memory back-off to tiles) of every Wan decoder: the host's modules
    (HostWanChunkDecoder, exact mode) or our own (streamvae_wan.OwnWanChunkDecoder, fast mode)."""

    family: str
    latent_channels: int
    spatial_scale: int
    latent_frames_per_step: int = 1

    @abstractmethod
    def _prepare(self, latent: torch.Tensor) -> torch.Tensor:
        """The whole latent through the 1x1x1 conv before the decoder, on the decoder's device and dtype."""

    @abstractmethod
    def _new_cache(self) -> object:
        """An empty causal cache for one stream (the whole frame, or one spatial tile)."""

    @abstractmethod
    def _decode(self, x: torch.Tensor, cache: object, first: bool) -> list[torch.Tensor]:
        """Pixel chunks `[B, 3, t, H, W]` of the latent frames `x`, carrying `cache` on."""

    def check_latent(self, latent: torch.Tensor) -> None:
        channels = latent.shape[1]
        if channels != self.latent_channels:
            raise StreamVAEError(
                f"the latent has {channels} channels but this VAE ({self.family}) takes "
                f"{self.latent_channels}; connect the VAE that matches the model that made the latent "
                "(Wan 2.2 5B TI2V uses wan2.2_vae with 48 channels; Wan 2.1 and Wan 2.2 14B use wan_2.1_vae "
                "with 16)")

    def output_frames(self, latent: torch.Tensor) -> int:
        return frames_from_latent_frames(latent.shape[2])

    def output_size(self, latent: torch.Tensor) -> tuple[int, int]:
        scale = self.spatial_scale
        return latent.shape[3] * scale, latent.shape[4] * scale

    def _latent_steps(self, frames: int) -> Iterator[slice]:
        yield slice(0, 1)
        step = self.latent_frames_per_step
        for start in range(1, frames, step):
            yield slice(start, min(start + step, frames))

    def chunks(self, latent: torch.Tensor) -> Iterator[torch.Tensor]:
        x = self._prepare(latent)
        grid, delivered = TileGrid(), 0  # latent frames whose pixels have gone out
        while True:
            try:
                for frames, pixels in self._steps(x, grid):
                    if frames.stop <= delivered:
                        continue  # replayed after a back-off: only rebuilding the tiles' caches
                    delivered = frames.stop
                    yield from pixels
                return
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
            # Outside the except block, so the exception's frames (holding the failed step's tensors and the
            # old cache) are gone before the tiles allocate.
            grid = self._finer_grid(grid, x, delivered)

    def _steps(self, x: torch.Tensor, grid: TileGrid) -> Iterator[tuple[slice, list[torch.Tensor]]]:
        """Decode every latent frame in `grid`'s tiles, each tile with a causal cache of its own."""
        tiles = grid.tiles(*x.shape[-2:]) if grid.count > 1 else []
        caches = [self._new_cache() for _ in range(len(tiles) or 1)]
        weights = [tile.blend_weights(self.spatial_scale, x.device) for tile in tiles]
        for step_index, frames in enumerate(self._latent_steps(x.shape[2])):
            first = step_index == 0
            if not tiles:
                yield frames, self._decode(x[:, :, frames], caches[0], first)
            else:
                yield frames, [self._blend(x[:, :, frames], tiles, caches, weights, first)]

    def _blend(self, x: torch.Tensor, tiles: list[Tile], caches: list, weights: list[torch.Tensor],
               first: bool) -> torch.Tensor:
        scale = self.spatial_scale
        blended = None
        for tile, cache, weight in zip(tiles, caches, weights):
            pixels = torch.cat(self._decode(tile.crop(x), cache, first), dim=2)
            if blended is None:
                blended = pixels.new_zeros((*pixels.shape[:-2], x.shape[-2] * scale, x.shape[-1] * scale),
                                           dtype=torch.float32)
            tile.crop(blended, scale).add_(pixels.float() * weight)
        return blended

    def _finer_grid(self, grid: TileGrid, x: torch.Tensor, delivered: int) -> TileGrid:
        """After running out of memory: twice as many spatial tiles, or a clear error when tiles can't shrink.

        The chunk is already the smallest step the causal cache allows (one latent frame), so tiles are what
        is left to shrink. They can't take over the whole frame's cache (it holds what every layer saw of the
        whole frame, and keeping a copy to retry from would cost as much memory again), so the tiles replay the
        latent frames already delivered to build their own, then go on. ComfyUI's own VAE Decode also falls back
        to tiles on out-of-memory.
        """
        height, width = x.shape[-2:]
        finer = grid.finer(height, width)
        if finer is None:
            tried = f"even in {grid} spatial tiles" if grid.count > 1 else "and it is too small to cut into tiles"
            raise StreamVAEError(
                f"out of GPU memory decoding latent frame {delivered} of this {height}x{width} latent, {tried}; "
                "free GPU memory (unload other models, close other programs on this GPU) or decode a smaller video")
        log.warning("streamvae: out of GPU memory at latent frame %d of %d; going on in %s spatial tiles "
                    "(slower; %d latent frames replayed to rebuild the cache; tile seams cross-faded)",
                    delivered, x.shape[2], finer, delivered)
        return finer


class HostWanChunkDecoder(WanChunkDecoder):
    """Drives the host's own Wan modules (ComfyUI's or diffusers'), untouched: exact mode, the host's arithmetic."""

    def __init__(self, parts: WanParts, device: torch.device, dtype: torch.dtype, name: str):
        self.parts = parts
        self.family, self.latent_channels = parts.family, parts.latent_channels
        self.spatial_scale, self.latent_frames_per_step = parts.spatial_scale, parts.latent_frames_per_step
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = name
        self._first_chunk_kwarg = takes_first_chunk(parts.decoder)

    # The host's modules run under inference mode, as ComfyUI's executor runs them, whatever thread decodes: weights
    # ComfyUI loaded under inference mode are inference tensors, which a module called with grad enabled refuses
    # ("Inference tensors do not track version counter"). The arithmetic is the same either way.
    @torch.inference_mode()
    def _prepare(self, latent: torch.Tensor) -> torch.Tensor:
        return self.parts.pre_conv(latent.to(device=self.device, dtype=self.dtype))

    def _new_cache(self) -> list:
        # One slot per cache user is what the models allocate; a list as long as the module count is always
        # enough whatever a future version counts, and a list of Nones costs nothing.
        return [None] * len(list(self.parts.decoder.modules()))

    @torch.inference_mode()
    def _decode(self, x: torch.Tensor, cache: list, first: bool) -> list[torch.Tensor]:
        kwargs = {"first_chunk": True} if (first and self._first_chunk_kwarg) else {}
        out = self.parts.decoder(x, feat_cache=cache, feat_idx=[0], **kwargs)
        chunks = list(out) if isinstance(out, (list, tuple)) else [out]
        return [self.parts.unpatchify(chunk) for chunk in chunks] if self.parts.unpatchify else chunks
