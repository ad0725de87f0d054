"""Tiny configurations of the real VAE classes: diffusers' AutoencoderKLWan always, ComfyUI's when present."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from streamvae.decoders import HostWanChunkDecoder
from streamvae.decoders.comfyui import wan_parts_from_comfy
from streamvae.files import import_comfy
from streamvae.synthetic import COMFY_WAN, fill_random_weights_

TINY_DIFFUSERS = {
    "wan2.1": dict(base_dim=8, z_dim=16),
    "wan2.2": dict(base_dim=8, decoder_base_dim=16, z_dim=48, in_channels=12, out_channels=12, patch_size=2,
                   scale_factor_spatial=16, is_residual=True),
}


def tiny_diffusers_vae(arch: str, seed: int = 0):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(**TINY_DIFFUSERS[arch]).eval().requires_grad_(False)


@pytest.fixture(scope="session", params=["wan2.1", "wan2.2"])
def diffusers_vae(request):
    return tiny_diffusers_vae(request.param)


@pytest.fixture(scope="session")
def wan21_vae():
    return tiny_diffusers_vae("wan2.1")


def latent_for(vae, latent_frames: int = 3, height: int = 4, width: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, vae.config.z_dim, latent_frames, height, width, generator=generator)


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI's `comfy` package on the CPU, imported in-process, or a skip saying how to get it."""
    if import_comfy() is None:  # on the GPU when there is one, else in ComfyUI's CPU mode
        pytest.skip("ComfyUI not found ($COMFYUI_PATH, ../../ when in custom_nodes/, ~/comfy/ComfyUI); "
                    "see the README's Tests section")
    import comfy.ldm.wan.vae
    import comfy.ldm.wan.vae2_2
    import comfy.sd

    return comfy


@pytest.fixture(scope="session", params=["wan2.1", "wan2.2"])
def comfy_wan_model(request, comfy):
    """A tiny ComfyUI WanVAE module of each family with real-valued random weights."""
    # Tiny widths, but the temporal layout ComfyUI builds (COMFY_WAN), so the same layers run.
    common = {key: value for key, value in COMFY_WAN["wan2.1"][1].items() if key not in ("dim", "z_dim")}
    if request.param == "wan2.1":
        model = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, **common)
    else:
        model = comfy.ldm.wan.vae2_2.WanVAE(dim=8, dec_dim=16, z_dim=48, **common)
    return fill_random_weights_(model.eval()).requires_grad_(False)


def comfy_chunk_decoder(model) -> HostWanChunkDecoder:
    return HostWanChunkDecoder(wan_parts_from_comfy(model), torch.device("cpu"), torch.float32, name="test")


@pytest.fixture
def no_thread_left():
    """Asserts that a test leaves none of the engine's threads running."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("streamvae-"):
            thread.join(timeout=5)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("streamvae-")]
    assert not alive, f"threads left running: {alive}"


def stock_bytes(vae, latent) -> np.ndarray:
    """What stock ComfyUI writes: VAE Decode's clamp((x+1)/2) in fp32, then SaveVideo's (x*255).clamp().byte()."""
    with torch.no_grad():
        decoded = vae.decode(latent).sample.to("cpu").float()
    images = torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0).movedim(1, -1)[0]
    return (images * 255).clamp(0, 255).byte().numpy()
