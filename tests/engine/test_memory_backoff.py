"""Out of GPU memory mid-decode: the chunk loop goes on in spatial tiles instead of failing.

A CPU can't run out of GPU memory, so these tests raise the allocator's own exception (torch.OutOfMemoryError)
from the chunk decoder's step whenever it is handed more latent pixels than a pretend GPU could hold, for the
host's modules (exact mode) and our own decoder (fast mode) alike. The real
thing, a capped CUDA allocator, runs on the device in test_memory_cuda.py.
"""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest
import torch

import streamvae
from streamvae.decoders import FastWanChunkDecoder, HostWanChunkDecoder, decoder_for
from streamvae.decoders.tiling import MIN_SHARE, TileGrid
from streamvae.errors import StreamVAEError, is_out_of_memory
from support.tiny_vaes import cpu_decoder_of_comfy_model, latent_for, tiny_diffusers_vae

LATENT_SIZE = 16  # latent pixels a side: room for 2x2 tiles of MIN_SHARE


class PretendGPU:
    """Raises torch.OutOfMemoryError when a chunk decoder of `decoder_class` (or the class of the decoder given)
    is handed more than `max_pixels` latent pixels per step, once `from_frame` latent frames have been delivered
    (the consumer calls chunk_done() after each)."""

    def __init__(self, decoder, max_pixels: int, from_frame: int = 0,
                 error=lambda: torch.OutOfMemoryError("CUDA out of memory (pretend GPU)")):
        self.max_pixels, self.from_frame, self.frame, self.refusals = max_pixels, from_frame, 0, 0
        self.decoder_class = decoder if isinstance(decoder, type) else type(decoder)
        self.original = self.decoder_class._decode
        pretend = self

        def decode(decoder_self, x, cache, first):
            if pretend.frame >= pretend.from_frame and x.shape[-2] * x.shape[-1] > pretend.max_pixels:
                pretend.refusals += 1
                raise error()
            return pretend.original(decoder_self, x, cache, first)

        self.decoder_class._decode = decode

    def chunk_done(self):
        self.frame += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.decoder_class._decode = self.original


def decode(decoder, latent, gpu: PretendGPU | None = None) -> torch.Tensor:
    chunks = []
    with torch.inference_mode():
        for chunk in decoder.chunks(latent):
            chunks.append(chunk.float())
            if gpu:
                gpu.chunk_done()
    return torch.cat(chunks, dim=2)


def per_tile_reference(vae, latent, grid: TileGrid, mode: str = "exact") -> torch.Tensor:
    """Each tile decoded alone from the start (the untiled chunk loop, which equals the model's own decode
    without its final clamp), cross-faded with the tiles' weights."""
    scale = vae.config.scale_factor_spatial
    height, width = latent.shape[-2:]
    out = None
    for tile in grid.tiles(height, width):
        tile_latent = tile.crop(latent)
        pixels = decode(decoder_for(vae, tile_latent, mode), tile_latent)
        if out is None:
            out = torch.zeros(*pixels.shape[:-2], height * scale, width * scale)
        tile.crop(out, scale).add_(pixels * tile.blend_weights(scale, out.device))
    return out


