"""Pick the chunk decoder for whatever VAE object the caller has, and the mode asked for."""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch

from ..errors import StreamVAEError
from ..wan_decoder import UnsupportedVAE
from .base import ChunkDecoder
from .comfyui import comfy_chunk_decoder, is_comfy_vae, load_comfy_vae
from .diffusers_wan import diffusers_chunk_decoder, is_diffusers_wan
from .fast_wan import FastWanChunkDecoder, fast_chunk_decoder
from .generic import GenericDecoder
from .wan import HostWanChunkDecoder, WanChunkDecoder, WanParts

log = logging.getLogger("streamvae")

__all__ = ["ChunkDecoder", "FastWanChunkDecoder", "GenericDecoder", "HostWanChunkDecoder", "WanChunkDecoder",
           "WanParts", "decoder_for"]


def decoder_for(vae: Any, latent: torch.Tensor, mode: str = "exact",
                dtype: Optional[torch.dtype] = None) -> ChunkDecoder:
    """The decoder for `vae` in `mode`.

    exact: the host's own modules, stepped chunk by chunk through their causal cache when we recognise them
    (else decoded whole, then streamed). fast: our own decoder built from the VAE's weights, in `dtype` (default
    the VAE's own); where it can't be built, a warning in the log, and the exact decoder, whose `name` then says
    "fast unavailable" and why.

    With ComfyUI's VAE this also loads the model onto its device through ComfyUI's model management, so call it
    on the thread that executes the node.
    """
    if not (is_comfy_vae(vae) or callable(getattr(vae, "decode", None))):
        raise StreamVAEError(
            f"got {type(vae).__name__} where a VAE was expected; pass ComfyUI's VAE (from VAELoader), a diffusers "
            "AutoencoderKLWan, or any object with a .decode(latent) method")
    if mode != "fast":
        return _host_decoder(vae, latent)
    try:
        decoder = _fast_decoder(vae, latent, dtype)
    except UnsupportedVAE as error:
        reason = str(error)
    else:
        decoder.check_latent(latent)
        return decoder
    log.warning("streamvae: fast mode can't decode this VAE (%s); decoding with the host's own decoder instead",
                reason)
    decoder = _host_decoder(vae, latent)
    decoder.name = f"{decoder.name} (fast unavailable: {reason})"
    return decoder


def _fast_decoder(vae: Any, latent: torch.Tensor, dtype: Optional[torch.dtype]) -> FastWanChunkDecoder:
    if is_comfy_vae(vae):
        load_comfy_vae(vae, latent)  # frees room for the decode as stock VAE Decode does; weights copied from there
        return fast_chunk_decoder(vae, vae.device, dtype or vae.vae_dtype)
    if isinstance(vae, torch.nn.Module):
        parameter = next(vae.parameters(), None)
        if parameter is not None:
            return fast_chunk_decoder(vae, parameter.device, dtype or parameter.dtype)
    raise UnsupportedVAE(f"{type(vae).__name__} is not a VAE whose weights we can read (ComfyUI's VAE or "
                         "diffusers' AutoencoderKLWan)")


def _host_decoder(vae: Any, latent: torch.Tensor) -> ChunkDecoder:
    if is_comfy_vae(vae):
        decoder = comfy_chunk_decoder(vae, latent)
        if decoder is not None:
            return decoder
        # Newer ComfyUI loads more video VAEs (TAEHV/lighttae, LTX, ...): they work, but not flat in memory.
        model = type(vae.first_stage_model)
        log.warning("streamvae: %s.%s is not laid out as the Wan 2.1/2.2 video VAEs StreamVAE steps chunk by chunk; "
                    "it decodes the whole video at once (memory grows with its length), then streams it to the "
                    "encoder", model.__module__, model.__name__)
        load_comfy_vae(vae, latent)
        return GenericDecoder(vae, comfy=True)
    if is_diffusers_wan(vae):
        decoder = diffusers_chunk_decoder(vae)
        if decoder is not None:
            decoder.check_latent(latent)
            return decoder
        log.info("streamvae: this AutoencoderKLWan has internals we don't recognise; decoding it whole")
    else:
        log.info("streamvae: %s is not a Wan VAE; decoding it whole, then streaming", type(vae).__name__)
    return GenericDecoder(vae, comfy=False)
