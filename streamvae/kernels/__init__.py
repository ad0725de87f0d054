"""Hand-written GPU kernels for fast mode, each with a plain-torch fallback that computes the same function.

Triton is optional: ComfyUI installs without it (Windows, CPU-only) still run fast mode through the fallbacks.
"""

from .channel_bias import add_channel_bias_
from .rms_norm import HAVE_TRITON, rms_norm_silu, rms_norm_silu_reference

__all__ = ["HAVE_TRITON", "add_channel_bias_", "rms_norm_silu", "rms_norm_silu_reference"]
