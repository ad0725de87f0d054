"""Faults injected mid-stream into the engine (no server): the encoder raising, the writer thread dying or
vanishing, a cancel at every possible point. Each must give a clear error, leave no temporary file, leave a
finished file of the same name byte-identical, leave no thread, and the next run must succeed."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from streamvae import Cancelled, EncoderError, StreamVAEError, decode_to_video
from streamvae import pipeline as pipeline_module
from streamvae.writer import VideoWriter

from support.process_checks import CancelAfter, count_from_env, engine_threads
from support.tiny_vaes import latent_for, tiny_diffusers_vae
from support.videos import partial_files, read_video

LATENT_FRAMES = 4  # 13 frames: four chunks, so a fault can land before, between and after them
FRAMES = 1 + 4 * (LATENT_FRAMES - 1)
OLD_BYTES = b"a finished video the user already has\n" * 100


@pytest.fixture(scope="module")
def vae():
    return tiny_diffusers_vae("wan2.1")


@pytest.fixture
def target(tmp_path):
    """A path that already holds a finished file: a failed run must leave it exactly as it was."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(OLD_BYTES)
    return path


def assert_clean_failure(target, folder):
    assert target.read_bytes() == OLD_BYTES, "the finished file of the same name was touched"
    assert not partial_files(folder), "a temporary file was left behind"
    assert engine_threads() == [], "an engine thread is still running"


def assert_next_run_succeeds(vae, folder):
    out = folder / "next.mp4"
    stats = decode_to_video(vae, latent_for(vae, LATENT_FRAMES, 8, 8), out, fps=16, preset="ultrafast")
    frames = read_video(out).frames
    assert stats.frames == FRAMES and frames.shape == (FRAMES, 64, 64, 3)


@pytest.mark.parametrize("fail_on_call", [1, 2, 4])
def test_encoder_raising_mid_stream(vae, target, tmp_path, monkeypatch, fail_on_call):
    """PyAV's encoder fails on the n-th chunk (as a codec error or a full disk surfaces from `encode`)."""
    original = VideoWriter.write
    calls = []

    class BrokenStream:
        def __init__(self, stream):
            self._stream = stream

        def encode(self, frame):
            raise RuntimeError("[Errno 5] Input/output error (injected)")

    def write(self, frames):
        calls.append(len(frames))
        if len(calls) == fail_on_call:
            self.stream = BrokenStream(self.stream)
        return original(self, frames)

    monkeypatch.setattr(VideoWriter, "write", write)
    with pytest.raises(EncoderError) as raised:
        decode_to_video(vae, latent_for(vae, LATENT_FRAMES, 8, 8), target, fps=16, preset="ultrafast")
    message = str(raised.value)
    assert str(target) in message and "Input/output error" in message and "No file was left behind" in message
    assert len(calls) == fail_on_call, "the decoder kept going after the encoder failed"
    assert_clean_failure(target, tmp_path)
    monkeypatch.undo()
    assert_next_run_succeeds(vae, tmp_path)


def test_encoder_failing_at_finish(vae, target, tmp_path, monkeypatch):
    """The last flush fails (the moment a full disk most often shows): the temp file goes, the old file stays."""
    def finish(self):
        self.stream = type("Broken", (), {"encode": lambda _self, frame: (_ for _ in ()).throw(
            OSError(28, "No space left on device"))})()
        return original(self)

    original = VideoWriter.finish
    monkeypatch.setattr(VideoWriter, "finish", finish)
    with pytest.raises(EncoderError, match="No space left on device; free some disk space"):
        decode_to_video(vae, latent_for(vae, LATENT_FRAMES, 8, 8), target, fps=16, preset="ultrafast")
    assert_clean_failure(target, tmp_path)
    monkeypatch.undo()
    assert_next_run_succeeds(vae, tmp_path)


