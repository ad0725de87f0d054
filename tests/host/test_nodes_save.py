"""VAE Decode (Streaming) -> Save Video (Streaming) on a real server: the files, their frames, and stock parity."""

from fractions import Fraction

import numpy as np
import pytest

from support.videos import psnr, read_video
from support.graphs import (FRAMES, HEIGHT, LOSSLESS, WIDTH, save_node, saved_files,
                          streaming_prompt)
from streamvae import EncodeSettings
from streamvae.encoding import plan_parallel, usable_cores

# Core's Save Video with format mp4, codec h264: x264 at its defaults (crf 23, preset medium), one encoder.
STOCK_X264 = {"container": "mp4", "codec": "h264", "crf": 23, "preset": "medium", "encoder": "software"}


def with_stock_paths(prompt: dict, fps: int, family: str) -> dict:
    """Add stock VAE Decode, feeding (a) core's Create Video -> Save Video and (b) our save's IMAGE input, lossless."""
    return {
        **prompt,
        "stock_decode": {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0]}},
        "stock_video": {"class_type": "CreateVideo", "inputs": {"images": ["stock_decode", 0], "fps": fps}},
        "stock_save": {"class_type": "SaveVideo", "inputs": {"video": ["stock_video", 0], "format": "mp4",
                                                             "codec": "h264", "filename_prefix": f"stock/{family}"}},
        "stock_lossless": save_node({"images": ["stock_decode", 0]}, fps=fps,
                                    filename_prefix=f"stock/{family}_ffv1", **LOSSLESS),
    }


def one_encoder_on_the_server() -> bool:
    """Whether Save Video (Streaming) encodes with one libx264 (as stock does) on this machine, or in parallel
    segments (8 cores and more): the server runs here, with the same cores."""
    settings = EncodeSettings(fps=16, **STOCK_X264)
    return plan_parallel(settings, "libx264", usable_cores())[0] == 1


# Wan 2.1 with 13 frames: 4 latent frames, which ComfyUI v0.33.0's own decode takes as 1, then 2, then 1.
@pytest.mark.parametrize("family, fps, frames", [("wan21", 16, 13), ("wan22", 24, FRAMES)])
def test_exact_mode_writes_stock_comfyui_frames_and_files(comfy_client, comfy_server, family, fps, frames):
    output = comfy_server.tree.output
    prompt = streaming_prompt(family, fps=fps, filename_prefix=f"exact/{family}", latent={"frames": frames},
                              **LOSSLESS)
    prompt["ours_x264"] = save_node({"frames": ["stream", 0]}, fps=fps, filename_prefix=f"exact/{family}_x264",
                                    **STOCK_X264)
    run = comfy_client.run_prompt(with_stock_paths(prompt, fps, family), timeout=300)
    assert run.status == "success", run.of_type("execution_error")

    (ours,) = saved_files(run, output)
    assert ours.is_file() and ours.suffix == ".mkv"
    video = read_video(ours)
    decoded, rate, metadata = video.frames, video.fps, video.metadata
    assert decoded.shape == (frames, HEIGHT, WIDTH, 3)
    assert rate == Fraction(fps)
    assert decoded.std() > 10, "random weights decode to noise; flat frames would make the comparison hollow"
    assert '"StreamVAESaveVideo"' in metadata["prompt"]  # embed_workflow, stored as core's Save Video stores it

    # Lossless: the same bytes as stock VAE Decode's IMAGE converted as Save Video converts it.
    (stock_lossless,) = saved_files(run, output, "stock_lossless")
    np.testing.assert_array_equal(decoded, read_video(stock_lossless).frames)
    # End to end: stock VAE Decode -> Create Video -> Save Video against ours with Save Video's settings. Both
    # nodes embed the same prompt, and ours lays the file out as this release's Save Video does (faststart on
    # v0.33.0): with one encoder, the same file byte for byte.
    (stock_mp4,) = saved_files(run, output, "stock_save")
    (ours_mp4,) = saved_files(run, output, "ours_x264")
    if one_encoder_on_the_server():
        assert ours_mp4.read_bytes() == stock_mp4.read_bytes()
    else:  # parallel closed-GOP segments: another bitstream of the same frames
        assert psnr(read_video(ours_mp4).frames, read_video(stock_mp4).frames) >= 30


