"""Parallel encoding: the video cut into closed-GOP segments, each encoded by its own encoder, joined losslessly.

One libx264 encoder stops scaling well before 16 cores at 1280x720 (its frame threads wait on each other's
reference rows), so the CPU sits partly idle while the decoder outruns it. Here consecutive runs of
`segment_frames` frames are segments; each is encoded from scratch by a fresh encoder, so it starts with an IDR
frame and no frame refers outside it (a closed GOP). The packets are then muxed segment after segment with their
timestamps moved by the segment's first frame: nothing is re-encoded.

Segments go to whichever of the `workers` threads is free, not round-robin: with detailed content a segment can
take longer to encode than the decoder takes to make the next few, and a segment tied to a busy encoder held the
decoder up while other encoders sat idle (docs/benchmarks.md, "Encoder throughput").

The end of the video is cut finer when its length is known (`segment_lengths`). x264 holds more frames than a
segment has (look-ahead, B-frames, frame threads) before it emits anything, so a segment is mostly encoded after
its last frame arrives; with equal segments the whole last one was left to encode after the decoder finished
(most of the time between the last decoded frame and the finished file: docs/benchmarks.md, "The encoder's
tail"). Halving segments towards the end (..., 32, 17, 8, 8) leave only a few frames' work after the last one.

The encoder threads run at a lower CPU priority than the rest of the process (Linux: nice +10 for these threads
only; libx264's own threads, started from them, inherit it): when the encoders would take every core, the thread
that feeds the GPU still gets one.

Why the join is sound:
- every encoder has the same settings, so the same sequence headers (SPS/PPS); each segment's header is checked
  against the first and the output stream's, and a mismatch stops with an error rather than a broken file;
- x264's decode timestamps are its presentation timestamps in decode order, moved back by a delay fixed by the
  settings (B-frame reordering), so shifting a whole segment by its start keeps dts strictly increasing across
  the joins and pts continuous (0, 1, 2, ... in frames).

Memory stays bounded: a segment's frames wait for its encoder (which takes them into its look-ahead at once when
it is free); at most one segment more than the encoders waits for an encoder at all, and the producer blocks
while one does. Finished segments wait as compressed packets only until the segments before them are muxed.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
from typing import Any, Callable, Iterator, Optional

from .errors import EncoderError

_STOP = object()
_POLL_SECONDS = 0.05
# Segments that may wait for a free encoder before the producer blocks: one keeps every encoder fed the moment it
# frees without holding more than a segment of frames beyond what the encoders hold.
_WAITING_SEGMENTS = 1
# How much lower the encoder threads' priority is (nice levels; 19 is the lowest).
ENCODER_NICENESS = 10
# About the shortest segment the end of a video is cut into. Each segment costs a keyframe: a shorter tail leaves
# less to encode after the last frame for a bigger file, and 8 kept most of the gain (docs/benchmarks.md, "The
# encoder's tail").
SHORTEST_TAIL_SEGMENT = 8


def segment_lengths(segment_frames: int, total_frames: Optional[int] = None) -> Iterator[int]:
    """Lengths of consecutive segments: `segment_frames` each, except that when the video's length is known its
    last stretch (between one and two segments long) is cut in half, the rest in half again and so on, until less
    than twice SHORTEST_TAIL_SEGMENT is left. No segment is longer than `segment_frames`, so keyframes stay at
    least that close. Frames beyond `total_frames`, if any come, go on in whole segments."""
    if total_frames is not None and total_frames > 0:
        whole = max(0, total_frames // segment_frames - 1)
        yield from itertools.repeat(segment_frames, whole)
        rest = total_frames - whole * segment_frames
        while rest >= 2 * SHORTEST_TAIL_SEGMENT:
            half = (rest + 1) // 2
            yield half
            rest -= half
        if rest:
            yield rest
    yield from itertools.repeat(segment_frames)


class _Segment:
    """A run of frames for one encoder: its place in the video and the frames not yet taken (None ends it)."""

    def __init__(self, index: int, first_frame: int):
        self.index, self.first_frame = index, first_frame
        self.frames: queue.Queue = queue.Queue()  # holds at most the segment's length


class SegmentEncoders:
    """Takes frames in order, hands back packets ready to mux, in order, with continuous timestamps.

    `open_encoder()` returns a fresh, opened PyAV video CodecContext whose time base is one frame. Frames' pts are
    set here. Call `encode` per frame, then `flush` once; `close` (safe at any time, also after a failure) stops
    and joins every thread.
    """

    def __init__(self, open_encoder: Callable[[], Any], workers: int, segment_frames: int,
                 total_frames: Optional[int] = None):
        if workers < 1 or segment_frames < 1:
            raise ValueError(f"need at least one worker and one frame a segment, got {workers}, {segment_frames}")
        self.header: Optional[bytes] = None  # the sequence headers every segment must share
        self._open_encoder = open_encoder
        self._lengths = segment_lengths(segment_frames, total_frames)
        self._frames = 0
        self._segment: Optional[_Segment] = None  # the segment being filled
        self._segments = 0
        self._segment_end = 0  # the frame after the last of the segment being filled
        self._next_segment = 0  # the next segment to hand back for muxing
        self._finished: dict[int, tuple[Optional[bytes], list]] = {}
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None
        self._waiting: queue.Queue = queue.Queue(maxsize=_WAITING_SEGMENTS)  # segments no encoder has taken yet
        self._threads = [threading.Thread(target=self._work, name=f"streamvae-encoder-{index}", daemon=True)
                         for index in range(workers)]
        for thread in self._threads:
            thread.start()

    def encode(self, frame) -> list:
        """Queue one frame (blocks while every encoder is busy and a segment already waits); return the packets
        now ready to mux."""
        if self._frames == self._segment_end:  # a new segment begins
            self._segment = _Segment(self._segments, self._frames)
            self._segments += 1
            self._segment_end += next(self._lengths)
            self._put_waiting(self._segment)
        frame.pts = self._frames - self._segment.first_frame
        self._segment.frames.put(frame)
        self._frames += 1
        if self._frames == self._segment_end:
            self._segment.frames.put(None)  # the segment is complete: its encoder flushes it
        return self._ready()

    def flush(self) -> list:
        """End the last segment, wait for every encoder, and return the remaining packets."""
        if self._segment is not None and self._frames < self._segment_end:
            self._segment.frames.put(None)
        for _ in self._threads:
            self._put_waiting(_STOP)
        for thread in self._threads:
            while thread.is_alive():
                thread.join(_POLL_SECONDS)
                self._raise_if_failed()
        packets = self._ready()
        if self._next_segment != self._segments:
            raise EncoderError(f"only {self._next_segment} of {self._segments} encoded segments came back; "
                               "this is a bug in streamvae, please report it")
        return packets

    def close(self) -> None:
        """Stop every encoder thread without waiting for queued frames, and join them."""
        with self._lock:
            if self._error is None:
                self._error = EncoderError("the parallel encoders were stopped")
        for thread in self._threads:
            thread.join()

    def _put_waiting(self, item) -> None:
        # Poll rather than block: a failed worker stops taking segments, and the caller must hear of it.
        while True:
            self._raise_if_failed()
            try:
                self._waiting.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _take(self, source: queue.Queue):
        """The next item of `source`, or _STOP once anything has failed or the encoders were closed."""
        while True:
            with self._lock:
                if self._error is not None:
                    return _STOP
            try:
                return source.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue

    def _raise_if_failed(self) -> None:
        with self._lock:
            error = self._error
        if error is not None:
            raise error

    def _ready(self) -> list:
        """Packets of the finished segments that are next in order."""
        packets = []
        while True:
            with self._lock:
                done = self._finished.pop(self._next_segment, None)
            if done is None:
                return packets
            header, segment_packets = done
            if self.header is None:
                self.header = header
            elif header != self.header:
                raise EncoderError(f"segment {self._next_segment} was encoded with different sequence headers; "
                                   "parallel segments need identical encoder settings. Encode with parallel=1")
            packets.extend(segment_packets)
            self._next_segment += 1

    def _work(self) -> None:
        try:
            _yield_cpu_to_the_decoder()
            while (segment := self._take(self._waiting)) is not _STOP:
                if not self._encode_segment(segment):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the producer, which raises it
            with self._lock:
                if self._error is None:
                    self._error = error

    def _encode_segment(self, segment: _Segment) -> bool:
        """Encode one segment with a fresh encoder and file its packets; False when stopped part-way."""
        encoder, packets = self._open_encoder(), []
        while True:
            frame = self._take(segment.frames)
            if frame is _STOP:
                return False
            packets.extend(encoder.encode(frame))  # None flushes the encoder
            if frame is None:
                break
        for packet in packets:
            packet.pts += segment.first_frame
            packet.dts += segment.first_frame
        with self._lock:
            self._finished[segment.index] = (encoder.extradata, packets)
        return True  # PyAV frees the encoder when its last reference goes


def _yield_cpu_to_the_decoder() -> None:
    """Lower this thread's CPU priority (and so that of the threads libx264 starts from it), on Linux only: there
    a thread's id names that thread alone to setpriority; elsewhere it would name a process."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + ENCODER_NICENESS))
    except OSError:  # not allowed here (some sandboxes): the encoders run at the usual priority
        pass
