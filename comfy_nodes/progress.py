"""Per-chunk progress inside a running node: ComfyUI's progress bar, the interrupt check, and live messages.

Everything here runs on the thread that executes the node: the engine calls its progress callback on the calling
thread after each chunk, never from its writer thread. That matters because ComfyUI's interrupt check consumes the
flag and raises; raised here, the exception unwinds the engine (worker joined, slots freed, partial file removed)
and reaches ComfyUI's executor, which reports `execution_interrupted`.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Optional

import numpy as np
import torch

import comfy.model_management
import comfy.utils
from comfy_execution.utils import get_executing_context

from ..streamvae import DecodeStats, Progress

PROGRESS_EVENT = "streamvae.progress"
DONE_EVENT = "streamvae.done"
MESSAGES_PER_SECOND = 4  # enough to look live, few enough not to flood a remote browser
PREVIEW_WIDTH = 256
PREVIEW_JPEG_QUALITY = 70


class ChunkProgress:
    """ComfyUI's progress bar in frames, advanced per chunk; raises if the user interrupted.

    A node writing several videos sets `total` (all of them) and `offset` (frames of the videos before this one);
    otherwise the engine's own count is the bar.
    """

    def __init__(self):
        self.total: Optional[int] = None
        self.offset = 0
        self.bar = comfy.utils.ProgressBar(1)

    def frames_done(self, progress: Progress) -> int:
        return self.offset + progress.frames_done

    def frames_total(self, progress: Progress) -> int:
        return self.total or progress.frames_total

    def __call__(self, progress: Progress) -> None:
        # ProgressBar's hook also checks the interrupt; checking here too keeps the promise when no hook is set.
        self.bar.update_absolute(self.frames_done(progress), self.frames_total(progress))
        comfy.model_management.throw_exception_if_processing_interrupted()


class LiveProgress(ChunkProgress):
    """The progress bar, plus throttled `streamvae.progress` messages with stats and a preview for the web
    extension, and one `streamvae.done` at the end."""

    def __init__(self, fps: float):
        super().__init__()
        self.fps = fps
        # Which decoder runs (DecodeStats.decoder), shown with the stats: in fast mode "streamvae-wan2.1 bf16
        # (triton)", or the host's decoder and why fast mode could not apply.
        self.decoder = ""
        self.started = time.perf_counter()
        self.last_sent = 0.0
        context = get_executing_context()
        self.node_id = context.node_id if context else None
        self.prompt_id = context.prompt_id if context else None

    def __call__(self, progress: Progress) -> None:
        super().__call__(progress)
        now = time.perf_counter()
        done, total = self.frames_done(progress), self.frames_total(progress)
        if now - self.last_sent < 1 / MESSAGES_PER_SECOND and done < total:
            return
        self.last_sent = now
        self._send(PROGRESS_EVENT, {**self._stats(done, total, now - self.started),
                                    "preview": _jpeg_data_url(progress.preview)})

    def done(self, stats: list[DecodeStats]) -> None:
        frames = sum(item.frames for item in stats)
        summary = self._stats(frames, frames, time.perf_counter() - self.started)
        busy = [item.gpu_busy for item in stats if item.gpu_busy is not None]
        summary["gpu_busy"] = sum(busy) / len(busy) if busy else None
        self._send(DONE_EVENT, {**summary, "files": [item.as_dict() for item in stats]})

    def _stats(self, frames_done: int, frames_total: int, elapsed: float) -> dict:
        video_seconds = frames_done / self.fps
        return {
            "decoder": self.decoder,
            "frames_done": frames_done,
            "frames_total": frames_total,
            "elapsed_seconds": elapsed,
            "frames_per_second": frames_done / elapsed if elapsed else 0.0,
            # Wall seconds per second of video, as in DecodeStats: below 1 is faster than real time.
            "realtime_factor": elapsed / video_seconds if video_seconds else None,
            "gpu_busy": _gpu_busy(),
        }

    def _send(self, event: str, data: dict) -> None:
        from server import PromptServer  # noqa: PLC0415 - ComfyUI's server module exists only inside ComfyUI

        server = PromptServer.instance
        # prompt_id lets headless clients tell prompts apart; node tells the web extension which node to draw on.
        server.send_sync(event, {**data, "prompt_id": self.prompt_id, "node": self.node_id}, server.client_id)


def _jpeg_data_url(frame: Optional[np.ndarray]) -> Optional[str]:
    if frame is None:
        return None
    from PIL import Image  # noqa: PLC0415 - only needed once a preview exists

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _gpu_busy() -> Optional[float]:
    """The GPU's own utilisation (0..1) where NVML can tell; None on a CPU or without NVML."""
    if not torch.cuda.is_available():
        return None
    try:
        return torch.cuda.utilization(comfy.model_management.get_torch_device()) / 100.0
    except Exception:  # noqa: BLE001 - NVML absent or unsupported: the stat is optional
        return None
