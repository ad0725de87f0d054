"""How a video file is laid out and colour-described beyond what the encoder's settings decide, and how to learn
what the ComfyUI we run in does.

ComfyUI's Save Video (comfy_api's `VideoFromComponents.save_to`) changed this between releases:

- v0.3.64 and v0.8.0: MP4 with `movflags=use_metadata_tags`; rgb24 -> yuv420p by swscale's default (BT.601,
  limited range), no colour tags;
- v0.33.0: `use_metadata_tags+faststart` (the index moved before the media data when the file is closed);
- later releases: conversion with the BT.709 matrix and BT.709/sRGB colour tags.

Rather than pinning release numbers, `learn_file_style` lets the host's own implementation write a tiny clip and
reads back what it did. The nodes pass the result to the writer, so that exact mode, with stock's encoder settings,
writes the bytes that host's Save Video writes. The library alone writes `FileStyle()`, the v0.3.64 layout.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

log = logging.getLogger("streamvae")

UNSPECIFIED = 2  # FFmpeg's code point for "unspecified" primaries, transfer and matrix (H.273)
MATRIX_NAMES = {1: "BT.709", 5: "BT.601", 6: "BT.601", 9: "BT.2020"}
# Luma of a pure red frame, limited range, per conversion matrix: 16 + 219 * Kr.
RED_LUMA = {"BT.601": 16 + 219 * 0.299, "BT.709": 16 + 219 * 0.2126}
MATRIX_CODE = {"BT.709": 1}  # the colorspace to convert with; BT.601 is swscale's default, left implicit


@dataclass(frozen=True)
class ColourTags:
    """What the file says about its colours (FFmpeg's numbering of H.273's code points)."""

    primaries: int
    transfer: int
    matrix: int
    range: int  # 0 unspecified, 1 limited (MPEG), 2 full (JPEG)


@dataclass(frozen=True)
class FileStyle:
    """Container flags and colour handling for a file; the defaults are what ComfyUI v0.3.64 writes."""

    movflags: tuple[str, ...] = ("use_metadata_tags",)  # MP4 and MOV only
    matrix: str = "BT.601"  # what rgb24 frames are converted to YUV with (limited range)
    tags: Optional[ColourTags] = None  # None: the file carries no colour description
    notes: tuple[str, ...] = field(default=(), compare=False)  # what could not be followed, for the log

    def describe(self) -> str:
        tags = "no colour tags" if self.tags is None else (
            f"colour tags primaries={self.tags.primaries} transfer={self.tags.transfer} "
            f"matrix={self.tags.matrix} range={self.tags.range}")
        return f"MP4 movflags={'+'.join(self.movflags)}, RGB->YUV with {self.matrix} (limited range), {tags}"


# --------------------------------------------------------------------------- learning it from the host

ProbeWriter = Callable[[str, np.ndarray, dict], None]  # (path.mp4, uint8 [t, H, W, 3] frames, metadata) -> file
PROBE_KEY = "streamvae_probe"


def learn_file_style(write_like_host: ProbeWriter) -> FileStyle:
    """Have `write_like_host` write two flat red 16x16 frames to an MP4 with one metadata tag, and read back what it
    did: the tag kept (use_metadata_tags), the index first (faststart), colour tags, and the conversion matrix
    (the red frame's luma: 81 for BT.601, 63 for BT.709)."""
    import av  # noqa: PLC0415 - keep `import streamvae` light

    frames = np.zeros((2, 16, 16, 3), np.uint8)
    frames[..., 0] = 255
    with tempfile.TemporaryDirectory(prefix="streamvae_probe_") as folder:
        path = Path(folder) / "probe.mp4"
        write_like_host(str(path), frames, {PROBE_KEY: "1"})
        top_level = _top_level_boxes(path.read_bytes())
        with av.open(str(path)) as container:
            metadata = dict(container.metadata)
            stream = container.streams.video[0]
            context = stream.codec_context
            tag_values = (context.color_primaries, context.color_trc, context.colorspace, context.color_range)
            luma = float(next(container.decode(stream)).to_ndarray(format="yuv420p")[:16].mean())
    movflags = []
    if PROBE_KEY in metadata:
        movflags.append("use_metadata_tags")
    if "moov" in top_level and "mdat" in top_level and top_level.index("moov") < top_level.index("mdat"):
        movflags.append("faststart")
    tags = None if tag_values == (UNSPECIFIED, UNSPECIFIED, UNSPECIFIED, 0) else ColourTags(*map(int, tag_values))
    matrix, notes = _matrix_from_luma(luma)
    return FileStyle(tuple(movflags), matrix, tags, notes)


def _matrix_from_luma(luma: float) -> tuple[str, tuple[str, ...]]:
    matrix = min(RED_LUMA, key=lambda name: abs(RED_LUMA[name] - luma))
    if abs(RED_LUMA[matrix] - luma) <= 4:
        return matrix, ()
    return "BT.601", (f"the host converts colours in a way StreamVAE does not reproduce (pure red became luma "
                      f"{luma:.0f}, neither BT.601's 81 nor BT.709's 63 in limited range); writing BT.601",)


def _top_level_boxes(data: bytes) -> list[str]:
    """The names of an MP4 file's top-level boxes, in order."""
    names, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        names.append(data[offset + 4:offset + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8:
            break
        offset += size
    return names


def comfyui_save_video_writer() -> ProbeWriter:
    """A ProbeWriter that saves through the running ComfyUI's own Save Video code (CreateVideo's video object,
    saved as MP4/H.264 the way Save Video saves it); needs comfy_api importable."""
    from fractions import Fraction  # noqa: PLC0415

    import torch  # noqa: PLC0415
    from comfy_api.latest import InputImpl, Types  # noqa: PLC0415 - only inside ComfyUI

    def write(path: str, frames: np.ndarray, metadata: dict) -> None:
        images = torch.from_numpy(frames).float() / 255
        video = InputImpl.VideoFromComponents(Types.VideoComponents(images=images, frame_rate=Fraction(16)))
        video.save_to(path, format=Types.VideoContainer("mp4"), codec=Types.VideoCodec("h264"), metadata=metadata)

    return write


_host_style: Optional[FileStyle] = None


def host_file_style() -> FileStyle:
    """The FileStyle of the ComfyUI this process runs in, learnt once from its Save Video code; FileStyle() with a
    warning when that code can't be asked (an interface this version does not know)."""
    global _host_style
    if _host_style is None:
        try:
            _host_style = learn_file_style(comfyui_save_video_writer())
            log.info("streamvae: this ComfyUI's Save Video writes %s; exact mode follows it", _host_style.describe())
        except Exception as error:  # noqa: BLE001 - any failure: say so, and write the long-standing layout
            _host_style = FileStyle(notes=(f"could not learn how this ComfyUI's Save Video writes files "
                                           f"({type(error).__name__}: {error}); writing {FileStyle().describe()}",))
        for note in _host_style.notes:
            log.warning("streamvae: %s", note)
    return _host_style
