"""ComfyUI-StreamVAE's engine: decode a video latent chunk by chunk and encode it while the GPU keeps decoding.

No ComfyUI import here: the engine works from any script, diffusers pipelines included.
"""

from .api import decode_to_video, iter_frames, source_from_decoder, source_from_images, write_video
from .decoders import ChunkDecoder, decoder_for
from .encoding import CODECS, CONTAINERS, PRESETS, EncodeSettings
from .errors import Cancelled, EncoderError, StreamVAEError
from .pipeline import FrameSource, Progress
from .slots import PINNED_POOL
from .stats import DEFAULT_PRICE_PER_GPU_HOUR, DecodeStats

__all__ = [
    "CODECS", "CONTAINERS", "DEFAULT_PRICE_PER_GPU_HOUR", "PINNED_POOL", "PRESETS", "Cancelled", "ChunkDecoder",
    "DecodeStats", "EncodeSettings", "EncoderError", "FrameSource", "Progress", "StreamVAEError", "decode_to_video",
    "decoder_for", "iter_frames", "source_from_decoder", "source_from_images", "write_video",
]
