"""Fast mode's kernel settings, applied only while one decode runs and undone afterwards.

Measured on an H200 (bf16, 2026-11-26, chunk loop only, warm): channels_last_3d conv weights took the Wan 2.1 VAE
at 1280x720x161 from 8.30 s to 7.51 s and the Wan 2.2 VAE at 1280x704x121 from 5.82 s to 5.46 s. cuDNN autotuning
(cudnn.benchmark) gained nothing warm and cost ~2.4 s on a Wan 2.2 run's first pass, so it is not used. The layout
changes how convolutions are computed, not what they compute: close to exact (PSNR >= 45 dB), not byte-identical.
The weights belong to a model that ComfyUI shares with other nodes, hence the restore.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def fast_kernels(module: torch.nn.Module, device: torch.device) -> Iterator[None]:
    if torch.device(device).type != "cuda":
        yield
        return
    _set_conv_weight_layout(module, torch.channels_last_3d)
    try:
        yield
    finally:
        _set_conv_weight_layout(module, torch.contiguous_format)


def _set_conv_weight_layout(module: torch.nn.Module, memory_format: torch.memory_format) -> None:
    """Re-lay out the 3-D convolution weights (the only rank-5 parameters); cuDNN follows the weights' layout.

    Outside inference mode: the new storage must stay a normal tensor, usable for autograd after the decode.
    """
    with torch.inference_mode(False), torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() == 5:
                parameter.data = parameter.data.contiguous(memory_format=memory_format)


def with_fast_kernels(chunks: Iterator[torch.Tensor], module: torch.nn.Module,
                      device: torch.device) -> Iterator[torch.Tensor]:
    """Iterate `chunks` with fast_kernels active; the settings are undone when the iteration ends or is closed."""
    with fast_kernels(module, device):
        yield from chunks
