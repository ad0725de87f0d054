"""Stand-ins for downloaded weights and real videos, so the benchmark and tests run anywhere.

- `random_wan_vae`: the real Wan VAE architecture (diffusers' AutoencoderKLWan) with real-valued random weights,
  so the decoder does its real arithmetic. (ComfyUI's layer classes skip init and leave garbage or zeros, which
  also makes timings lie; diffusers' modules initialise every parameter.)
- `random_latent`: a latent with Wan's per-channel mean and spread.
- `PanZoomContent`: natural photographs (scikit-image ships a few) panned and zoomed. A random-weight decoder
  makes noise-like or flat frames, the encoder's worst and best cases; the benchmark feeds the encoder these
  realistic frames of the same size instead, while the decoder's output is still computed.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

ARCHES = {
    # The published configurations (Wan-AI/Wan2.1-T2V-*-Diffusers and Wan2.2-TI2V-5B-Diffusers vae/config.json).
    "wan2.1": dict(base_dim=96, z_dim=16),
    "wan2.2": dict(base_dim=160, decoder_base_dim=256, z_dim=48, in_channels=12, out_channels=12, patch_size=2,
                   scale_factor_spatial=16, is_residual=True),
}
SPATIAL_SCALE = {"wan2.1": 8, "wan2.2": 16}


def random_wan_vae(arch: str = "wan2.1", *, device="cpu", dtype=torch.float32, seed: int = 0, **overrides):
    """A decoder-only AutoencoderKLWan with seeded random weights (the encoder is dropped to save memory)."""
    from diffusers import AutoencoderKLWan  # noqa: PLC0415 - optional dependency (the `bench` extra)
    from diffusers.utils import logging as diffusers_logging  # noqa: PLC0415

    diffusers_logging.set_verbosity_error()  # its "keep modules in float32" note doesn't apply to a VAE decode
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**{**ARCHES[arch], **overrides})
    del vae.encoder, vae.quant_conv
    return vae.eval().requires_grad_(False).to(device=device, dtype=dtype)


# What ComfyUI 0.3.64 builds for a Wan VAE file (comfy/sd.py, the `ddconfig` of the Wan branch), whatever the file
# holds. All of it matters: WanVAE's own default temperal_downsample differs, and a model built with it lacks two
# time_conv layers, which ComfyUI would then leave uninitialised (it loads with strict=False).
_WAN_COMMON = dict(dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True],
                   dropout=0.0)
COMFY_WAN = {"wan2.1": ("comfy.ldm.wan.vae", dict(dim=96, z_dim=16, **_WAN_COMMON)),
             "wan2.2": ("comfy.ldm.wan.vae2_2", dict(dim=160, dec_dim=256, z_dim=48, **_WAN_COMMON))}


def random_comfy_wan_vae(arch: str = "wan2.1", *, seed: int = 0):
    """ComfyUI's own VAE object (`comfy.sd.VAE`: its loader, model management and dtype choice) around the real
    architecture with seeded random weights. Needs ComfyUI importable (see files.import_comfy)."""
    import importlib  # noqa: PLC0415

    import comfy.sd  # noqa: PLC0415 - only when ComfyUI is there

    module_name, dims = COMFY_WAN[arch]
    weights = fill_random_weights_(importlib.import_module(module_name).WanVAE(**dims), seed).state_dict()
    vae = comfy.sd.VAE(sd=weights)
    missing = set(vae.first_stage_model.state_dict()) - set(weights)
    if missing:  # ComfyUI only logs this, and the missing weights would be uninitialised memory
        raise RuntimeError(f"ComfyUI's {arch} VAE has weights we did not fill: {sorted(missing)[:4]}")
    return vae


def random_latent(vae, frames: int, height: int, width: int, *, seed: int = 0) -> torch.Tensor:
    """A `[1, C, T, h, w]` latent for a `frames` x `height` x `width` video, float32, on the VAE's device.

    Works for diffusers' AutoencoderKLWan (with Wan's per-channel statistics) and ComfyUI's VAE."""
    config = getattr(vae, "config", None)
    if config is not None:
        channels, scale = config.z_dim, config.scale_factor_spatial
    else:
        channels, scale = vae.latent_channels, vae.spacial_compression_decode()
    latent_frames = (frames - 1) // 4 + 1
    if (frames - 1) % 4 or height % scale or width % scale:
        raise ValueError(f"a Wan video is 4k+1 frames and a multiple of {scale} pixels; got {frames}x{height}x"
                         f"{width}")
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(1, channels, latent_frames, height // scale, width // scale, generator=generator)
    if config is not None and len(config.latents_mean) == channels:
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1)
        latent = latent * std + mean
    return latent.to(vae.device)


def _photographs() -> list:
    from skimage import data  # noqa: PLC0415 - optional dependency (the `bench` extra)

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


class PanZoomContent:
    """Frames of photographs, slowly panned and zoomed like a camera move, with a cut every `scene_frames`."""

    def __init__(self, height: int, width: int, device="cpu", scene_frames: int = 81):
        self.height, self.width, self.scene_frames = height, width, scene_frames
        self.device = torch.device(device)
        self.scenes = [torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0).to(self.device)
                       for image in _photographs()]

    def frames(self, start: int, count: int) -> torch.Tensor:
        """`[count, 3, H, W]` float in [0, 1] for frames start .. start+count-1."""
        out = []
        for index in range(start, start + count):
            scene = self.scenes[(index // self.scene_frames) % len(self.scenes)]
            t = (index % self.scene_frames) / self.scene_frames
            zoom_x = 0.75 - 0.2 * t  # the window shrinks: a slow push in
            # Keep the photograph's proportions whatever the video's: scale y by the two aspect ratios.
            zoom_y = zoom_x * (self.height / self.width) * (scene.shape[3] / scene.shape[2])
            shrink = max(1.0, zoom_y / 0.9)
            zoom_x, zoom_y = zoom_x / shrink, zoom_y / shrink
            theta = torch.tensor([[[zoom_x, 0.0, 0.2 * math.sin(2 * math.pi * t)],
                                   [0.0, zoom_y, 0.05 * math.cos(2 * math.pi * t)]]], device=self.device)
            grid = F.affine_grid(theta, [1, 3, self.height, self.width], align_corners=False)
            out.append(F.grid_sample(scene, grid, mode="bilinear", padding_mode="reflection", align_corners=False))
        return torch.cat(out)

    def swap_into(self, chunks: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Let each decoder chunk be computed, then pass on photographs of its shape in [-1, 1] instead."""
        done = 0
        for chunk in chunks:
            count = chunk.shape[2]
            frames = self.frames(done, count).to(chunk.dtype)
            done += count
            yield (frames * 2 - 1).permute(1, 0, 2, 3).unsqueeze(0)


def fill_random_weights_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter a seeded, real-valued random value, in place.

    For models built from ComfyUI's classes, whose layers skip initialisation (uninitialised memory: garbage or
    zeros). Weights get std 1/sqrt(fan_in) so activations keep their scale through the network; norm scales
    (`gamma`) stay near 1 and biases near 0, as in a trained model.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("gamma"):
                value = 1 + 0.1 * noise
            elif parameter.dim() <= 1:
                value = 0.02 * noise
            else:
                value = noise / math.sqrt(parameter[0].numel())
            parameter.copy_(value.to(parameter.dtype))
    return module
