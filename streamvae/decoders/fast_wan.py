"""Fast mode's chunk decoder: our own Wan decoder (streamvae.wan_decoder), in the shared chunk loop."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..wan_decoder import WanDecoder, cached_decoder, enabled_features
from .wan import WanChunkDecoder


class FastWanChunkDecoder(WanChunkDecoder):
    def __init__(self, decoder: WanDecoder):
        self.decoder = decoder
        architecture = decoder.architecture
        self.family, self.latent_channels = architecture.family, architecture.latent_channels
        self.spatial_scale = architecture.spatial_scale
        self.device, self.dtype = decoder.device, decoder.dtype
        self.name = decoder.name

    def _prepare(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder.prepare(latent)

    def _new_cache(self) -> list:
        return self.decoder.new_state()

    def _decode(self, x: torch.Tensor, cache: list, first: bool) -> list[torch.Tensor]:
        return [self.decoder.step(x, cache, first)]


def fast_chunk_decoder(vae: Any, device: torch.device, dtype: torch.dtype,
                       features: Optional[frozenset] = None) -> FastWanChunkDecoder:
    """Our decoder for `vae` (built once per VAE object); raises UnsupportedVAE saying why it can't be built."""
    features = enabled_features() if features is None else features
    return FastWanChunkDecoder(cached_decoder(vae, device, dtype, features))
