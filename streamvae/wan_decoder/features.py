"""The decoder's speed features, each of which can be switched off alone to compare (an A/B on a new card).

Every feature computes the same function as its fallback, up to rounding; the fallback is what runs on a CPU and
wherever Triton is missing. Switch features off with $STREAMVAE_FAST_DISABLE (comma-separated names) or the
`disabled` argument; switching one off never switches off another.

- `layout`: on CUDA, weights and activations channels-last (channels_last_3d for 3-D convs), which cuDNN's fastest
  kernels want. Off (and on a CPU): PyTorch's default contiguous layout.
- `norm`: RMS norm + SiLU in one Triton pass (streamvae/kernels/rms_norm.py) that writes straight into the next
  causal conv's input buffer behind its cached frames. Off: the same arithmetic as separate torch ops.
- `bias`: convolutions run without their bias; one vectorised Triton pass adds it together with the residual that
  follows (streamvae/kernels/channel_bias.py), or the next norm adds it as it reads. cuDNN's own bias add on
  channels-last activations runs at about a third of memory bandwidth. Off: the conv adds its bias.
- `subpixel`: nearest 2x upsample + 3x3 conv as one convolution of the small image with folded 2x2 kernels
  (streamvae/kernels/upsample_conv.py): 2.25x fewer FLOPs, no upsampled tensor. Off: upsample, then conv.
- `dupup`: Wan 2.2's DupUp3D shortcut as one Triton pass (streamvae/kernels/dup_up.py). Off: torch reshapes.
- `taps`: 3x3x3 convs with 96-128 channels in and out (Wan 2.1's full-resolution level) as three 2-D convs, one
  per temporal tap, summed in place: cuDNN's 2-D kernels run those about 30% faster on an H200 than its 3-D ones.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

FEATURES = frozenset({"layout", "norm", "bias", "subpixel", "dupup", "taps"})
DISABLE_ENV = "STREAMVAE_FAST_DISABLE"


def enabled_features(disabled: Optional[Iterable[str]] = None) -> frozenset:
    """FEATURES less `disabled`, or less those named in $STREAMVAE_FAST_DISABLE when `disabled` is None."""
    if disabled is None:
        disabled = os.environ.get(DISABLE_ENV, "").split(",")
        where = f"${DISABLE_ENV}"
    else:
        where = "disabled"
    names = {name.strip() for name in disabled if name.strip()}
    unknown = names - FEATURES
    if unknown:
        raise ValueError(f"{where} names unknown fast-mode features {sorted(unknown)}; known: {sorted(FEATURES)}")
    return FEATURES - names
