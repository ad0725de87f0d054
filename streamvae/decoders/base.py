"""The interface every chunk decoder offers the pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

import torch


class ChunkDecoder(ABC):
    """Decodes one video latent `[1, C, T, h, w]` into pixel chunks `[1, 3, t, H, W]`, in order, on `device`.

    `unit_range` says which range the chunks are in: False for [-1, 1] (what VAEs produce), True for [0, 1]
    (what ComfyUI's `VAE.decode` returns, used only by the generic fallback). The pipeline converts either to
    uint8 with the same arithmetic as stock ComfyUI.
    """

    name: str = "decoder"
    unit_range: bool = False
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

    @abstractmethod
    def output_frames(self, latent: torch.Tensor) -> int:
        """How many pixel frames `chunks(latent)` will yield in total."""

    @abstractmethod
    def output_size(self, latent: torch.Tensor) -> tuple[int, int]:
        """(height, width) of every frame."""

    @abstractmethod
    def chunks(self, latent: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield the pixel chunks in order. Must be called under torch.inference_mode()."""

    def check_latent(self, latent: torch.Tensor) -> None:
        """Raise StreamVAEError when this VAE cannot decode the latent (e.g. the wrong channel count)."""
