"""How close two decodes are: PSNR of 8-bit frames. The one definition, for the benchmarks and the tests."""

from __future__ import annotations

import math

import torch


def psnr_db(a, b) -> float:
    """PSNR in dB of two 8-bit frame sets of the same shape (numpy arrays or tensors, any device); inf when
    identical."""
    a, b = (torch.as_tensor(x).detach().to("cpu", torch.float64) for x in (a, b))
    mse = torch.mean((a - b) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
