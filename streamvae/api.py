"""The library's front door: latent + VAE -> a finished video file, or uint8 frames."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from .convert import MODES, RGB24, layout_for
from .decoders import ChunkDecoder, decoder_for
from .encoding import EncodeSettings, resolve
from .errors import StreamVAEError
from .latents import as_video_latent
from .precision import chunks_in_precision, precision_dtype
from .pipeline import FrameSource, Progress, iterate_host_chunks, run_to_consumer
from .stats import DEFAULT_PRICE_PER_GPU_HOUR, DecodeStats, PeakRSS, peak_vram_tracker
from .writer import VideoWriter, check_output_path

ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


def _check_run_options(mode: str, slots: int) -> None:
    if mode not in MODES:
        raise StreamVAEError(f"unknown mode {mode!r}; use 'exact' (stock ComfyUI's bytes) or 'fast'")
    if not isinstance(slots, int) or not 1 <= slots <= 16:
        raise StreamVAEError(f"slots={slots!r}: use 2 (double buffering) or any count from 1 to 16")


def source_from_decoder(decoder: ChunkDecoder, latent: torch.Tensor, precision: str = "auto") -> FrameSource:
    """The frames `decoder` (from decoder_for, which picked it for the mode) makes of `latent`."""
    height, width = decoder.output_size(latent)
    chunks = chunks_in_precision(decoder, latent, precision)
    return FrameSource(chunks, decoder.output_frames(latent), height, width, decoder.device, decoder.unit_range,
                       decoder.name)


def source_from_images(images: torch.Tensor) -> FrameSource:
    """ComfyUI's IMAGE (`[N, H, W, 3]` float in [0, 1]) as a frame source, 4 frames at a time, no copy."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise StreamVAEError(f"expected IMAGE frames [N, H, W, 3] with N >= 1, got {shape}")
    chunks = (images[start:start + 4].permute(3, 0, 1, 2).unsqueeze(0) for start in range(0, images.shape[0], 4))
    return FrameSource(chunks, images.shape[0], images.shape[1], images.shape[2], images.device, unit_range=True,
                       name="IMAGE frames")


def write_video(source: FrameSource, path: os.PathLike | str, settings: EncodeSettings, *,
                audio: Optional[dict] = None, metadata: Optional[dict] = None, mode: str = "exact",
                slots: int = 2, progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None,
                price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR, preview_width: int = 0,
                started: Optional[float] = None) -> DecodeStats:
    """Stream `source` into a finished file at `path`; on any failure or cancel no file is left behind."""
    _check_run_options(mode, slots)
    settings = settings.for_file(path)  # the container the file name asks for
    # Every setting checked before decoding; resolved once, for the layout and the writer.
    resolved = resolve(settings, (source.width, source.height), source.total_frames)
    started = time.perf_counter() if started is None else started
    peak_vram = peak_vram_tracker(torch.device(source.device))
    layout = layout_for(mode, resolved.pix_fmt, settings.style.matrix)  # fast: yuv420p planes made on the device
    with PeakRSS() as rss, VideoWriter(path, settings, source.width, source.height, audio=audio,
                                       metadata=metadata, input_format=layout.pix_fmt,
                                       frames=source.total_frames, resolved=resolved) as writer:
        result = run_to_consumer(source, writer.write, mode=mode, slots=slots, progress=progress, cancel=cancel,
                                 preview_width=preview_width, layout=layout)
        final_path = writer.finish()
    encoder = writer.resolved.encoder
    if mode == "fast" and layout is RGB24 and resolved.pix_fmt == "yuv420p":  # said in the log by layout_for
        encoder += f" (frames converted to yuv420p on the CPU: {settings.style.matrix})"
    return DecodeStats(
        frames=result.frames, width=source.width, height=source.height, fps=float(settings.fps),
        wall_seconds=time.perf_counter() - started, decode_seconds=result.decode_seconds,
        encode_seconds=writer.encode_seconds, peak_vram_bytes=peak_vram(), peak_host_rss_bytes=rss.peak,
        decoder=source.name, encoder=encoder, price_per_gpu_hour=price_per_gpu_hour,
        path=str(final_path))


def decode_to_video(vae: Any, latent: Any, path: os.PathLike | str, settings: Optional[EncodeSettings] = None, *,
                    audio: Optional[dict] = None, metadata: Optional[dict] = None, mode: str = "exact",
                    precision: str = "auto", slots: int = 2, progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelCheck] = None, price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR,
                    **encoder_options) -> DecodeStats:
    """Decode `latent` with `vae` chunk by chunk and encode it to `path` while the decoder keeps going.

    `vae`: ComfyUI's VAE, a diffusers AutoencoderKLWan, or anything with `.decode()`. `latent`: `[1, C, T, h, w]`
    or ComfyUI's LATENT dict (one video per call). `precision`: auto (the VAE's own dtype), fp32, bf16 or fp16.
    The encoder: an EncodeSettings, and/or its options by name (fps=16, codec="h264", crf, preset, pix_fmt,
    encoder, threads, parallel, container); the container is taken from the file name (`out.mkv` -> mkv).
    Every argument is checked before decoding starts.
    """
    started = time.perf_counter()
    settings = EncodeSettings.from_options(settings, **encoder_options).for_file(path)
    _check_run_options(mode, slots)
    precision_dtype(precision)
    check_output_path(Path(path))
    samples = as_video_latent(latent)
    decoder = decoder_for(vae, samples, mode, precision_dtype(precision))
    return write_video(source_from_decoder(decoder, samples, precision), path, settings, audio=audio,
                       metadata=metadata, mode=mode, slots=slots, progress=progress, cancel=cancel,
                       price_per_gpu_hour=price_per_gpu_hour, started=started)


def iter_frames(vae: Any, latent: Any, *, mode: str = "exact", precision: str = "auto", slots: int = 2,
                progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelCheck] = None) -> Iterator[torch.Tensor]:
    """Yield the video as uint8 `[t, H, W, 3]` CPU tensors, chunk by chunk, for callers that want frames."""
    _check_run_options(mode, slots)
    precision_dtype(precision)
    samples = as_video_latent(latent)
    decoder = decoder_for(vae, samples, mode, precision_dtype(precision))
    return iterate_host_chunks(source_from_decoder(decoder, samples, precision), mode=mode, slots=slots,
                               progress=progress, cancel=cancel)
