"""How the decoder's layers compute, chosen once per decoder from the enabled features and the device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..kernels import HAVE_TRITON, dup_up, rms_norm_silu, rms_norm_silu_reference
from ..kernels.dup_up import dup_up_reference


@dataclass(frozen=True)
class Ops:
    """The layers' choices. `format_3d` / `format_2d`: memory formats of 5-D and 4-D weights and activations."""

    format_3d: torch.memory_format
    format_2d: torch.memory_format
    norm_silu: Callable[..., torch.Tensor]  # rms_norm_silu's signature
    dup_up: Callable[..., torch.Tensor]
    split_bias: bool
    subpixel: bool
    taps: bool

    @classmethod
    def choose(cls, device: torch.device, features: frozenset, channels_last: Optional[bool] = None) -> "Ops":
        """`channels_last`: None for the default (with `layout`, on CUDA only); True or False to force it."""
        if channels_last is None:
            channels_last = "layout" in features and device.type == "cuda"
        return cls(format_3d=torch.channels_last_3d if channels_last else torch.contiguous_format,
                   format_2d=torch.channels_last if channels_last else torch.contiguous_format,
                   norm_silu=rms_norm_silu if "norm" in features else rms_norm_silu_reference,
                   dup_up=dup_up if "dupup" in features else dup_up_reference,
                   split_bias="bias" in features, subpixel="subpixel" in features, taps="taps" in features)

    def describe(self, device: torch.device) -> str:
        """Which kernels run: "triton" where Triton kernels take part, else "torch"."""
        triton = HAVE_TRITON and device.type == "cuda" and (
            self.norm_silu is rms_norm_silu or self.dup_up is dup_up or self.split_bias or self.subpixel)
        return "triton" if triton else "torch"
