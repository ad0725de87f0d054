"""What a decode cost: time, memory, and money per hour of video."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Optional

import psutil
import torch

# g7e.2xlarge (one RTX PRO 6000 Blackwell, 96 GB) on demand in us-east-2, 2026.
DEFAULT_PRICE_PER_GPU_HOUR = 3.36


@dataclass
class DecodeStats:
    frames: int
    width: int
    height: int
    fps: float
    wall_seconds: float
    decode_seconds: float          # decoder compute: CUDA event time on a GPU, thread time on a CPU
    encode_seconds: float          # time inside the encoder and muxer (overlaps decoding)
    peak_vram_bytes: Optional[int]
    peak_host_rss_bytes: int
    decoder: str = ""
    encoder: str = ""
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    path: Optional[str] = None

    @property
    def video_seconds(self) -> float:
        return self.frames / self.fps

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def encode_frames_per_second(self) -> float:
        return self.frames / self.encode_seconds if self.encode_seconds else 0.0

    @property
    def realtime_factor(self) -> float:
        """Wall seconds per second of video: below 1 is faster than real time."""
        return self.wall_seconds / self.video_seconds if self.frames else 0.0

    @property
    def gpu_busy(self) -> Optional[float]:
        """Share of the wall time the GPU spent decoding; None on a CPU."""
        if self.peak_vram_bytes is None or not self.wall_seconds:
            return None
        return min(1.0, self.decode_seconds / self.wall_seconds)

    @property
    def dollars_per_video_hour(self) -> float:
        """GPU cost of decoding one hour of video: RTF x $/GPU-hour."""
        return self.realtime_factor * self.price_per_gpu_hour

    def as_dict(self) -> dict:
        derived = ("video_seconds", "frames_per_second", "encode_frames_per_second", "realtime_factor",
                   "gpu_busy", "dollars_per_video_hour")
        return {**asdict(self), **{name: getattr(self, name) for name in derived}}


class PeakRSS:
    """Samples this process's resident memory in a background thread; `peak` after `stop()`."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = psutil.Process().memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamvae-rss", daemon=True)

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, process.memory_info().rss)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, psutil.Process().memory_info().rss)


class ComputeClock:
    """Sums decoder compute time: CUDA events on the compute stream, or the thread's own clock on a CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._pairs: list = []
        self._cpu_seconds = 0.0

    def start(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, started) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._pairs.append((started, event))
        else:
            self._cpu_seconds += time.perf_counter() - started

    def seconds(self) -> float:
        """Call after the work has finished (the events are then complete)."""
        if not self.cuda:
            return self._cpu_seconds
        return sum(start.elapsed_time(end) for start, end in self._pairs) / 1000.0


def peak_vram_tracker(device: torch.device):
    """Reset CUDA's peak counter; returns a function that reads it (None on a CPU)."""
    if device.type != "cuda":
        return lambda: None
    torch.cuda.reset_peak_memory_stats(device)
    return lambda: torch.cuda.max_memory_allocated(device)
