"""Faster computations for fast mode: hand-written GPU kernels, each with a plain-torch fallback that computes the
same function, and a sub-pixel rewrite of upsample + conv.

Triton is optional: ComfyUI installs without it (Windows, CPU-only) still run fast mode through the fallbacks.
"""

from .channel_bias import add_channel_bias_
from .dup_up import dup_up
from .rms_norm import rms_norm_silu, rms_norm_silu_reference
from .triton_support import HAVE_TRITON
from .upsample_conv import SubpixelUpsampleConv

__all__ = ["HAVE_TRITON", "SubpixelUpsampleConv", "add_channel_bias_", "dup_up", "rms_norm_silu",
           "rms_norm_silu_reference"]
