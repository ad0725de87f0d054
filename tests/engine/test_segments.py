"""Parallel closed-GOP segments joined into one file: same frames as one encoder, continuous timestamps, and
nothing left behind (file or thread) when a segment encoder fails or the write is abandoned."""

import os
import sys
import threading

import av
import pytest
import torch

from streamvae import EncodeSettings, EncoderError, StreamVAEError
from streamvae.encoding import plan_parallel, resolve
from streamvae.segments import ENCODER_NICENESS, SHORTEST_TAIL_SEGMENT, SegmentEncoders, segment_lengths
from streamvae.writer import VideoWriter

from support.videos import psnr, read_video, smooth_frames

FRAMES = 83  # 16 fps: segments of 32 frames, the last one short


def encode(path, frames, length_known=False, **settings):
    with VideoWriter(path, EncodeSettings(fps=16, crf=10, encoder="software", **settings), frames.shape[2],
                     frames.shape[1], frames=len(frames) if length_known else None) as writer:
        for start in range(0, len(frames), 4):
            writer.write(frames[start:start + 4])
        return writer.finish(), writer.resolved


def packets(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(packet.pts, packet.dts, packet.is_keyframe) for packet in container.demux(stream) if packet.size], \
            stream.time_base


def encoder_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("streamvae-encoder")]


def test_joined_segments_equal_one_encoder(tmp_path):
    frames = smooth_frames(FRAMES, 64, 96)
    single, _ = encode(tmp_path / "single.mp4", frames, parallel=1)
    joined, resolved = encode(tmp_path / "joined.mp4", frames, parallel=3)
    assert (resolved.segments, resolved.segment_frames) == (3, 32)
    one, many = read_video(single), read_video(joined)
    assert many.frames.shape == frames.shape and many.fps == 16
    assert psnr(many.frames, one.frames) >= 40 and psnr(many.frames, frames) >= 40
    assert encoder_threads() == []


