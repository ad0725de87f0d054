"""Adapter for diffusers' `AutoencoderKLWan` (Wan 2.1 and Wan 2.2 configurations)."""

from __future__ import annotations

import sys
from typing import Any, Optional

from .wan import HostWanChunkDecoder, WanParts, host_name


def is_diffusers_wan(vae: Any) -> bool:
    return type(vae).__name__ == "AutoencoderKLWan" and hasattr(vae, "post_quant_conv")


def diffusers_chunk_decoder(vae: Any) -> Optional[HostWanChunkDecoder]:
    module = sys.modules.get(type(vae).__module__)
    config = vae.config
    patch_size = getattr(config, "patch_size", None)
    unpatchify = None
    if patch_size:
        module_unpatchify = getattr(module, "unpatchify", None)
        if module_unpatchify is None:
            return None
        unpatchify = lambda x: module_unpatchify(x, patch_size=patch_size)  # noqa: E731
    family = "wan2.2" if config.z_dim == 48 else "wan2.1"
    scale = getattr(config, "scale_factor_spatial", 8 * (patch_size or 1))
    parts = WanParts(family, vae.post_quant_conv, vae.decoder, config.z_dim, scale, unpatchify)
    return HostWanChunkDecoder(parts, vae.device, vae.dtype, name=host_name(vae))