def test_history_and_events_report_the_video(comfy_client, comfy_server):
    run = comfy_client.run_prompt(streaming_prompt("wan21", filename_prefix="reported/clip"), timeout=300)
    assert run.status == "success", run.of_type("execution_error")
    saved_ui = run.outputs["save"]
    assert saved_ui["animated"] == [True]  # the frontend's cue to show a <video>
    (item,) = saved_ui["images"]
    assert item == {"filename": "clip_00001_.mp4", "subfolder": "reported", "type": "output"}
    assert {"node": "save", "output": saved_ui} in [
        {"node": data["node"], "output": data["output"]} for data in run.of_type("executed")]
    path = comfy_server.tree.output / "reported" / "clip_00001_.mp4"
    video = read_video(path)
    frames, rate = video.frames, video.fps
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and rate == 16
    assert comfy_client.view(item["filename"], item["subfolder"]) == path.read_bytes()


def test_same_prompt_twice_writes_two_complete_videos(comfy_client, comfy_server):
    prompt = streaming_prompt("wan21", filename_prefix="twice/clip")
    first = comfy_client.run_prompt(prompt, timeout=300)
    second = comfy_client.run_prompt(prompt, timeout=300)
    assert first.status == second.status == "success"
    # The second run reused the cached stream (ComfyUI handed back the same object) and still decoded it all.
    cached = [node for data in second.of_type("execution_cached") for node in data["nodes"]]
    assert "stream" in cached and "save" not in cached
    paths = saved_files(first, comfy_server.tree.output) + saved_files(second, comfy_server.tree.output)
    assert [path.name for path in paths] == ["clip_00001_.mp4", "clip_00002_.mp4"]
    first_frames, second_frames = (read_video(path).frames for path in paths)
    assert first_frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(first_frames, second_frames)


def test_a_batch_of_latents_writes_one_file_per_video(comfy_client, comfy_server):
    prompt = streaming_prompt("wan21", filename_prefix="batch/clip", latent={"batch": 2, "frames": 1})
    run = comfy_client.run_prompt(prompt, timeout=300)
    assert run.status == "success", run.of_type("execution_error")
    paths = saved_files(run, comfy_server.tree.output)
    assert [path.name for path in paths] == ["clip_00001_.mp4", "clip_00002_.mp4"]
    for path in paths:
        assert read_video(path).frames.shape == (1, HEIGHT, WIDTH, 3)


def test_images_input_and_frame_stream_round_trip(comfy_client, comfy_server):
    """Frame Stream to Images (a range) -> Images to Frame Stream -> save: the kept frames, losslessly."""
    prompt = streaming_prompt("wan21", filename_prefix="range/all", **LOSSLESS)
    prompt["images"] = {"class_type": "StreamVAEFrameStreamToImages",
                        "inputs": {"frames": ["stream", 0], "start": 1, "count": 3}}
    prompt["restream"] = {"class_type": "StreamVAEImagesToFrameStream", "inputs": {"images": ["images", 0]}}
    prompt["range_save"] = save_node({"frames": ["restream", 0]}, filename_prefix="range/part", **LOSSLESS)
    run = comfy_client.run_prompt(prompt, timeout=300)
    assert run.status == "success", run.of_type("execution_error")
    (whole,) = saved_files(run, comfy_server.tree.output)
    (part,) = saved_files(run, comfy_server.tree.output, "range_save")
    np.testing.assert_array_equal(read_video(part).frames, read_video(whole).frames[1:4])
