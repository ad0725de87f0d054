"""Read videos back with PyAV, for assertions on what users will actually play, and compare frames."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from benchmarks.fidelity import psnr_db as psnr  # noqa: F401 - the one PSNR, shared with the benchmarks


@dataclass
class DecodedVideo:
    frames: np.ndarray  # [N, H, W, 3] uint8
    fps: Fraction
    codec: str
    metadata: dict  # container tags, keys in lower case (Matroska stores them in upper case)
    audio_seconds: float | None


def read_video(path) -> DecodedVideo:
    """Every frame as RGB, the stream's average rate, codec, tags and audio length. Raises if the file doesn't decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        audio_seconds = None
        if container.streams.audio:
            audio = container.streams.audio[0]
            audio_seconds = float(audio.duration * audio.time_base) if audio.duration else None
        metadata = {key.lower(): value for key, value in container.metadata.items()}
        return DecodedVideo(frames, stream.average_rate, stream.codec_context.name, metadata, audio_seconds)


def relative_error(a, b) -> float:
    """‖a − b‖ / ‖b‖ of two tensors, in float64: how far a result is from its reference."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def smooth_frames(count: int, height: int, width: int) -> np.ndarray:
    """Slowly drifting colour fields: content an encoder handles like real footage (noise is its worst case)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    frames = []
    for i in range(count):
        phase = 0.2 * i
        frames.append(np.stack([np.sin(3 * x + phase), np.cos(2 * y - phase), np.sin(2 * (x + y) + 0.5 * phase)],
                               axis=-1))
    return np.asarray((np.asarray(frames) + 1) * 110 + 15, dtype=np.uint8)


def partial_files(folder) -> list[Path]:
    """Files a writer left under its temporary name (`*.partial*`): there must never be any after a run."""
    return [path for path in Path(folder).rglob("*") if ".partial" in path.name]