def test_joined_timestamps_are_continuous_and_each_segment_starts_with_a_keyframe(tmp_path):
    joined, _ = encode(tmp_path / "joined.mp4", smooth_frames(FRAMES, 64, 96), parallel=2)
    found, time_base = packets(joined)
    step = int(1 / (16 * time_base))  # one frame in the stream's time base
    assert sorted(pts for pts, _, _ in found) == [i * step for i in range(FRAMES)]
    dts = [d for _, d, _ in found]
    assert all(a < b for a, b in zip(dts, dts[1:]))
    keyframes = {pts // step for pts, _, key in found if key}
    assert {0, 32, 64} <= keyframes


def test_the_end_of_a_video_of_known_length_is_cut_finer():
    def plan(total, segment_frames=32):
        lengths = segment_lengths(segment_frames, total)
        return [next(lengths) for _ in range(12)]

    assert plan(161) == [32] * 4 + [17, 8, 8] + [32] * 5  # 32 each again if more frames come than announced
    assert plan(None)[:5] == [32] * 5
    for total in range(1, 400):
        lengths, done = [], 0
        for length in segment_lengths(32, total):
            if done == total:
                break
            lengths.append(length)
            done += length
        assert done == total and max(lengths) <= 32, total
        assert lengths[-1] < 2 * SHORTEST_TAIL_SEGMENT, total


def test_a_finer_cut_end_joins_like_the_rest(tmp_path):
    """Length known: segments 32, 26, 13, 12 for 83 frames; every one starts with a keyframe, the timestamps run
    on, and the frames are what one encoder gives."""
    frames = smooth_frames(FRAMES, 64, 96)
    single, _ = encode(tmp_path / "single.mp4", frames, parallel=1)
    joined, _ = encode(tmp_path / "joined.mp4", frames, length_known=True, parallel=3)
    found, time_base = packets(joined)
    step = int(1 / (16 * time_base))
    assert sorted(pts for pts, _, _ in found) == [i * step for i in range(FRAMES)]
    dts = [d for _, d, _ in found]
    assert all(a < b for a, b in zip(dts, dts[1:]))
    assert {0, 32, 58, 71} <= {pts // step for pts, _, key in found if key}
    assert psnr(read_video(joined).frames, read_video(single).frames) >= 40
    assert encoder_threads() == []


def test_a_failing_segment_encoder_stops_everything_and_leaves_nothing(tmp_path, monkeypatch):
    opened = []
    original = VideoWriter._segment_encoder

    def fragile(self):
        if len(opened) == 2:  # the third segment's encoder breaks
            raise MemoryError("out of memory in the encoder")
        opened.append(1)
        return original(self)

    monkeypatch.setattr(VideoWriter, "_segment_encoder", fragile)
    with pytest.raises(EncoderError, match="out of memory in the encoder.*No file was left behind"):
        encode(tmp_path / "x.mp4", smooth_frames(200, 32, 32), parallel=2)
    assert list(tmp_path.iterdir()) == []
    assert encoder_threads() == []


def test_abandoning_mid_stream_joins_the_encoders_and_removes_the_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "x.mp4", EncodeSettings(fps=16, parallel=3), 32, 32) as writer:
            writer.write(smooth_frames(70, 32, 32))
            raise KeyboardInterrupt  # a cancel arrives as an exception on the writing thread
    assert list(tmp_path.iterdir()) == []
    assert encoder_threads() == []


def fake_encoder(on_flush=lambda segment: None):
    """A stand-in for a PyAV encoder class: frames carry their segment; the flush calls `on_flush(segment)`, then
    gives one packet of that segment."""

    class Encoder:
        extradata = b"headers"
        segment = None

        def encode(self, frame):
            if frame is not None:
                self.segment = frame.segment
                return []
            on_flush(self.segment)
            return [type("Packet", (), {"pts": 0, "dts": 0, "segment": self.segment})()]

    return Encoder


def test_packets_come_back_in_segment_order_whatever_order_segments_finish():
    slow_segment_0 = fake_encoder(lambda segment: segment == 0 and threading.Event().wait(0.2))  # finishes last
    encoders = SegmentEncoders(slow_segment_0, workers=3, segment_frames=2)
    out = []
    for index in range(6):
        out += encoders.encode(type("Frame", (), {"segment": index // 2})())
    out += encoders.flush()
    assert [(packet.segment, packet.pts) for packet in out] == [(0, 0), (1, 2), (2, 4)]


def test_a_segment_goes_to_a_free_encoder_not_behind_a_busy_one():
    """Segment 0 takes until segment 2 is encoded: with two encoders, segment 2 must go to the one that is free
    (round-robin would queue it behind segment 0, and the producer would wait on a busy encoder)."""
    segment_2_done = threading.Event()

    def on_flush(segment):
        if segment == 0:
            segment_2_done.wait(5)
        if segment == 2:
            segment_2_done.set()

    encoders = SegmentEncoders(fake_encoder(on_flush), workers=2, segment_frames=1)
    for index in range(3):
        encoders.encode(type("Frame", (), {"segment": index})())
    assert segment_2_done.wait(5), "segment 2 waited for the encoder busy with segment 0"
    assert [packet.segment for packet in encoders.flush()] == [0, 1, 2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_encoder_threads_yield_the_cpu_to_the_rest_of_the_process():
    """The thread feeding the GPU must not wait for a core behind the encoders: theirs run niced."""
    seen = []

    class Encoder:
        extradata = b"headers"

        def encode(self, frame):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return []

    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    encoders = SegmentEncoders(Encoder, workers=2, segment_frames=2)
    for _ in range(4):
        encoders.encode(type("Frame", (), {})())
    encoders.flush()
    assert seen and set(seen) == {min(19, ours + ENCODER_NICENESS)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ours


def test_parallel_plan_follows_the_cores_and_the_encoder():
    def plan(cores, **settings):
        return plan_parallel(EncodeSettings(fps=16, **settings), "libx264", cores)

    assert plan(2) == (1, 0)  # too few cores to split
    assert plan(8) == (4, 4) and plan(16) == (8, 4)
    assert plan(16, parallel=1) == (1, 0) and plan(8, parallel=4, threads=1) == (4, 1)
    assert plan_parallel(EncodeSettings(fps=16, parallel=4), "libx265", 16) == (1, 0)
    assert resolve(EncodeSettings(fps=24, parallel=2, encoder="software")).options["g"] == "48"


def test_negative_parallel_is_refused():
    with pytest.raises(StreamVAEError, match="parallel -1 must be 0"):
        resolve(EncodeSettings(fps=16, parallel=-1))


def test_audio_and_metadata_survive_the_join(tmp_path):
    waveform = torch.sin(torch.linspace(0, 2000, 44100 * 6)).repeat(1, 2, 1)
    frames = smooth_frames(FRAMES, 32, 32)
    with VideoWriter(tmp_path / "x.mp4", EncodeSettings(fps=16, parallel=2), 32, 32, metadata={"prompt": "{}"},
                     audio={"waveform": waveform, "sample_rate": 44100}) as writer:
        writer.write(frames)
        video = read_video(writer.finish())
    assert video.frames.shape == frames.shape
    assert video.audio_seconds == pytest.approx(FRAMES / 16, abs=0.05)
    assert video.metadata["prompt"] == "{}"
