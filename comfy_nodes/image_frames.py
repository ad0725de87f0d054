"""A FrameSource -> ComfyUI's IMAGE (`[N, H, W, 3]` in [0, 1]), built chunk by chunk.

Stock VAE Decode builds the whole video on the GPU (a growing concatenation), copies it to the host, then converts.
Here each chunk is converted on its device with the very same operations (ComfyUI's `VAE.process_output`,
`clamp((x + 1) / 2, 0, 1)`, in the host's intermediate dtype: float32 unless ComfyUI runs with
--fp16-intermediates), copied to the host through pinned slots, and placed into one preallocated tensor,
so the result is the same numbers while the GPU only ever holds a chunk or two and the decoder's cache.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import torch

from ..streamvae import FrameSource, Progress, StreamVAEError
from ..streamvae.pipeline import iterate_host_chunks

OpenSource = Callable[[int], FrameSource]


def unit_float_frames(chunk: torch.Tensor, unit_range: bool, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`[1, 3, t, H, W]` -> `[t, H, W, 3]` in [0, 1] as `dtype`, exactly as VAE.decode computes it: converted to the
    host's intermediate dtype first (float32; float16 under ComfyUI's --fp16-intermediates), then shifted and
    clamped in it."""
    frames = chunk[0].permute(1, 2, 3, 0).to(dtype)
    return frames if unit_range else torch.clamp((frames + 1.0) / 2.0, min=0.0, max=1.0)


def frame_range(total: int, start: int, count: int) -> range:
    """Frames `start .. start + count` of `total` (count 0: to the end), checked."""
    if start < 0 or count < 0:
        raise StreamVAEError(f"start {start} and count {count} must not be negative")
    if start >= total:
        raise StreamVAEError(f"start {start} is past the last frame; the stream has {total} frames (0..{total - 1})")
    stop = total if count == 0 else min(total, start + count)
    return range(start, stop)


def collect_images(open_source: OpenSource, videos: int, output_device: torch.device, *, start: int = 0,
                   count: int = 0, progress: Optional[Callable[[Progress], None]] = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decode videos `0..videos-1` one after another and return the wanted frames of all of them, in order.

    Decoding stops after the last wanted frame; earlier frames must still be decoded (the cache is causal) but
    are not kept. The first video tells the size of the others (every video of one latent has the same shape).
    """
    first = open_source(0)
    per_video, height, width = first.total_frames, first.height, first.width
    wanted = frame_range(per_video * videos, start, count)
    images = torch.empty((len(wanted), height, width, 3), dtype=dtype, device=output_device)
    for index in range(videos):
        offset = index * per_video
        if offset >= wanted.stop:
            break
        source = first if index == 0 else open_source(index)
        _fill(source, images, offset, wanted, progress)
    return images


def _fill(source: FrameSource, images: torch.Tensor, offset: int, wanted: range,
          progress: Optional[Callable[[Progress], None]]) -> None:
    """Copy this video's frames that fall in `wanted` into `images`; `offset` is its first frame's number.

    Chunks travel through the engine's pinned slots in the images' dtype: on a GPU the copy of chunk i overlaps the
    decode of chunk i+1, and this thread only ever copies host memory.
    """
    convert = functools.partial(_unit_float_into, unit_range=source.unit_range, dtype=images.dtype)
    host_chunks = iterate_host_chunks(source, convert=convert, dtype=images.dtype)
    position = offset
    try:
        for chunk in host_chunks:
            frames = chunk.shape[0]
            low, high = max(position, wanted.start), min(position + frames, wanted.stop)
            if low < high:
                images[low - wanted.start:high - wanted.start].copy_(chunk[low - position:high - position])
            position += frames
            if progress is not None:  # counted in frames decoded: those before `start` cost time too
                progress(Progress(min(position, wanted.stop), wanted.stop, 0.0))
            if position >= wanted.stop:
                break
    finally:
        host_chunks.close()  # frees the decoder's causal cache and the slots now, also when we stop early


def _unit_float_into(chunk: torch.Tensor, *, unit_range: bool, dtype: torch.dtype, out: torch.Tensor) -> torch.Tensor:
    return out.copy_(unit_float_frames(chunk, unit_range, dtype))


def intermediate_dtype() -> torch.dtype:
    """The dtype ComfyUI passes images between nodes in: float16 under --fp16-intermediates (ComfyUI 0.33 on),
    else float32."""
    import comfy.model_management  # noqa: PLC0415 - ComfyUI only imports inside the server

    return getattr(comfy.model_management, "intermediate_dtype", lambda: torch.float32)()
