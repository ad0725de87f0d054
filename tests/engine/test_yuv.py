"""GPU-side yuv420p (run here on the CPU: same torch code): parity with swscale, layout choice, encoded quality."""

import av
import numpy as np
import pytest
import torch

from streamvae import EncodeSettings, StreamVAEError
from streamvae.api import source_from_images, write_video
from streamvae.convert import RGB24, YUV420P, layout_for, to_uint8_frames
from streamvae.writer import VideoWriter
from streamvae.yuv import even_pad, rgb_to_yuv420p, yuv420p_preview

from support.videos import psnr, read_video, smooth_frames


def swscale_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """What PyAV's encoder path does to an rgb24 frame: swscale's default conversion, as `[H*3/2, W]`."""
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()


@pytest.mark.parametrize("content", ["smooth", "noise"])
def test_luma_is_swscale_exactly_and_chroma_within_one(content):
    rgb = (smooth_frames(1, 72, 128)[0] if content == "smooth"
           else np.random.default_rng(0).integers(0, 256, (72, 128, 3), dtype=np.uint8))
    ours = rgb_to_yuv420p(torch.from_numpy(rgb)[None])[0].numpy()
    ref = swscale_yuv420p(rgb)
    difference = np.abs(ours.astype(int) - ref.astype(int))
    assert difference[:72].max() == 0
    assert difference[72:].max() <= 1
    assert (difference[72:] > 0).mean() < 0.2


def test_odd_sizes_are_padded_by_repeating_the_edge():
    rgb = torch.from_numpy(smooth_frames(2, 33, 47))
    padded = even_pad(rgb)
    assert padded.shape == (2, 34, 48, 3)
    assert torch.equal(padded[:, 33, :47], rgb[:, 32]) and torch.equal(padded[:, :33, 47], rgb[:, :, 46])
    with pytest.raises(ValueError, match="even sizes"):
        rgb_to_yuv420p(rgb)


def test_layout_is_yuv_only_in_fast_mode_for_yuv420p_files():
    assert layout_for("fast", "yuv420p") is YUV420P
    assert layout_for("exact", "yuv420p") is RGB24  # stock's bytes come from swscale
    assert layout_for("fast", "yuv444p") is RGB24
    assert YUV420P.frame_shape(720, 1280) == (1080, 1280)  # 1.5 bytes a pixel instead of 3
    assert YUV420P.frame_shape(33, 47) == (51, 48)


def test_convert_writes_into_a_slot_and_previews_in_rgb():
    frames = smooth_frames(4, 32, 48)
    chunk = torch.from_numpy(frames).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1
    slot = torch.empty((4, *YUV420P.frame_shape(32, 48)), dtype=torch.uint8)
    YUV420P.convert(chunk, mode="fast", out=slot)
    expected = rgb_to_yuv420p(to_uint8_frames(chunk, mode="fast"))
    assert torch.equal(slot, expected)
    preview = YUV420P.preview(slot[-1].numpy(), 2)
    assert preview.shape == (16, 24, 3) and psnr(preview, frames[-1, ::2, ::2]) >= 30


@pytest.mark.parametrize("parallel", [1, 3])
def test_yuv420p_frames_round_trip_like_rgb24_frames(tmp_path, parallel):
    frames = smooth_frames(41, 64, 96)
    planes = rgb_to_yuv420p(torch.from_numpy(frames)).numpy()
    videos = {}
    for name, data in (("rgb24", frames), ("yuv420p", planes)):
        settings = EncodeSettings(fps=16, crf=10, encoder="software", parallel=parallel)
        with VideoWriter(tmp_path / f"{name}.mp4", settings, 96, 64, input_format=name) as writer:
            for start in range(0, len(data), 4):
                writer.write(data[start:start + 4])
            videos[name] = read_video(writer.finish())
    for video in videos.values():
        assert video.frames.shape == frames.shape and video.fps == 16
        assert psnr(video.frames, frames) >= 40
    assert psnr(videos["yuv420p"].frames, videos["rgb24"].frames) >= 45


def test_yuv420p_input_is_refused_for_other_pixel_formats(tmp_path):
    with pytest.raises(StreamVAEError, match="can't be written to a yuv444p video"):
        VideoWriter(tmp_path / "x.mp4", EncodeSettings(fps=16, pix_fmt="yuv444p"), 32, 32, input_format="yuv420p")
    assert list(tmp_path.iterdir()) == []


def test_preview_of_a_grey_frame_is_grey():
    grey = np.full((1, 8, 8, 3), 128, np.uint8)
    preview = yuv420p_preview(rgb_to_yuv420p(torch.from_numpy(grey))[0].numpy(), 1)
    assert np.abs(preview.astype(int) - 128).max() <= 1


def images_of(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float() / 255  # ComfyUI's IMAGE: [N, H, W, 3] in [0, 1]


@pytest.mark.parametrize("height,width", [(64, 96), (33, 47)])
def test_fast_mode_streams_gpu_planes_end_to_end(tmp_path, height, width, no_thread_left):
    frames = smooth_frames(21, height, width)
    seen = []
    stats = write_video(source_from_images(images_of(frames)), tmp_path / "x.mp4",
                        EncodeSettings(fps=24, crf=0, encoder="software", parallel=2), mode="fast",
                        progress=seen.append, preview_width=16)
    video = read_video(stats.path)
    even = (height + height % 2, width + width % 2)
    assert video.frames.shape == (21, *even, 3) and video.fps == 24 and stats.frames == 21
    assert psnr(video.frames[:, :height, :width], frames) >= 40
    previews = [p.preview for p in seen if p.preview is not None]
    assert previews and previews[-1].ndim == 3 and previews[-1].shape[2] == 3  # RGB, not raw planes


def test_exact_mode_leaves_the_conversion_to_swscale(tmp_path, monkeypatch):
    frames = smooth_frames(9, 32, 48)
    lossless = EncodeSettings(fps=16, container="mkv", codec="ffv1", pix_fmt="yuv420p")
    monkeypatch.setattr("streamvae.yuv.rgb_to_yuv420p", lambda *a, **k: pytest.fail("exact mode converted on the GPU"))
    streamed = write_video(source_from_images(images_of(frames)), tmp_path / "exact.mkv", lossless, mode="exact")
    with VideoWriter(tmp_path / "direct.mkv", lossless, 48, 32) as writer:  # rgb24 in: swscale converts
        writer.write(frames)
        direct = writer.finish()
    assert np.array_equal(read_video(streamed.path).frames, read_video(direct).frames)
