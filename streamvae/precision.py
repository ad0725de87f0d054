"""Decode in a precision other than the VAE's own, for one decode, restored afterwards.

ComfyUI picks the VAE's dtype once (bf16 on Ampere and newer, fp32 on a CPU); a user may want fp32 for the last
bit of quality, or fp16 on cards without fast bf16. In exact mode the host's model object runs, and it is shared
with every other node, so its weights are converted for the duration of one decode only. Fast mode's own decoder
is built in the precision asked for (decoders.decoder_for), so nothing is converted here.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch

from .decoders import ChunkDecoder, HostWanChunkDecoder
from .errors import StreamVAEError

PRECISIONS = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_dtype(precision: str) -> Optional[torch.dtype]:
    """The dtype a precision name asks for; None for "auto" (the VAE's own)."""
    if precision not in PRECISIONS:
        raise StreamVAEError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def chunks_in_precision(decoder: ChunkDecoder, latent: torch.Tensor, precision: str) -> Iterator[torch.Tensor]:
    """`decoder.chunks(latent)`, computed in `precision`; the VAE's weights are converted back when it ends."""
    dtype = precision_dtype(precision)
    if dtype is None or dtype == decoder.dtype:
        return decoder.chunks(latent)
    if not isinstance(decoder, HostWanChunkDecoder):
        raise StreamVAEError(f"precision {precision!r} needs a Wan VAE decoded chunk by chunk; {decoder.name} "
                             "decodes in its own precision: choose 'auto'")
    return _converted(decoder, latent, dtype)


def _converted(decoder: HostWanChunkDecoder, latent: torch.Tensor, dtype: torch.dtype) -> Iterator[torch.Tensor]:
    modules = (decoder.parts.pre_conv, decoder.parts.decoder)
    original = decoder.dtype
    with torch.inference_mode(False):  # the converted weights must stay normal tensors after the decode
        for module in modules:
            module.to(dtype)
    decoder.dtype = dtype
    try:
        yield from decoder.chunks(latent)
    finally:
        decoder.dtype = original
        with torch.inference_mode(False):
            for module in modules:
                module.to(original)
