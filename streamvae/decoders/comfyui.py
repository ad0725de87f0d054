"""Adapters for ComfyUI's `comfy.sd.VAE`, imported lazily so the engine runs without ComfyUI."""

from __future__ import annotations

import sys
from typing import Any, Optional

import torch

from .wan import HostWanChunkDecoder, WanParts, host_name


def is_comfy_vae(vae: Any) -> bool:
    """ComfyUI's VAE wrapper, recognised by the attributes we use rather than by importing comfy."""
    return all(hasattr(vae, name) for name in ("first_stage_model", "patcher", "vae_dtype", "device"))


def wan_parts_from_comfy(model: torch.nn.Module) -> Optional[WanParts]:
    """Describe ComfyUI's Wan 2.1 (`comfy.ldm.wan.vae`) or Wan 2.2 (`comfy.ldm.wan.vae2_2`) model, or None."""
    module = sys.modules.get(type(model).__module__)
    if type(model).__name__ != "WanVAE" or module is None:
        return None
    if not (hasattr(model, "conv2") and hasattr(model, "decoder") and hasattr(model, "z_dim")):
        return None
    if module.__name__.endswith("vae2_2"):
        unpatchify = getattr(module, "unpatchify", None)
        if unpatchify is None or not _is_wan22_video_decoder(model):
            return None
        return WanParts("wan2.2", model.conv2, model.decoder, model.z_dim, 16,
                        lambda x: unpatchify(x, patch_size=2))
    if module.__name__.endswith(".vae"):
        if hasattr(module, "count_conv3d"):          # ComfyUI 0.3.64: one latent frame per call
            per_step = 1
        elif hasattr(module, "count_cache_layers"):  # newer ComfyUI: 1 frame, then 2 per call, list output
            per_step = 2
        else:
            return None
        return WanParts("wan2.1", model.conv2, model.decoder, model.z_dim, 8, None, per_step)
    return None


def _is_wan22_video_decoder(model: torch.nn.Module) -> bool:
    """Wan 2.2's video VAE: RGB through 2x2 patches (12 channels out of the head), temporal kernels of 3. Newer
    ComfyUI builds other VAEs from the same class (Qwen-Image 2.1's: RGBA, no patches, temporal kernel 1), which
    stepping and unpatchifying as Wan 2.2 would garble."""
    head = getattr(model.decoder, "head", None)
    weight = getattr(head[-1], "weight", None) if isinstance(head, torch.nn.Sequential) else None
    return (getattr(model, "patch_size", 2) == 2 and weight is not None and weight.ndim == 5
            and weight.shape[0] == 3 * 2 * 2 and weight.shape[2] == 3)


def comfy_chunk_decoder(vae: Any, latent: torch.Tensor) -> Optional[HostWanChunkDecoder]:
    """Load the VAE the way ComfyUI's VAE Decode does, then return our chunk decoder over its model."""
    parts = wan_parts_from_comfy(vae.first_stage_model)
    if parts is None:
        return None
    decoder = HostWanChunkDecoder(parts, vae.device, vae.vae_dtype, name=host_name(vae.first_stage_model))
    decoder.check_latent(latent)
    load_comfy_vae(vae, latent)
    return decoder


def load_comfy_vae(vae: Any, latent: torch.Tensor) -> None:
    """Ask ComfyUI's model management to put the VAE on its device, freeing other models as it would.

    Must run on the executing thread: load_models_gpu edits global lists that are not thread-safe. Runs under
    inference mode, as ComfyUI's executor runs every node: weights loaded there are inference tensors, and moving
    them to the GPU outside it (a script calling the engine) left parameters that no later op accepted on
    ComfyUI 0.33 ("Inference tensors do not track version counter").
    """
    from comfy import model_management  # noqa: PLC0415 - ComfyUI is optional for the engine

    vae.throw_exception_if_invalid()
    memory = vae.memory_used_decode(latent.shape, vae.vae_dtype)
    with torch.inference_mode():
        model_management.load_models_gpu([vae.patcher], memory_required=memory, force_full_load=vae.disable_offload)
