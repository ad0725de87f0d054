"""One decoder per VAE object, built on first use and kept while that object lives.

Building converts the VAE's decoder weights to the decode's device, dtype and memory layout (a copy: the host's
module is never touched). Kept, that copy costs its size in memory for as long as the VAE object exists, on top
of the host's own copy: in bf16, about 0.14 GiB for the Wan 2.1 VAE's decoder and 1.1 GiB for Wan 2.2's (their
decoders have 73 M and 555 M parameters). A decode with another device, dtype or feature set replaces it.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

import torch

from .build import build_decoder
from .decoder import WanDecoder
from .weights import decoder_weights

_LOCK = threading.Lock()
_DECODERS: "weakref.WeakKeyDictionary[Any, tuple[tuple, WanDecoder]]" = weakref.WeakKeyDictionary()


def cached_decoder(vae: Any, device: torch.device, dtype: torch.dtype, features: frozenset,
                   channels_last: Optional[bool] = None) -> WanDecoder:
    """Our decoder for `vae` (ComfyUI's VAE or diffusers' AutoencoderKLWan): built once per VAE object and
    settings. Raises UnsupportedVAE with the reason when the weights are not a Wan decoder we can build."""
    key = (torch.device(device), dtype, features, channels_last)
    with _LOCK:  # two decodes starting together build it once
        entry = _DECODERS.get(vae)
        if entry is None or entry[0] != key:
            _DECODERS.pop(vae, None)  # the old copy goes before the new one is made
            entry = (key, build_decoder(decoder_weights(vae), device, dtype, features, channels_last))
            _DECODERS[vae] = entry
        return entry[1]
