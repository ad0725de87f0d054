"""Parallel encoding: the video cut into closed-GOP segments, each encoded by its own encoder, joined losslessly.

One libx264 encoder stops scaling well before 16 cores at 1280x720 (its frame threads wait on each other's
reference rows), so the CPU sits partly idle while the decoder outruns it. Here consecutive runs of
`segment_frames` frames go round-robin to `workers` threads; each segment is encoded from scratch by a fresh
encoder, so it starts with an IDR frame and no frame refers outside it (a closed GOP). The packets are then muxed
segment after segment with their timestamps moved by the segment's first frame: nothing is re-encoded.

The end of the video is cut finer when its length is known (`segment_lengths`). x264 holds more frames than a
segment has (look-ahead, B-frames, frame threads) before it emits anything, so a segment is mostly encoded after
its last frame arrives; with equal segments the whole last one was left to encode after the decoder finished
(most of the time between the last decoded frame and the finished file: docs/benchmarks.md, "The encoder's
tail"). Halving segments towards the end (..., 32, 17, 8, 8) leave only a few frames' work after the last one.

Why the join is sound:
- every encoder has the same settings, so the same sequence headers (SPS/PPS); each segment's header is checked
  against the first and the output stream's, and a mismatch stops with an error rather than a broken file;
- x264's decode timestamps are its presentation timestamps in decode order, moved back by a delay fixed by the
  settings (B-frame reordering), so shifting a whole segment by its start keeps dts strictly increasing across
  the joins and pts continuous (0, 1, 2, ... in frames).

Memory stays bounded: each worker's inbox holds a few frames (plus its encoder's look-ahead), and finished
segments wait as compressed packets only until the segments before them are muxed.
"""

from __future__ import annotations

import itertools
import queue
import threading
from typing import Any, Callable, Iterator, Optional

from .errors import EncoderError

_STOP = object()
_POLL_SECONDS = 0.05
# Frames waiting for each encoder. Few are needed: x264 takes frames into its own look-ahead at once, and the
# producer only has to stay ahead of the encoder it is feeding now.
_INBOX_FRAMES = 8
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
        self._segment = -1  # the segment being filled, its first frame and the frame after its last
        self._segment_start = self._segment_end = 0
        self._next_segment = 0  # the next segment to hand back for muxing
        self._finished: dict[int, tuple[Optional[bytes], list]] = {}
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None
        self._inboxes = [queue.Queue(maxsize=_INBOX_FRAMES) for _ in range(workers)]
        self._threads = [threading.Thread(target=self._work, args=(inbox,), name=f"streamvae-encoder-{index}",
                                          daemon=True) for index, inbox in enumerate(self._inboxes)]
        for thread in self._threads:
            thread.start()

    def encode(self, frame) -> list:
        """Queue one frame (blocks while its encoder's inbox is full); return the packets now ready to mux."""
        if self._frames == self._segment_end:  # a new segment begins
            self._segment += 1
            self._segment_start = self._frames
            self._segment_end += next(self._lengths)
        frame.pts = self._frames - self._segment_start
        self._put(frame)
        self._frames += 1
        if self._frames == self._segment_end:
            self._put(None)  # the segment is complete: its encoder flushes it
        return self._ready()

    def flush(self) -> list:
        """End the last segment, wait for every encoder, and return the remaining packets."""
        segments = self._segment + 1
        if self._frames < self._segment_end:
            self._put(None)
        for inbox in self._inboxes:
            self._put_into(inbox, _STOP)
        for thread in self._threads:
            while thread.is_alive():
                thread.join(_POLL_SECONDS)
                self._raise_if_failed()
        packets = self._ready()
        if self._next_segment != segments:
            raise EncoderError(f"only {self._next_segment} of {segments} encoded segments came back; "
                               "this is a bug in streamvae, please report it")
        return packets

    def close(self) -> None:
        """Stop every encoder thread without waiting for queued frames, and join them."""
        with self._lock:
            if self._error is None:
                self._error = EncoderError("the parallel encoders were stopped")
        for inbox in self._inboxes:
            _drain_and_stop(inbox)
        for thread in self._threads:
            thread.join()

    def _put(self, frame) -> None:
        """Hand a frame of the current segment (None: its end) to the segment's encoder."""
        inbox = self._inboxes[self._segment % len(self._inboxes)]
        self._put_into(inbox, (self._segment, self._segment_start, frame))

    def _put_into(self, inbox: queue.Queue, item) -> None:
        # Poll rather than block: a failed worker stops reading its inbox, and the caller must hear of it.
        while True:
            self._raise_if_failed()
            try:
                inbox.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
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

    def _work(self, inbox: queue.Queue) -> None:
        encoder, packets = None, []
        try:
            while True:
                item = inbox.get()
                if item is _STOP or self._error is not None:
                    return
                segment, first_frame, frame = item
                if encoder is None:
                    encoder, packets = self._open_encoder(), []
                packets.extend(encoder.encode(frame))  # None flushes the encoder
                if frame is not None:
                    continue
                for packet in packets:
                    packet.pts += first_frame
                    packet.dts += first_frame
                with self._lock:
                    self._finished[segment] = (encoder.extradata, packets)
                encoder = None  # PyAV frees an encoder when its last reference goes
        except BaseException as error:  # noqa: BLE001 - handed to the producer, which raises it
            with self._lock:
                if self._error is None:
                    self._error = error


def _drain_and_stop(inbox: queue.Queue) -> None:
    """Empty the inbox and leave _STOP in it, never blocking: a blocking put into a full inbox whose worker has
    already returned would wait forever."""
    while True:
        try:
            while True:
                inbox.get_nowait()
        except queue.Empty:
            pass
        try:
            inbox.put_nowait(_STOP)
            return
        except queue.Full:  # something was queued in between: drain again
            continue