MODES = ["exact", "fast"]  # the host's modules, and our own decoder


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arch", ["wan2.1", "wan2.2"])
def test_out_of_memory_from_the_first_chunk_decodes_in_tiles(arch, mode, caplog):
    vae = tiny_diffusers_vae(arch)
    latent = latent_for(vae, 3, LATENT_SIZE, LATENT_SIZE)
    decoder = decoder_for(vae, latent, mode)
    # Whole frames (256 latent pixels) don't fit; two rows of tiles (12x16 = 192) do.
    with caplog.at_level(logging.WARNING, logger="streamvae"), PretendGPU(decoder, max_pixels=200) as gpu:
        tiled = decode(decoder, latent, gpu)
    assert gpu.refusals == 1
    assert "out of GPU memory at latent frame 0 of 3; going on in 2x1 spatial tiles" in caplog.text
    expected = per_tile_reference(vae, latent, TileGrid(2, 1), mode)
    torch.testing.assert_close(tiled, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arch", ["wan2.1", "wan2.2"])
def test_out_of_memory_mid_video_keeps_the_frames_before_and_goes_on_in_tiles(arch, mode, caplog):
    vae = tiny_diffusers_vae(arch)
    latent = latent_for(vae, 4, LATENT_SIZE, LATENT_SIZE)
    decoder = decoder_for(vae, latent, mode)
    whole = decode(decoder, latent)
    # From latent frame 2 on only 2x2 tiles fit (12x12 = 144 pixels): 2x1 tiles are refused too, while they
    # replay the frames already delivered.
    with caplog.at_level(logging.WARNING, logger="streamvae"), \
            PretendGPU(decoder, max_pixels=150, from_frame=2) as gpu:
        switched = decode(decoder, latent, gpu)
    assert gpu.refusals == 2
    assert "going on in 2x1 spatial tiles" in caplog.text and "going on in 2x2 spatial tiles" in caplog.text
    frames_before = 1 + 4  # latent frames 0 and 1, delivered before memory ran out
    # Nothing delivered is delivered again; what follows is exactly the video tiles decoded from the start give.
    assert switched.shape == whole.shape
    assert torch.equal(switched[:, :, :frames_before], whole[:, :, :frames_before])
    tiled_throughout = per_tile_reference(vae, latent, TileGrid(2, 2), mode)
    torch.testing.assert_close(switched[:, :, frames_before:], tiled_throughout[:, :, frames_before:],
                               atol=1e-5, rtol=1e-5)


ACCELERATOR_ERROR = getattr(torch, "AcceleratorError", None)


@pytest.mark.skipif(ACCELERATOR_ERROR is None, reason="this PyTorch has no AcceleratorError")
@pytest.mark.parametrize("mode", MODES)
def test_an_allocation_failure_reported_as_accelerator_error_backs_off_too(mode, caplog):
    """Newer PyTorch reports some failed CUDA allocations as AcceleratorError, not OutOfMemoryError."""
    vae = tiny_diffusers_vae("wan2.1")
    latent = latent_for(vae, 3, LATENT_SIZE, LATENT_SIZE)
    decoder = decoder_for(vae, latent, mode)
    with caplog.at_level(logging.WARNING, logger="streamvae"), \
            PretendGPU(decoder, max_pixels=200, error=lambda: ACCELERATOR_ERROR("CUDA error: out of memory")) as gpu:
        decode(decoder, latent, gpu)
    assert gpu.refusals == 1 and "going on in 2x1 spatial tiles" in caplog.text


def test_other_failures_are_not_taken_for_out_of_memory():
    vae = tiny_diffusers_vae("wan2.1")
    latent = latent_for(vae, 3, LATENT_SIZE, LATENT_SIZE)
    decoder = decoder_for(vae, latent)
    with PretendGPU(decoder, max_pixels=200, error=lambda: RuntimeError("cuDNN error: bad param")) as gpu, \
            pytest.raises(RuntimeError, match="bad param"):
        decode(decoder, latent, gpu)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    if ACCELERATOR_ERROR is not None:
        assert not is_out_of_memory(ACCELERATOR_ERROR("CUDA error: an illegal memory access was encountered"))


def test_comfyui_wan_vae_backs_off_too(comfy_wan_model):
    decoder = cpu_decoder_of_comfy_model(comfy_wan_model)
    latent = torch.randn(1, decoder.latent_channels, 3, LATENT_SIZE, LATENT_SIZE,
                         generator=torch.Generator().manual_seed(1))
    whole = decode(decoder, latent)
    with PretendGPU(decoder, max_pixels=200, from_frame=1) as gpu:
        switched = decode(decoder, latent, gpu)
    with PretendGPU(decoder, max_pixels=200) as gpu:
        tiled_throughout = decode(decoder, latent, gpu)
    assert tiled_throughout.shape == switched.shape == whole.shape
    assert torch.equal(switched[:, :, :1], whole[:, :, :1])
    torch.testing.assert_close(switched[:, :, 1:], tiled_throughout[:, :, 1:], atol=1e-5, rtol=1e-5)


def test_out_of_memory_even_in_the_smallest_tiles_is_a_clear_error(wan21_vae):
    latent = latent_for(wan21_vae, 2, LATENT_SIZE, LATENT_SIZE)
    decoder = decoder_for(wan21_vae, latent)
    with PretendGPU(decoder, max_pixels=10), pytest.raises(StreamVAEError) as error:
        decode(decoder, latent)
    message = str(error.value)
    assert "out of GPU memory decoding latent frame 0" in message and "even in 2x2 spatial tiles" in message
    assert "free GPU memory" in message or "smaller video" in message


def test_out_of_memory_on_a_latent_too_small_for_tiles_says_so(wan21_vae):
    latent = latent_for(wan21_vae, 1, MIN_SHARE, MIN_SHARE)
    with PretendGPU(HostWanChunkDecoder, max_pixels=10), pytest.raises(StreamVAEError, match="too small to cut"):
        decode(decoder_for(wan21_vae, latent), latent)


@pytest.mark.parametrize("mode", MODES)
def test_a_file_written_through_a_back_off_is_whole(wan21_vae, tmp_path, no_thread_left, mode):
    latent = latent_for(wan21_vae, 4, LATENT_SIZE, LATENT_SIZE)
    path = tmp_path / "backed_off.mkv"
    decoder_class = FastWanChunkDecoder if mode == "fast" else HostWanChunkDecoder
    with PretendGPU(decoder_class, max_pixels=200, from_frame=2) as gpu:
        stats = streamvae.decode_to_video(wan21_vae, latent, path, fps=16, container="mkv", codec="ffv1",
                                          pix_fmt="bgr0", mode=mode, progress=lambda progress: gpu.chunk_done())
    assert gpu.refusals == 1
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert stats.frames == len(frames) == 13
    assert np.stack(frames).shape == (13, 128, 128, 3)
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize("grid", [TileGrid(1, 2), TileGrid(2, 2), TileGrid(2, 3), TileGrid(3, 1)])
def test_tile_blend_weights_sum_to_one_everywhere(grid):
    height, width, scale = 3 * MIN_SHARE + 1, 3 * MIN_SHARE + 2, 8
    total = torch.zeros(height * scale, width * scale)
    for tile in grid.tiles(height, width):
        tile.crop(total, scale).add_(tile.blend_weights(scale, total.device))
    torch.testing.assert_close(total, torch.ones_like(total))


def test_finer_grids_cut_the_longer_tiles_and_stop_at_the_smallest_share():
    grid, grids = TileGrid(), []
    while (grid := grid.finer(45, 80)) is not None:
        grids.append(str(grid))
    assert grids == ["1x2", "2x2", "2x4", "4x4", "4x8"]  # 45 / 8 rows would give tiles under MIN_SHARE
