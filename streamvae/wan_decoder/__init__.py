"""Fast mode's Wan 2.1 / Wan 2.2 VAE decoder, built from the VAE's weights: no host module is run or patched.

- weights.py: read the decoder's weights (ComfyUI's VAE, diffusers' AutoencoderKLWan, a state dict, a file)
- build.py: read the architecture from the weights and build the layers (or refuse, saying why)
- layers.py, ops.py: the layers' arithmetic, and which kernels compute it
- decoder.py: stepping through the latent frames with causal histories
- features.py: the speed features, each of which can be switched off
- cache.py: one converted copy of the weights per VAE object
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from .build import build_decoder
from .cache import cached_decoder
from .decoder import Architecture, WanDecoder
from .features import DISABLE_ENV, FEATURES, enabled_features
from .weights import UnsupportedVAE, decoder_weights


def load_wan_decoder(source: Any, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                     features: Optional[frozenset] = None) -> WanDecoder:
    """Our decoder from a state dict (ComfyUI's or diffusers' layout), a .safetensors path, ComfyUI's VAE or
    diffusers' AutoencoderKLWan, not cached. `features`: default all but $STREAMVAE_FAST_DISABLE's."""
    return build_decoder(decoder_weights(source), torch.device(device), dtype,
                         enabled_features() if features is None else features)


__all__ = ["DISABLE_ENV", "FEATURES", "Architecture", "UnsupportedVAE", "WanDecoder", "build_decoder",
           "cached_decoder", "decoder_weights", "enabled_features", "load_wan_decoder"]
