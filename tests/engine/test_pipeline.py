"""decode_to_video and iter_frames end to end on the CPU path: bytes, progress, cancel, faults, bad input."""

import subprocess

import numpy as np
import pytest
import torch

import streamvae
from streamvae import Cancelled, EncodeSettings, EncoderError, StreamVAEError, decode_to_video, iter_frames
from streamvae.writer import VideoWriter

from support.tiny_vaes import latent_for, stock_bytes
from support.videos import read_video


def test_exact_mode_file_holds_stock_comfyui_bytes(diffusers_vae, tmp_path, no_thread_left):
    latent = latent_for(diffusers_vae, latent_frames=3)
    stats = decode_to_video(diffusers_vae, latent, tmp_path / "x.mkv", fps=16, container="mkv", codec="ffv1")
    video = read_video(tmp_path / "x.mkv")
    assert np.array_equal(video.frames, stock_bytes(diffusers_vae, latent))
    assert stats.frames == 9 and stats.path == str(tmp_path / "x.mkv")
    assert stats.realtime_factor == pytest.approx(stats.wall_seconds / (9 / 16))
    assert stats.decode_seconds > 0 and stats.encode_seconds > 0 and stats.peak_host_rss_bytes > 0


def test_container_comes_from_the_file_name(wan21_vae, tmp_path):
    latent = latent_for(wan21_vae, latent_frames=2)
    decode_to_video(wan21_vae, latent, tmp_path / "out.mkv", codec="ffv1")
    video = read_video(tmp_path / "out.mkv")
    assert video.codec == "ffv1" and np.array_equal(video.frames, stock_bytes(wan21_vae, latent))
    # One EncodeSettings object does as well as its options by name.
    decode_to_video(wan21_vae, latent, tmp_path / "settings.mkv", EncodeSettings(codec="ffv1"))
    assert read_video(tmp_path / "settings.mkv").codec == "ffv1"


@pytest.mark.parametrize("path,options,message", [
    ("out.mkv", dict(container="mp4"), r"out.mkv says mkv but container='mp4'.*name the file out.mp4"),
    ("out.mp4", dict(crff=20), r"unknown encoder option 'crff'; the encoder options are fps, container, codec"),
])
def test_file_name_and_options_that_disagree_are_refused(wan21_vae, tmp_path, path, options, message):
    with pytest.raises(StreamVAEError, match=message):
        decode_to_video(wan21_vae, latent_for(wan21_vae), tmp_path / path, **options)
    assert list(tmp_path.iterdir()) == []


def test_iter_frames_yields_the_same_bytes_chunk_by_chunk(wan21_vae, no_thread_left):
    latent = latent_for(wan21_vae, latent_frames=4)
    chunks = list(iter_frames(wan21_vae, {"samples": latent}))
    assert [c.shape[0] for c in chunks] == [1, 4, 4, 4]
    assert all(c.dtype == torch.uint8 and c.shape[1:] == (32, 48, 3) for c in chunks)
    assert np.array_equal(torch.cat(chunks).numpy(), stock_bytes(wan21_vae, latent))


@pytest.mark.parametrize("slots", [1, 3])
def test_slot_count_changes_nothing_in_the_output(wan21_vae, tmp_path, slots):
    latent = latent_for(wan21_vae, latent_frames=3)
    decode_to_video(wan21_vae, latent, tmp_path / "x.mkv", fps=16, container="mkv", codec="ffv1", slots=slots)
    assert np.array_equal(read_video(tmp_path / "x.mkv").frames, stock_bytes(wan21_vae, latent))


def test_exact_conversion_matches_stock_on_bf16_values():
    values = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(3)).mul(1.5).to(torch.bfloat16)
    stock = torch.clamp((values.float() + 1.0) / 2.0, 0.0, 1.0)
    stock = (stock * 255).clamp(0, 255).byte()[0].permute(1, 2, 3, 0)
    ours = streamvae.convert.to_uint8_frames(values, mode="exact")
    assert torch.equal(ours, stock)
    fast = streamvae.convert.to_uint8_frames(values, mode="fast")
    assert (fast.int() - stock.int()).abs().max() <= 2


