"""Turn what callers hand us (a tensor or ComfyUI's LATENT dict) into one validated video latent."""

from __future__ import annotations

from typing import Any

import torch

from .errors import StreamVAEError


def as_video_latent(latent: Any) -> torch.Tensor:
    """Return the latent as a `[1, C, T, h, w]` tensor, or raise a StreamVAEError saying what to fix.

    One video per call: a batch of B videos would need B files, so the caller picks the item
    (`latent[i:i+1]`); ComfyUI's Save Video (Streaming) node does that loop itself.
    """
    samples = latent.get("samples") if isinstance(latent, dict) else latent
    if not isinstance(samples, torch.Tensor):
        raise StreamVAEError(
            f"expected a latent tensor or ComfyUI's LATENT dict with 'samples', got {type(latent).__name__}; "
            "pass the LATENT output of a sampler or an empty-latent node")
    if samples.dim() == 4:
        raise StreamVAEError(
            f"got a 4-D image latent {tuple(samples.shape)}; the streaming decoder needs a video latent "
            "[B, C, T, h, w] from a video model (Wan's EmptyHunyuanLatentVideo, Wan22ImageToVideoLatent); "
            "use the stock VAE Decode for images")
    if samples.dim() != 5:
        raise StreamVAEError(
            f"expected a video latent [B, C, T, h, w], got shape {tuple(samples.shape)}")
    batch, _, frames, height, width = samples.shape
    if batch != 1:
        raise StreamVAEError(
            f"the latent holds {batch} videos; decode one at a time (latent[i:i+1]) so each gets its own file")
    if frames == 0 or height == 0 or width == 0:
        raise StreamVAEError(
            f"the latent {tuple(samples.shape)} has zero frames or zero size; check the length, width and height "
            "given to the node that made it")
    if samples.is_floating_point() and not torch.isfinite(samples).all():
        raise StreamVAEError(
            "the latent contains NaN or inf values, so every decoded frame would be garbage; the sampler diverged "
            "(try another seed, fewer steps or a lower cfg) or a node upstream produced invalid numbers")
    if not samples.is_floating_point():
        raise StreamVAEError(f"the latent has dtype {samples.dtype}; a VAE latent must be floating point")
    return samples


def frames_from_latent_frames(latent_frames: int) -> int:
    """Pixel frames a Wan VAE produces: the first latent frame gives 1, each later one 4."""
    return 1 + 4 * (latent_frames - 1)
