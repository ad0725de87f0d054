"""Chunked decode through the causal cache equals each model's own decode, bit for bit (fp32, CPU)."""

import logging

import pytest
import torch

from streamvae import StreamVAEError, decoder_for
from streamvae.decoders import GenericDecoder, WanChunkDecoder

from support.tiny_vaes import cpu_decoder_of_comfy_model, latent_for


def _decode_chunks(decoder, latent):
    with torch.inference_mode():
        return list(decoder.chunks(latent))


def test_diffusers_chunks_equal_model_decode(diffusers_vae):
    latent = latent_for(diffusers_vae, latent_frames=4)
    decoder = decoder_for(diffusers_vae, latent)
    assert isinstance(decoder, WanChunkDecoder)
    chunks = _decode_chunks(decoder, latent)
    with torch.no_grad():
        reference = diffusers_vae.decode(latent).sample
    assert [c.shape[2] for c in chunks] == [1, 4, 4, 4]
    # diffusers clamps its output to [-1, 1]; the uint8 conversion clamps the same way.
    assert torch.equal(torch.cat(chunks, 2).clamp(-1, 1), reference)
    assert decoder.output_frames(latent) == reference.shape[2] == 13
    assert decoder.output_size(latent) == tuple(reference.shape[3:])


def test_comfy_chunks_equal_model_decode(comfy_wan_model):
    latent = torch.randn(1, comfy_wan_model.z_dim, 4, 4, 6, generator=torch.Generator().manual_seed(1))
    decoder = cpu_decoder_of_comfy_model(comfy_wan_model)
    chunks = _decode_chunks(decoder, latent)
    with torch.no_grad():
        reference = comfy_wan_model.decode(latent)
    # Older releases step 1 latent frame per call (4 pixel frames); newer ones step 2 and return 2-frame pieces.
    assert [c.shape[2] for c in chunks] in ([1, 4, 4, 4], [1, 2, 2, 2, 2, 2, 2])
    assert torch.equal(torch.cat(chunks, 2), reference)
    assert decoder.output_size(latent) == tuple(reference.shape[3:])


def test_other_vaes_built_from_comfys_wan22_class_are_not_stepped_as_wan22(comfy):
    """Newer ComfyUI builds Qwen-Image 2.1's VAE from vae2_2.WanVAE: no 2x2 patches, RGBA out, temporal kernel 1.
    Unpatchified as Wan 2.2 it would come out garbled; it must go to the whole decode instead."""
    from comfy.ldm.wan.vae import CausalConv3d
    from comfy.ldm.wan.vae2_2 import WanVAE

    from streamvae.decoders.comfyui import wan_parts_from_comfy
    from support.tiny_vaes import tiny_comfy_wan_model

    model = tiny_comfy_wan_model("wan2.2")
    assert wan_parts_from_comfy(model).family == "wan2.2"
    assert isinstance(model, WanVAE)
    model.patch_size = 1  # what the newer class stores for this layout
    assert wan_parts_from_comfy(model) is None
    del model.patch_size
    channels = model.decoder.head[-1].weight.shape[1]
    model.decoder.head[-1] = CausalConv3d(channels, 4, (1, 3, 3), padding=(0, 1, 1))  # RGBA, temporal kernel 1
    assert wan_parts_from_comfy(model) is None


def test_comfy_vae_wrapper_uses_model_management(comfy):
    """ComfyUI's own VAE object (Wan 2.1 layout, full width): loaded through ComfyUI, decoded in chunks."""
    from benchmarks.synthetic import random_comfy_wan_vae

    vae = random_comfy_wan_vae("wan2.1")
    latent = torch.randn(1, 16, 2, 2, 3, generator=torch.Generator().manual_seed(2))
    decoder = decoder_for(vae, latent)
    assert isinstance(decoder, WanChunkDecoder) and decoder.family == "wan2.1"
    stock = vae.decode(latent)  # [1, T, H, W, 3] in [0, 1], on the host
    chunks = _decode_chunks(decoder, latent)
    ours = torch.clamp((torch.cat(chunks, 2).float() + 1.0) / 2.0, 0.0, 1.0).movedim(1, -1).cpu()
    assert torch.equal(ours, stock)


def test_channel_mismatch_names_both_numbers(wan21_vae):
    latent = torch.randn(1, 48, 2, 4, 4)
    with pytest.raises(StreamVAEError, match=r"48 channels.*takes 16"):
        decoder_for(wan21_vae, latent)


class OpaqueVAE:
    """Any VAE we don't know: a `.decode()` that returns the video at once."""

    def decode(self, latent):
        frames = latent.shape[2]
        return torch.linspace(-1, 1, 3 * frames * 8 * 8).reshape(1, 3, frames, 8, 8)


def test_unknown_vae_falls_back_to_generic(caplog):
    caplog.set_level(logging.INFO, logger="streamvae")
    latent = torch.randn(1, 4, 6, 2, 2)
    decoder = decoder_for(OpaqueVAE(), latent)
    assert isinstance(decoder, GenericDecoder)
    assert "decoding it whole" in caplog.text
    chunks = _decode_chunks(decoder, latent)
    assert [c.shape[2] for c in chunks] == [4, 2]
    assert torch.equal(torch.cat(chunks, 2), OpaqueVAE().decode(latent))


def test_object_without_decode_is_refused():
    with pytest.raises(StreamVAEError, match="where a VAE was expected"):
        decoder_for(object(), torch.randn(1, 16, 2, 2, 2))
