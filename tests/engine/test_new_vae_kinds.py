"""Video VAEs that ComfyUI loads since v0.8.0, through ComfyUI's own loader (comfy.sd.VAE) with random weights:

- a light Wan 2.1 VAE (the same WanVAE, narrower; ComfyUI reads its width from the weights): streamed chunk by
  chunk like the full one, its frames those of ComfyUI's own decode;
- TAEHV (taew2_1 / lighttaew2_1, a tiny Wan 2.1 decoder of another design): decoded whole, then streamed, and
  said so in the log and in DecodeStats.decoder.

On releases without them (v0.3.64 builds every Wan 2.1 VAE 96 wide and knows no TAEHV) the tests skip.
"""

import logging

import numpy as np
import pytest
import torch

from streamvae import decode_to_video, decoder_for
from streamvae.decoders import GenericDecoder, WanChunkDecoder
from benchmarks.synthetic import COMFY_WAN, fill_random_weights_

from support.videos import read_video


def comfy_vae_from(comfy, model: torch.nn.Module):
    """ComfyUI's VAE object for `model`'s weights, as VAELoader would load a file holding them."""
    weights = fill_random_weights_(model.eval()).state_dict()
    try:
        vae = comfy.sd.VAE(sd=weights)
    except (RuntimeError, KeyError) as error:  # a release that builds another model for these keys
        pytest.skip(f"this ComfyUI cannot load a {type(model).__name__} of this shape ({error})"[:300])
    loaded = vae.first_stage_model.state_dict()
    if any(loaded[key].shape != value.shape for key, value in weights.items() if key in loaded):
        pytest.skip(f"this ComfyUI builds another {type(model).__name__} for these weights")
    return vae


def test_a_light_wan_vae_streams_chunk_by_chunk_with_comfyuis_frames(comfy):
    common = {key: value for key, value in COMFY_WAN["wan2.1"][1].items() if key not in ("dim", "z_dim")}
    vae = comfy_vae_from(comfy, comfy.ldm.wan.vae.WanVAE(dim=16, z_dim=16, **common))  # the full one is 96 wide
    latent = torch.randn(1, 16, 3, 2, 3, generator=torch.Generator().manual_seed(3))
    decoder = decoder_for(vae, latent)
    assert isinstance(decoder, WanChunkDecoder) and decoder.parts.family == "wan2.1"
    with torch.inference_mode():
        chunks = list(decoder.chunks(latent))
    # One frame first, then the host's own steps: 4 frames per latent frame, or 2-frame pieces where the release
    # decodes two latent frames at a time (v0.33.0 and later).
    sizes = [chunk.shape[2] for chunk in chunks]
    assert sizes[0] == 1 and sum(sizes) == 9 and len(sizes) > 1
    ours = torch.clamp((torch.cat(chunks, 2).float() + 1.0) / 2.0, 0.0, 1.0).movedim(1, -1).cpu()
    assert torch.equal(ours, vae.decode(latent))


def test_taehv_decodes_whole_and_says_so(comfy, tmp_path, caplog):
    try:
        import comfy.taesd.taehv as taehv
    except ImportError:
        pytest.skip("this ComfyUI has no TAEHV")
    vae = comfy_vae_from(comfy, taehv.TAEHV(latent_channels=16, latent_format=None))  # fp32: lighttaew2_1
    assert type(vae.first_stage_model).__name__ == "TAEHV"
    latent = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    caplog.set_level(logging.INFO, logger="streamvae")
    assert isinstance(decoder_for(vae, latent), GenericDecoder)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("taehv.TAEHV is not laid out as the Wan 2.1/2.2 video VAEs" in line
               and "decodes the whole video at once" in line
               for line in warnings), caplog.text

    stats = decode_to_video(vae, latent, tmp_path / "taehv.mkv", container="mkv", codec="ffv1", pix_fmt="bgr0")
    assert stats.decoder == "TAEHV: decoded whole, then streamed"
    frames = read_video(stats.path).frames
    stock = (vae.decode(latent)[0] * 255).clamp(0, 255).byte().numpy()  # Save Video's conversion
    np.testing.assert_array_equal(frames, stock)