def test_progress_reports_every_chunk_up_to_the_total(wan21_vae, tmp_path):
    seen = []
    decode_to_video(wan21_vae, latent_for(wan21_vae, latent_frames=4), tmp_path / "x.mp4", fps=16,
                    progress=lambda p: seen.append((p.frames_done, p.frames_total)))
    assert len(seen) >= 4 and all(total == 13 for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1][0] == 13


def test_cancel_after_the_second_chunk_leaves_nothing(wan21_vae, tmp_path, no_thread_left):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        decode_to_video(wan21_vae, latent_for(wan21_vae, latent_frames=6), tmp_path / "x.mp4", fps=16,
                        cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_encoder_failure_mid_stream_is_reported_and_cleaned_up(wan21_vae, tmp_path, monkeypatch, no_thread_left):
    real_write = VideoWriter.write
    written = []

    def failing_write(self, frames):
        written.append(len(frames))
        if len(written) == 2:
            raise EncoderError("injected encoder failure")
        real_write(self, frames)

    monkeypatch.setattr(VideoWriter, "write", failing_write)
    with pytest.raises(EncoderError, match="injected"):
        decode_to_video(wan21_vae, latent_for(wan21_vae, latent_frames=5), tmp_path / "x.mp4", fps=16)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a real 'No space left on device' from the kernel."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}); needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_is_a_clear_error_and_leaves_no_file(wan21_vae, tiny_disk, no_thread_left):
    latent = latent_for(wan21_vae, latent_frames=12, height=16, width=16)  # 45 frames 128x128, lossless: > 256 KiB
    with pytest.raises(EncoderError, match="No space left on device.*free some disk space"):
        decode_to_video(wan21_vae, latent, tiny_disk / "x.mkv", fps=16, container="mkv", codec="ffv1")
    assert list(tiny_disk.iterdir()) == []


@pytest.mark.parametrize("latent,message", [
    (torch.randn(1, 16, 4, 4), "4-D image latent"),
    (torch.randn(1, 16, 0, 4, 4), "zero frames"),
    (torch.full((1, 16, 2, 4, 4), float("nan")), "NaN or inf"),
    (torch.randn(2, 16, 2, 4, 4), r"holds 2 videos.*latent\[i:i\+1\]"),
    (torch.randn(1, 48, 2, 4, 4), "48 channels but this VAE"),
    ({"noise": 1}, "LATENT dict with 'samples'"),
])
def test_bad_latents_are_refused_clearly(wan21_vae, tmp_path, latent, message, no_thread_left):
    with pytest.raises(StreamVAEError, match=message):
        decode_to_video(wan21_vae, latent, tmp_path / "x.mp4", fps=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options,message", [
    (dict(fps=0), "out of range"),
    (dict(mode="turbo"), "unknown mode"),
    (dict(slots=0), "slots=0"),
    (dict(codec="h264", container="webm"), "cannot hold h264"),
])
def test_bad_options_are_refused_before_decoding(wan21_vae, tmp_path, options, message):
    with pytest.raises(StreamVAEError, match=message):
        decode_to_video(wan21_vae, latent_for(wan21_vae), tmp_path / "x.mp4", **{"fps": 16, **options})
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder_is_refused(wan21_vae, tmp_path):
    with pytest.raises(StreamVAEError, match="does not exist"):
        decode_to_video(wan21_vae, latent_for(wan21_vae), tmp_path / "missing" / "x.mp4", fps=16)


def test_a_missing_nvenc_is_reported_once(wan21_vae, tmp_path, caplog):
    """Asked for NVENC on a machine without it (here: no GPU), the decode falls back to the CPU encoder and says
    so once, not once for each place that reads the settings."""
    with caplog.at_level("WARNING", logger="streamvae"):
        decode_to_video(wan21_vae, latent_for(wan21_vae), tmp_path / "x.mp4", fps=16, encoder="nvenc",
                        preset="ultrafast")
    warnings = [record for record in caplog.records if "not available on this machine" in record.getMessage()]
    assert len(warnings) == 1, [record.getMessage() for record in caplog.records]
    assert read_video(tmp_path / "x.mp4").frames.shape[0] == 9
