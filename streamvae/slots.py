"""The double buffer: N device slots and N pinned host slots, a copy stream, CUDA events, a free-slot queue.

A chunk's life: the compute stream converts it to uint8 into device slot i and records `ready`; the copy stream
waits for `ready`, copies slot i into pinned host slot i, and records `copied`; the consumer waits for `copied`,
uses the host frames, and releases slot i. Slot i is handed out again only after that release, so neither buffer
is overwritten while a copy or the consumer still reads it, and the free-slot queue is the back-pressure that
keeps memory at N chunks however long the video. Without CUDA the same objects work on host tensors alone.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

MAX_POOLED_BYTES = 512 * 1024 * 1024


class PinnedPool:
    """Pinned host memory is slow to allocate (page-locking), so finished runs hand their buffers back here.

    Bounded: buffers beyond MAX_POOLED_BYTES are freed, oldest first. `clear()` gives everything back.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._buffers: list[torch.Tensor] = []

    def take(self, shape: tuple[int, ...], dtype: torch.dtype = torch.uint8) -> torch.Tensor:
        with self._lock:
            for index, buffer in enumerate(self._buffers):
                if tuple(buffer.shape) == shape and buffer.dtype == dtype:
                    return self._buffers.pop(index)
        return torch.empty(shape, dtype=dtype, pin_memory=True)

    def give(self, buffer: torch.Tensor) -> None:
        with self._lock:
            self._buffers.append(buffer)
            while sum(b.nbytes for b in self._buffers) > MAX_POOLED_BYTES:
                self._buffers.pop(0)

    def clear(self) -> None:
        with self._lock:
            self._buffers.clear()

    def pooled_bytes(self) -> int:
        """Pinned bytes held for reuse (at most MAX_POOLED_BYTES)."""
        with self._lock:
            return sum(buffer.nbytes for buffer in self._buffers)


PINNED_POOL = PinnedPool()


@dataclass
class StagedChunk:
    """A chunk on its way to the host: which slot, how many frames, and the event that says the copy is done."""

    slot: int
    frames: int
    copied: Optional[torch.cuda.Event]


class SlotRing:
    def __init__(self, slots: int, frames_per_slot: int, height: int, width: int, device: torch.device,
                 dtype: torch.dtype = torch.uint8, frame_shape: Optional[tuple[int, ...]] = None):
        """`frame_shape`: one frame's array when it is not `[H, W, 3]` (yuv420p planes are `[H*3/2, W]`)."""
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.frames_per_slot = frames_per_slot
        shape = (frames_per_slot, *(frame_shape or (height, width, 3)))
        self.free: "queue.Queue[int]" = queue.Queue()
        self.host: list[torch.Tensor] = []
        self.device_slots: list[torch.Tensor] = []
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        for index in range(slots):
            if self.cuda:
                self.host.append(PINNED_POOL.take(shape, dtype))
                self.device_slots.append(torch.empty(shape, dtype=dtype, device=self.device))
            else:
                self.host.append(torch.empty(shape, dtype=dtype))
            self.free.put(index)

    def acquire(self, should_stop: Callable[[], None]) -> int:
        """Wait for a free slot; `should_stop` is polled meanwhile and raises to abandon the wait."""
        while True:
            should_stop()
            try:
                return self.free.get(timeout=0.05)
            except queue.Empty:
                continue

    def stage(self, slot: int, chunk: torch.Tensor, convert: Callable[..., torch.Tensor]) -> StagedChunk:
        """Convert `chunk` into slot `slot` and start its copy to the host. Returns at once on a GPU."""
        frames = chunk.shape[2]
        if not self.cuda:
            convert(chunk, out=self.host[slot][:frames])
            return StagedChunk(slot, frames, None)
        device_slot = self.device_slots[slot][:frames]
        convert(chunk, out=device_slot)  # on the compute (current) stream
        ready = torch.cuda.Event()
        ready.record()
        with torch.cuda.stream(self.copy_stream):
            self.copy_stream.wait_event(ready)
            self.host[slot][:frames].copy_(device_slot, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self.copy_stream)
        return StagedChunk(slot, frames, copied)

    def host_frames(self, staged: StagedChunk) -> np.ndarray:
        """Wait for the copy, then return the frames as a view on the host slot (valid until `release`)."""
        if staged.copied is not None:
            staged.copied.synchronize()
        return self.host[staged.slot][:staged.frames].numpy()

    def release(self, slot: int) -> None:
        self.free.put(slot)

    def close(self) -> None:
        """Give pinned buffers back to the pool and drop the device slots. Call once nothing is in flight."""
        if self.cuda:
            self.copy_stream.synchronize()
            for buffer in self.host:
                PINNED_POOL.give(buffer)
        self.host, self.device_slots = [], []
