"""Read videos back with PyAV, for assertions on what users will actually play."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np


@dataclass
class DecodedVideo:
    frames: np.ndarray  # [N, H, W, 3] uint8
    fps: Fraction
    codec: str
    metadata: dict
    audio_seconds: float | None


def read_video(path) -> DecodedVideo:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        audio_seconds = None
        if container.streams.audio:
            audio = container.streams.audio[0]
            audio_seconds = float(audio.duration * audio.time_base) if audio.duration else None
        return DecodedVideo(frames, stream.average_rate, stream.codec_context.name, dict(container.metadata),
                            audio_seconds)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def smooth_frames(count: int, height: int, width: int) -> np.ndarray:
    """Slowly drifting colour fields: content an encoder handles like real footage (noise is its worst case)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    frames = []
    for i in range(count):
        phase = 0.2 * i
        frames.append(np.stack([np.sin(3 * x + phase), np.cos(2 * y - phase), np.sin(2 * (x + y) + 0.5 * phase)],
                               axis=-1))
    return np.asarray((np.asarray(frames) + 1) * 110 + 15, dtype=np.uint8)
