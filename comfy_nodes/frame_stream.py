"""FRAME_STREAM: what flows between the streaming nodes — a recipe for frames, not the frames themselves.

ComfyUI caches every node's outputs and hands the same objects to later prompts. A generator would come back
exhausted the second time, and a live decoder would keep the VAE's causal cache in VRAM between prompts. So a
stream only holds its ingredients (the VAE and the latent, or an IMAGE batch) and opens a fresh `FrameSource` from
the beginning each time a consumer asks; all GPU memory belongs to that one iteration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from comfy_api.latest import io

from ..streamvae import FrameSource, StreamVAEError, decoder_for, source_from_decoder, source_from_images
from ..streamvae.latents import as_video_latent
from ..streamvae.precision import precision_dtype

SOCKET_TYPE = "FRAME_STREAM"


class FrameStream(ABC):
    """One or more videos, each opened as a FrameSource on demand (on the thread that executes the node)."""

    mode: str = "exact"

    @property
    @abstractmethod
    def videos(self) -> int:
        """How many videos (files, for Save Video (Streaming)) the stream holds."""

    @abstractmethod
    def open(self, index: int) -> FrameSource:
        """Start video `index` from its first frame. With a ComfyUI VAE this loads it onto its device, so call it
        on the thread that executes the node."""


@dataclass(frozen=True, eq=False)
class LatentFrameStream(FrameStream):
    """Decode `samples` `[B, C, T, h, w]` with `vae`: B videos."""

    vae: Any
    samples: torch.Tensor
    mode: str = "exact"
    precision: str = "auto"

    @property
    def videos(self) -> int:
        return self.samples.shape[0]

    def open(self, index: int) -> FrameSource:
        latent = self.samples[index:index + 1]
        decoder = decoder_for(self.vae, latent, self.mode, precision_dtype(self.precision))
        return source_from_decoder(decoder, latent, self.precision)


@dataclass(frozen=True, eq=False)
class ImageFrameStream(FrameStream):
    """ComfyUI's IMAGE batch `[N, H, W, 3]` as one video of N frames."""

    images: torch.Tensor

    @property
    def videos(self) -> int:
        return 1

    def open(self, index: int) -> FrameSource:
        return source_from_images(self.images)


def latent_stream(vae: Any, latent: Any, mode: str, precision: str = "auto") -> LatentFrameStream:
    """Check the latent against the VAE now, before anything is decoded, and build the recipe."""
    samples = latent.get("samples") if isinstance(latent, dict) else latent
    if isinstance(samples, torch.Tensor) and samples.dim() == 5:
        for index in range(samples.shape[0]):  # the engine checks one video at a time
            as_video_latent(samples[index:index + 1])
    else:
        as_video_latent(samples)  # raises the engine's message for 4-D image latents and other shapes
    expected = getattr(vae, "latent_channels", None)
    if expected is not None and samples.shape[1] != expected:
        raise StreamVAEError(
            f"the latent has {samples.shape[1]} channels but this VAE takes {expected}; connect the VAE that "
            "matches the model that made the latent (Wan 2.2 5B TI2V uses wan2.2_vae with 48 channels; Wan 2.1 "
            "and Wan 2.2 14B use wan_2.1_vae with 16)")
    precision_dtype(precision)
    return LatentFrameStream(vae, samples, mode, precision)


def image_stream(images: Any) -> ImageFrameStream:
    source_from_images(images)  # validates the shape with the engine's message; building it copies nothing
    return ImageFrameStream(images)


# The socket type, for node schemas: a custom type carries any Python object between nodes.
FrameStreamSocket = io.Custom(SOCKET_TYPE)
