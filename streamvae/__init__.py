"""ComfyUI-StreamVAE's engine: decode a video latent chunk by chunk and encode it while the GPU keeps decoding.

No ComfyUI import here: the engine works from any script, diffusers pipelines included. The engine's names load on
first use (`streamvae.decode_to_video`, `from streamvae import EncodeSettings`), so that the headless client,
`streamvae.client`, imports without torch.
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_ENGINE = {
    "decode_to_video": ".api", "iter_frames": ".api", "source_from_decoder": ".api", "source_from_images": ".api",
    "write_video": ".api",
    "ChunkDecoder": ".decoders", "decoder_for": ".decoders",
    "CODECS": ".encoding", "CONTAINERS": ".encoding", "PRESETS": ".encoding", "EncodeSettings": ".encoding",
    "Cancelled": ".errors", "EncoderError": ".errors", "StreamVAEError": ".errors",
    "FrameSource": ".pipeline", "Progress": ".pipeline",
    "PINNED_POOL": ".slots",
    "DEFAULT_PRICE_PER_GPU_HOUR": ".stats", "DecodeStats": ".stats",
}

__all__ = sorted(_ENGINE)


def __getattr__(name: str):
    if name not in _ENGINE:
        raise AttributeError(f"module 'streamvae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_ENGINE[name], __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ENGINE))