@pytest.mark.parametrize("error", [MemoryError(), KeyboardInterrupt()], ids=["MemoryError", "KeyboardInterrupt"])
def test_writer_thread_dying_with_an_error(vae, target, tmp_path, monkeypatch, error):
    """The writer thread hits an error that is not an encoder error (host out of memory, a signal)."""
    original = pipeline_module.SlotRing.host_frames
    calls = []

    def host_frames(self, staged):
        calls.append(staged.slot)
        if len(calls) == 2:
            raise error
        return original(self, staged)

    monkeypatch.setattr(pipeline_module.SlotRing, "host_frames", host_frames)
    with pytest.raises(type(error)):
        decode_to_video(vae, latent_for(vae, LATENT_FRAMES, 8, 8), target, fps=16, preset="ultrafast")
    assert_clean_failure(target, tmp_path)
    monkeypatch.undo()
    assert_next_run_succeeds(vae, tmp_path)


def test_writer_thread_vanishing_does_not_hang_the_decoder(vae, target, tmp_path, monkeypatch):
    """The writer thread ends without reporting anything (a bug, or a thread killed from outside). The decoder
    must notice and fail within seconds, not wait for a free slot forever."""
    original_run = pipeline_module.WriterThread.run

    def run_then_vanish(self):
        self.inbox.get()  # takes one chunk, never releases its slot, never reports
        return None

    monkeypatch.setattr(pipeline_module.WriterThread, "run", run_then_vanish)
    outcome = {}

    def decode():
        try:
            decode_to_video(vae, latent_for(vae, LATENT_FRAMES, 8, 8), target, fps=16, preset="ultrafast", slots=1)
        except BaseException as error:  # noqa: BLE001 - inspected below
            outcome["error"] = error

    worker = threading.Thread(target=decode, name="test-decode", daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the decoder waits forever for a writer thread that is gone"
    assert isinstance(outcome.get("error"), EncoderError), outcome
    assert "writer thread" in str(outcome["error"])
    monkeypatch.setattr(pipeline_module.WriterThread, "run", original_run)
    assert_clean_failure(target, tmp_path)
    assert_next_run_succeeds(vae, tmp_path)


@pytest.mark.soak
def test_cancel_storm_engine(vae, tmp_path):
    """Cancel at a random poll across many runs: each run raises Cancelled, leaves nothing, leaks no thread."""
    runs = count_from_env("STREAMVAE_ENGINE_CANCELS", 8)
    rng = random.Random(6)
    baseline = threading.active_count()
    polls_seen = []
    for run in range(runs):
        cancel = CancelAfter(rng.randint(0, 8))
        path = tmp_path / f"cancelled_{run}.mp4"
        try:
            decode_to_video(vae, latent_for(vae, LATENT_FRAMES, 8, 8, seed=run), path, fps=16, preset="ultrafast",
                            slots=rng.choice([1, 2, 3]), cancel=cancel)
        except Cancelled:
            assert not path.exists()
        else:  # the cancel came after the last poll: a complete file is the right answer
            frames = read_video(path).frames
            assert len(frames) == FRAMES
        polls_seen.append(cancel.polls)
        assert not partial_files(tmp_path)
    assert engine_threads() == []
    assert threading.active_count() <= baseline
    assert min(polls_seen) <= 2 < max(polls_seen), "the storm did not hit both early and late points"
    assert_next_run_succeeds(vae, tmp_path)


def test_finished_file_is_replaced_only_by_a_complete_one(vae, target, tmp_path):
    """The library's contract for an explicit path: a failed run leaves the old file; a finished run replaces it
    in one rename (never a half-written file under the final name)."""
    stats = decode_to_video(vae, latent_for(vae, LATENT_FRAMES, 8, 8), target, fps=16, preset="ultrafast")
    frames = read_video(target).frames
    assert stats.frames == len(frames) == FRAMES
    assert not np.array_equal(np.frombuffer(target.read_bytes()[:len(OLD_BYTES)], np.uint8),
                              np.frombuffer(OLD_BYTES, np.uint8))
    assert not partial_files(tmp_path)


def test_bad_settings_fail_before_touching_anything(vae, target, tmp_path):
    with pytest.raises(StreamVAEError, match="cannot hold ffv1"):
        decode_to_video(vae, latent_for(vae, 2, 8, 8), target, fps=16, container="mp4", codec="ffv1")
    assert_clean_failure(target, tmp_path)
