"""Drive pixel chunks through the slot ring to a consumer: the writer thread, or a caller's loop.

The calling thread launches the work (decoder kernels, conversion, the async copy) and never touches the file:
a writer thread waits on each chunk's copy event and encodes it. On a CPU the same two threads overlap decoding
with encoding, so the control flow tested in CI is the one that runs on a GPU.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from .convert import RGB24, FrameLayout, to_uint8_frames
from .errors import Cancelled, EncoderError
from .slots import SlotRing, StagedChunk
from .stats import ComputeClock

FRAMES_PER_SLOT = 4  # one latent frame of a Wan VAE


@dataclass
class FrameSource:
    """Pixel chunks `[1, 3, t, H, W]` in order, and what is known about them before the first one exists."""

    chunks: Iterator[torch.Tensor]
    total_frames: int
    height: int
    width: int
    device: torch.device
    unit_range: bool = False
    name: str = ""


@dataclass
class Progress:
    """What a progress callback sees after each chunk (on the calling thread)."""

    frames_done: int
    frames_total: int
    elapsed_seconds: float
    preview: Optional[np.ndarray] = None  # the newest encoded frame, downscaled, when a consumer offers one

    @property
    def frames_per_second(self) -> float:
        return self.frames_done / self.elapsed_seconds if self.elapsed_seconds else 0.0


@dataclass
class PipelineResult:
    decode_seconds: float
    frames: int


def _pieces(chunk: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """A decoder may hand back more frames at once than a slot holds (newer ComfyUI steps 2 latent frames)."""
    for start in range(0, chunk.shape[2], size):
        yield chunk[:, :, start:start + size]


def _timed(chunks: Iterator[torch.Tensor], clock: ComputeClock) -> Iterator[torch.Tensor]:
    """Bracket each decoder step (the kernels launched inside next()) with the compute clock."""
    while True:
        started = clock.start()
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        clock.stop(started)
        yield chunk


class WriterThread(threading.Thread):
    """Consumes staged chunks: wait for the copy, hand the frames to `consume`, free the slot."""

    DONE = None

    def __init__(self, ring: SlotRing, consume: Callable[[np.ndarray], None], preview_every: int,
                 layout: FrameLayout):
        super().__init__(name="streamvae-writer", daemon=True)
        self.ring = ring
        self.layout = layout
        self.consume = consume
        self.inbox: "queue.Queue[Optional[StagedChunk]]" = queue.Queue()
        self.error: Optional[BaseException] = None
        self.frames_done = 0
        self.preview: Optional[np.ndarray] = None
        self.preview_every = preview_every
        self._abandon = threading.Event()
        self.told_to_stop = False  # set when run() returns because it was told to (DONE or abandon)

    def run(self) -> None:
        with torch.inference_mode():  # threads don't inherit it from the caller
            while True:
                staged = self.inbox.get()
                if staged is self.DONE or self._abandon.is_set():
                    self.told_to_stop = True
                    return
                try:
                    frames = self.ring.host_frames(staged)
                    self.consume(frames)
                    if self.preview_every:
                        self.preview = self.layout.preview(frames[-1], self.preview_every)
                    self.frames_done += staged.frames
                except BaseException as error:  # noqa: BLE001 - handed to the calling thread, which raises it
                    self.error = error
                    return
                finally:
                    self.ring.release(staged.slot)

    def abandon(self) -> None:
        """Stop without consuming what is still queued (cancel or failure on the calling thread)."""
        self._abandon.set()
        self.inbox.put(self.DONE)


def _check(cancel: Optional[Callable[[], bool]], writer: Optional[WriterThread]) -> None:
    if writer is not None and writer.error is not None:
        raise writer.error
    if writer is not None and not writer.is_alive() and not writer.told_to_stop:
        # Without this the decoder would wait forever for a slot that a vanished consumer never frees.
        raise EncoderError("the video writer thread stopped without finishing or reporting an error; "
                           "no file was left behind. Please report this with the log")
    if cancel is not None and cancel():
        raise Cancelled("the decode was cancelled")


def on_device(device: torch.device):
    """Make `device` the current CUDA device while the decode runs. PyTorch's own kernels follow their tensors, but
    Triton kernels, and events recorded on "the current stream", go to the current device: for a VAE on another
    card than the current one (ComfyUI's Select VAE Device) they would run on, or order against, the wrong GPU."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def run_to_consumer(source: FrameSource, consume: Callable[[np.ndarray], None], *, mode: str = "exact",
                    slots: int = 2, progress: Optional[Callable[[Progress], None]] = None,
                    cancel: Optional[Callable[[], bool]] = None, preview_width: int = 0,
                    layout: FrameLayout = RGB24) -> PipelineResult:
    """Decode on this thread, consume (encode) on a writer thread; return when every frame is consumed.

    `layout` says what the consumer takes: rgb24 frames, or yuv420p planes converted on the device.

    Any exception here or in `consume`, and a cancel, stop both threads, join the writer and free the slots
    before it propagates; the caller removes the partial file.
    """
    convert = functools.partial(layout.convert, unit_range=source.unit_range, mode=mode)
    ring = SlotRing(slots, FRAMES_PER_SLOT, source.height, source.width, source.device,
                    frame_shape=layout.frame_shape(source.height, source.width))
    clock = ComputeClock(source.device)
    preview_every = max(1, source.width // preview_width) if preview_width else 0
    writer = WriterThread(ring, consume, preview_every, layout)
    writer.start()
    started = time.perf_counter()
    chunks = source.chunks
    finished = False
    try:
        with torch.inference_mode(), on_device(source.device):
            for chunk in _timed(chunks, clock):
                for piece in _pieces(chunk, FRAMES_PER_SLOT):
                    slot = ring.acquire(lambda: _check(cancel, writer))
                    writer.inbox.put(ring.stage(slot, piece, convert))
                del chunk
                _check(cancel, writer)
                if progress is not None:
                    progress(Progress(writer.frames_done, source.total_frames,
                                      time.perf_counter() - started, writer.preview))
        writer.inbox.put(WriterThread.DONE)
        writer.join()
        _check(None, writer)
        finished = True
    finally:
        if hasattr(chunks, "close"):
            chunks.close()  # frees the decoder's causal cache now, not at garbage collection
        if not finished:
            writer.abandon()
            writer.join()
        ring.close()
    if progress is not None:
        progress(Progress(writer.frames_done, source.total_frames, time.perf_counter() - started, writer.preview))
    return PipelineResult(clock.seconds(), writer.frames_done)


def iterate_host_chunks(source: FrameSource, *, mode: str = "exact", slots: int = 2,
                        progress: Optional[Callable[[Progress], None]] = None,
                        cancel: Optional[Callable[[], bool]] = None,
                        convert: Optional[Callable[..., torch.Tensor]] = None,
                        dtype: torch.dtype = torch.uint8) -> Iterator[torch.Tensor]:
    """Yield `[t, H, W, 3]` CPU tensors, keeping up to `slots` chunks in flight on the GPU.

    One thread: while the caller works on chunk i, the GPU already decodes chunk i+1. Each yielded tensor is
    the caller's own copy (the slot is reused right after). By default frames are uint8 as `mode` converts them;
    `convert(chunk, out=...)` and `dtype` let a caller stage other values (ComfyUI's float IMAGE, for one).
    """
    if convert is None:
        convert = functools.partial(to_uint8_frames, unit_range=source.unit_range, mode=mode)
    ring = SlotRing(slots, FRAMES_PER_SLOT, source.height, source.width, source.device, dtype)
    pieces = (piece for chunk in source.chunks for piece in _pieces(chunk, FRAMES_PER_SLOT))
    in_flight: deque[StagedChunk] = deque()
    done, started = 0, time.perf_counter()
    try:
        while True:
            while len(in_flight) < slots:
                # Per step: a generator must not leak the mode or the device to its caller.
                with torch.inference_mode(), on_device(source.device):
                    piece = next(pieces, None)
                    if piece is None:
                        break
                    in_flight.append(ring.stage(ring.free.get_nowait(), piece, convert))
            if not in_flight:
                return
            staged = in_flight.popleft()
            frames = torch.from_numpy(ring.host_frames(staged).copy())
            ring.release(staged.slot)
            done += staged.frames
            _check(cancel, None)
            if progress is not None:
                progress(Progress(done, source.total_frames, time.perf_counter() - started))
            yield frames
    finally:
        pieces.close()
        if hasattr(source.chunks, "close"):
            source.chunks.close()
        ring.close()
