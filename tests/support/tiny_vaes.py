"""Tiny configurations of the real VAE classes (diffusers' AutoencoderKLWan, ComfyUI's WanVAE): the same layers
and causal cache as the published models at a width that decodes a frame in milliseconds on a CPU."""

from __future__ import annotations

import numpy as np
import torch

from streamvae.decoders import HostWanChunkDecoder
from streamvae.decoders.comfyui import wan_parts_from_comfy
from benchmarks.synthetic import COMFY_WAN, fill_random_weights_

TINY_DIFFUSERS = {
    "wan2.1": dict(base_dim=8, z_dim=16),
    "wan2.2": dict(base_dim=8, decoder_base_dim=16, z_dim=48, in_channels=12, out_channels=12, patch_size=2,
                   scale_factor_spatial=16, is_residual=True),
}


def tiny_diffusers_vae(arch: str = "wan2.1", seed: int = 0):
    """diffusers' AutoencoderKLWan ("wan2.1" or "wan2.2") at width 8, seeded, in eval mode without gradients."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(**TINY_DIFFUSERS[arch]).eval().requires_grad_(False)


def latent_for(vae, latent_frames: int = 3, height: int = 4, width: int = 6, seed: int = 0) -> torch.Tensor:
    """A seeded normal latent [1, C, T, h, w] with the channels a diffusers `vae` takes."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, vae.config.z_dim, latent_frames, height, width, generator=generator)


def tiny_comfy_wan_model(arch: str):
    """A tiny ComfyUI WanVAE module ("wan2.1" or "wan2.2") with real-valued random weights; needs ComfyUI
    importable (streamvae.files.import_comfy). Tiny widths, but the temporal layout ComfyUI builds (COMFY_WAN), so
    the same layers run."""
    import comfy.ldm.wan.vae
    import comfy.ldm.wan.vae2_2

    common = {key: value for key, value in COMFY_WAN["wan2.1"][1].items() if key not in ("dim", "z_dim")}
    if arch == "wan2.1":
        model = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, **common)
    else:
        model = comfy.ldm.wan.vae2_2.WanVAE(dim=8, dec_dim=16, z_dim=48, **common)
    return fill_random_weights_(model.eval()).requires_grad_(False)


def cpu_decoder_of_comfy_model(model) -> HostWanChunkDecoder:
    """The engine's exact chunk decoder over a bare ComfyUI WanVAE module, on the CPU in float32."""
    return HostWanChunkDecoder(wan_parts_from_comfy(model), torch.device("cpu"), torch.float32, name="test")


def stock_bytes(vae, latent) -> np.ndarray:
    """What stock ComfyUI writes: VAE Decode's clamp((x+1)/2) in fp32, then SaveVideo's (x*255).clamp().byte()."""
    with torch.no_grad():
        decoded = vae.decode(latent).sample.to("cpu").float()
    images = torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0).movedim(1, -1)[0]
    return (images * 255).clamp(0, 255).byte().numpy()
