"""The IMAGE the streaming nodes build is VAE Decode's own: the same arithmetic in the host's intermediate dtype."""

import pytest
import torch

from streamvae.api import source_from_decoder
from streamvae.decoders import decoder_for

from support.pack_modules import import_pack_module
from support.tiny_vaes import latent_for, tiny_diffusers_vae

image_frames = import_pack_module("comfy_nodes.image_frames")


def stock_images(pixels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ComfyUI's VAE.decode: the decoder's output moved to the intermediate dtype, then process_output in place."""
    out = pixels[0].permute(1, 2, 3, 0).to(dtype=dtype, copy=True)
    return out.add_(1.0).div_(2.0).clamp_(0.0, 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_chunk_converts_as_vae_decode_does(dtype):
    pixels = torch.randn(1, 3, 4, 8, 10, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16) * 1.2
    ours = image_frames.unit_float_frames(pixels, unit_range=False, dtype=dtype)
    assert ours.dtype == dtype and torch.equal(ours, stock_images(pixels, dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_collected_images_are_the_whole_decode_in_the_intermediate_dtype(dtype):
    vae = tiny_diffusers_vae("wan2.1")
    latent = latent_for(vae, latent_frames=3)
    with torch.no_grad():
        stock = stock_images(vae.decode(latent).sample, dtype)
    images = image_frames.collect_images(lambda _: source_from_decoder(decoder_for(vae, latent), latent), 1,
                                         torch.device("cpu"), dtype=dtype)
    assert images.dtype == dtype and torch.equal(images, stock)
