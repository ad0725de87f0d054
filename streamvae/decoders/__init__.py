"""Pick the chunk decoder for whatever VAE object the caller has."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import StreamVAEError
from .base import ChunkDecoder
from .comfyui import comfy_chunk_decoder, is_comfy_vae, load_comfy_vae
from .diffusers_wan import diffusers_chunk_decoder, is_diffusers_wan
from .generic import GenericDecoder
from .wan import WanChunkDecoder, WanParts

log = logging.getLogger("streamvae")

__all__ = ["ChunkDecoder", "GenericDecoder", "WanChunkDecoder", "WanParts", "decoder_for"]


def decoder_for(vae: Any, latent: torch.Tensor) -> ChunkDecoder:
    """The best decoder for `vae`: chunked through the causal cache when we recognise its internals, else generic.

    With ComfyUI's VAE this also loads the model onto its device through ComfyUI's model management, so call it
    on the thread that executes the node.
    """
    if is_comfy_vae(vae):
        decoder = comfy_chunk_decoder(vae, latent)
        if decoder is not None:
            return decoder
        # Newer ComfyUI loads more video VAEs (TAEHV/lighttae, LTX, ...): they work, but not flat in memory.
        log.warning("streamvae: %s is not a Wan 2.1/2.2 VAE, the kinds StreamVAE steps chunk by chunk; it decodes "
                    "the whole video at once (memory grows with its length), then streams it to the encoder",
                    type(vae.first_stage_model).__name__)
        load_comfy_vae(vae, latent)
        return GenericDecoder(vae, comfy=True)
    if is_diffusers_wan(vae):
        decoder = diffusers_chunk_decoder(vae)
        if decoder is not None:
            decoder.check_latent(latent)
            return decoder
        log.info("streamvae: this AutoencoderKLWan has internals we don't recognise; decoding it whole")
    if callable(getattr(vae, "decode", None)):
        if not is_diffusers_wan(vae):
            log.info("streamvae: %s is not a Wan VAE; decoding it whole, then streaming", type(vae).__name__)
        return GenericDecoder(vae, comfy=False)
    raise StreamVAEError(
        f"got {type(vae).__name__} where a VAE was expected; pass ComfyUI's VAE (from VAELoader), a diffusers "
        "AutoencoderKLWan, or any object with a .decode(latent) method")
