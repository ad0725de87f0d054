"""Bad input sweep: property-based tests over the engine's parameters, malformed files, a VAE of another family,
and filename prefixes that try to leave the output folder. The promise: a correct file, or a StreamVAEError that
says what to fix, and never a file anywhere else."""

from __future__ import annotations

import math
import os
import re
import struct
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from streamvae import CODECS, CONTAINERS, EncodeSettings, FrameSource, StreamVAEError, decode_to_video, write_video
from streamvae.encoding import resolve
from streamvae.errors import EncoderError
from streamvae.files import load_latent_file
from streamvae.writer import VideoWriter

from support.pack_modules import import_pack_module
from support.process_checks import count_from_env
from support.tiny_vaes import tiny_diffusers_vae
from support.videos import read_video

EXAMPLES = count_from_env("STREAMVAE_PROPERTY_EXAMPLES", 60)
VAES = {"wan2.1": (tiny_diffusers_vae("wan2.1"), 16, 8), "wan2.2": (tiny_diffusers_vae("wan2.2"), 48, 16)}  # (vae, channels, pixels/latent)
PIX_FMTS = sorted({fmt for codec in CODECS.values() for fmt in codec.pix_fmts}) + ["rgb24", "nv12"]

VALID_FPS = st.one_of(st.integers(1, 240), st.sampled_from(["30000/1001", "24", Fraction(1, 3) + 1]),
                      st.floats(min_value=1, max_value=240, allow_nan=False))
INVALID = {
    "frames": st.just(0), "height": st.just(0), "channels": st.just(4),
    "fps": st.sampled_from([0, -5, 241, 1e9, math.nan, math.inf, "abc", None, "1/0", ""]),
    "container": st.sampled_from(["avi", "", "MP4", "mp4 "]), "codec": st.sampled_from(["vp9", "", "x264"]),
    "pix_fmt": st.sampled_from(["rgb24", "nv12", "yuv420", "gray"]), "crf": st.sampled_from([-1, 64, 1000]),
    "slots": st.sampled_from([0, -1, 17, 2.5, "2", None]), "mode": st.sampled_from(["turbo", "", "EXACT"]),
    "encoder": st.sampled_from(["quicksync", "", "NVENC"]),
}
OUTCOMES = {"file": 0, "refused": 0}


@st.composite
def engine_call(draw):
    """Valid settings throughout, then (mostly) one parameter replaced by an invalid value: the engine must write a
    correct file when none is invalid, and refuse with a StreamVAEError when one is."""
    family = draw(st.sampled_from(sorted(VAES)))
    container = draw(st.sampled_from(sorted(CONTAINERS)))
    # hevc is left out of the encodes here: which frame sizes libx265 refuses (under 16 px, 33-48 px wide: the
    # PyAV 18.1.0 finding in docs/reliability.md) is not something "valid settings" model. Its refusals (an invalid
    # parameter, a frame size it can't take) still run: they happen before the encoder opens. Its 1- and 2-frame
    # videos are covered by tests/engine/test_writer.py.
    codec = draw(st.sampled_from([name for name in CONTAINERS[container][1] if name != "hevc"] or ["hevc"]))
    crf_range = CODECS[codec].crf_range
    call = {
        "family": family, "frames": draw(st.integers(1, 3)), "height": draw(st.integers(1, 4)),
        "width": draw(st.integers(1, 4)), "channels": VAES[family][1], "fps": draw(VALID_FPS),
        "container": container, "codec": codec,
        "pix_fmt": draw(st.one_of(st.none(), st.sampled_from(CODECS[codec].pix_fmts))),
        "crf": draw(st.one_of(st.none(), st.integers(*crf_range))) if crf_range else None,
        "slots": draw(st.sampled_from([1, 2, 3, 16])), "mode": draw(st.sampled_from(["exact", "fast"])),
        "encoder": draw(st.sampled_from(["auto", "software"])),
    }
    bad = draw(st.sampled_from([None, None, None, *sorted(INVALID)]))
    if bad is not None:
        call[bad] = draw(INVALID[bad])
    if bad == "crf" and crf_range is None:
        bad = None  # prores and ffv1 have no quality setting: crf is ignored there, by design
    return bad, call


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=engine_call())
def test_engine_parameters_give_a_file_or_a_clear_error(case):
    bad, call = case
    vae, _, scale = VAES[call["family"]]
    latent = torch.randn(1, call["channels"], call["frames"], call["height"], call["width"],
                         generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"out.{call['container'] or 'mp4'}"
        try:
            stats = decode_to_video(vae, latent, path, fps=call["fps"], container=call["container"],
                                    codec=call["codec"], pix_fmt=call["pix_fmt"], crf=call["crf"], preset="ultrafast",
                                    slots=call["slots"], mode=call["mode"], encoder=call["encoder"])
        except StreamVAEError as error:
            assert bad is not None, f"valid settings were refused: {error}"
            message = str(error)
            assert len(message) > 20 and "Traceback" not in message
            assert os.listdir(folder) == [], "a refused run left a file"
            OUTCOMES["refused"] += 1
            return
        assert bad is None, f"{bad}={call.get(bad)!r} was accepted"
        video = read_video(path)
        decoded, rate = video.frames, video.fps
        frames = 1 + 4 * (call["frames"] - 1)
        assert decoded.shape == (frames, call["height"] * scale, call["width"] * scale, 3)
        assert stats.frames == frames
        fps = call["fps"]
        expected = Fraction(fps).limit_denominator(1001) if isinstance(fps, float) else Fraction(fps)
        if call["container"] in ("mkv", "webm"):
            # Matroska stores times in milliseconds: an arbitrary rate such as 117.41015625 comes back as the
            # nearest it can express (found by this sweep; 16, 24 and 30000/1001 are exact). mp4/mov keep it exact.
            assert abs(rate - expected) / expected < 2e-3, (rate, expected)
        else:
            assert rate == expected
        assert os.listdir(folder) == [path.name]
        OUTCOMES["file"] += 1


def test_hevc_under_16_pixels_is_refused_before_encoding(tmp_path):
    """libx265 takes nothing under 16x16 (it answered only "Invalid argument"): refused with a sentence, before
    the encoder opens."""
    with pytest.raises(StreamVAEError, match="hevc cannot encode frames smaller than 16x16"):
        decode_to_video(VAES["wan2.1"][0], torch.randn(1, 16, 1, 1, 2), tmp_path / "x.mp4", codec="hevc")
    assert not list(tmp_path.iterdir())


LIBX265_CRASH = "libx265 (hevc on the CPU) can crash the whole process on frames 33 to 48 pixels wide"


def never_read_source(width: int, height: int) -> FrameSource:
    """Frames that must never be asked for: a refusal has to come before decoding starts."""
    def chunks():
        raise AssertionError("decoding started before the frame size was checked")
        yield  # a generator: the body runs at the first request for a chunk

    return FrameSource(chunks(), 5, height, width, torch.device("cpu"))


@pytest.mark.parametrize("width, height, refusal", [
    (8, 64, "hevc cannot encode frames smaller than 16x16"), (64, 15, "hevc cannot encode frames smaller than 16x16"),
    (33, 480, LIBX265_CRASH), (40, 64, LIBX265_CRASH), (48, 16, LIBX265_CRASH)])
def test_frame_sizes_libx265_cannot_take_are_refused_on_every_writer_path(tmp_path, width, height, refusal):
    """The library's write_video (which the nodes and the CLI's decode use) and the writer itself refuse before
    anything is decoded or a file is opened, naming what to use instead (docs/reliability.md, upstream findings)."""
    settings = EncodeSettings(fps=16, codec="hevc", encoder="software")
    with pytest.raises(StreamVAEError, match=re.escape(refusal)) as refused:
        write_video(never_read_source(width, height), tmp_path / "x.mp4", settings)
    assert f"this video is {width}x{height}" in str(refused.value) and "use h264, av1" in str(refused.value)
    with pytest.raises(StreamVAEError, match=re.escape(refusal)):
        VideoWriter(tmp_path / "y.mp4", settings, width, height)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("width", [16, 32, 49, 50, 1280])
def test_frame_widths_outside_the_crashing_band_are_accepted(width):
    assert resolve(EncodeSettings(fps=16, codec="hevc", encoder="software"), (width, 16)).encoder == "libx265"


@pytest.mark.slow
def test_the_sweep_saw_both_outcomes():
    """Runs after the property above (file order): a sweep that only ever refused, or only ever wrote, tested
    half of its promise."""
    if OUTCOMES["file"] + OUTCOMES["refused"] == 0:
        pytest.skip("the property test did not run first (run the whole file)")
    assert OUTCOMES["file"] >= 3 and OUTCOMES["refused"] >= 3, OUTCOMES


# --------------------------------------------------------------------------- malformed files

def _safetensors_header(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


MALFORMED = {
    "empty": b"",
    "garbage": os.urandom(4096),
    "header length past the end": struct.pack("<Q", 10**12) + b"{}",
    "header not JSON": _safetensors_header(b"not json at all"),
    "header a list": _safetensors_header(b"[1, 2, 3]"),
    "tensor past the end": _safetensors_header(
        b'{"latent_tensor": {"dtype": "F32", "shape": [1, 16, 2, 8, 8], "data_offsets": [0, 8192]}}') + b"\0" * 16,
    "a pickle (torch.save)": b"\x80\x04\x95" + os.urandom(64),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_latent_file(tmp_path, name):
    path = tmp_path / "bad.latent"
    path.write_bytes(MALFORMED[name])
    with pytest.raises(StreamVAEError, match="not a readable safetensors file"):
        load_latent_file(path)


def test_latent_file_that_is_valid_but_wrong(tmp_path):
    from safetensors.torch import save_file

    save_file({"something_else": torch.zeros(2)}, str(tmp_path / "other.latent"))
    with pytest.raises(StreamVAEError, match="holds no 'latent_tensor'"):
        load_latent_file(tmp_path / "other.latent")
    save_file({"latent_tensor": torch.zeros(1, 16, 8, 8), "latent_format_version_0": torch.tensor([])},
              str(tmp_path / "image.latent"))
    latent = load_latent_file(tmp_path / "image.latent")
    with pytest.raises(StreamVAEError, match="4-D image latent"):
        decode_to_video(VAES["wan2.1"][0], latent, tmp_path / "x.mp4")
    with pytest.raises(StreamVAEError, match="does not exist"):
        load_latent_file(tmp_path / "missing.latent")
    assert not list(tmp_path.glob("*.mp4"))


@pytest.fixture(scope="module")
def comfy_vae_loader():
    from streamvae.files import find_comfyui, load_vae_file

    if find_comfyui() is None:
        pytest.skip("ComfyUI not found: load_vae_file's ComfyUI path needs it")
    return load_vae_file


@pytest.mark.parametrize("name", ["empty", "garbage", "header not JSON", "tensor past the end"])
def test_malformed_vae_file(tmp_path, comfy_vae_loader, name):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(MALFORMED[name])
    with pytest.raises(StreamVAEError, match="not a readable safetensors file"):
        comfy_vae_loader(path, device="cpu")


def test_safetensors_file_that_holds_no_vae(tmp_path, comfy_vae_loader):
    """A readable file with the wrong contents (a LoRA, a text encoder) must be refused, not decoded as noise."""
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.alpha": torch.ones(1), "lora_unet_down.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(StreamVAEError, match="no VAE"):
        comfy_vae_loader(path, device="cpu")


def test_vae_of_another_family(tmp_path):
    """An image VAE (Stable Diffusion's AutoencoderKL) given a Wan video latent: a clear error, no file."""
    from diffusers import AutoencoderKL

    image_vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4).eval()
    for latent in (torch.randn(1, 16, 2, 8, 8), torch.randn(1, 4, 2, 8, 8)):
        with pytest.raises((StreamVAEError, EncoderError)) as raised:
            decode_to_video(image_vae, latent, tmp_path / "x.mp4")
        assert "AutoencoderKL" in str(raised.value), raised.value
    # And a Wan 2.2 VAE given a Wan 2.1 latent (16 channels, it takes 48).
    with pytest.raises(StreamVAEError, match="48"):
        decode_to_video(VAES["wan2.2"][0], torch.randn(1, 16, 2, 4, 4), tmp_path / "x.mp4")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- filename prefixes

@pytest.fixture(scope="module")
def pack_output(tmp_path_factory):
    """The save node's own naming (comfy_nodes/output_files.py) against ComfyUI's real folder_paths, in process."""
    from streamvae.files import find_comfyui

    root = find_comfyui()
    if root is None:
        pytest.skip("ComfyUI not found")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import folder_paths

    module = import_pack_module("comfy_nodes.output_files")
    output = tmp_path_factory.mktemp("prefix_output")
    previous = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(output))
    yield output, module.plan_output_files
    folder_paths.set_output_directory(previous)


PREFIX_PARTS = st.sampled_from(["..", ".", "video", "a b", "%year%", "%width%", "~", "$HOME", "\\..", "..\\..",
                                "C:", "//", "\0", "x\0y", "é", "a" * 120, "é" * 120, "a" * 240, "a" * 300, "", " ",
                                "\n"])


@settings(max_examples=EXAMPLES * 4, deadline=None, derandomize=True)
@given(parts=st.lists(PREFIX_PARTS, min_size=1, max_size=4), absolute=st.booleans())
def test_prefixes_never_escape_the_output_folder(parts, absolute, pack_output):
    output_dir, plan_output_files = pack_output
    prefix = ("/" if absolute else "") + "/".join(parts)
    try:
        files = plan_output_files(prefix, "mp4", 2, 64, 48)
    except StreamVAEError as error:
        assert "filename_prefix" in str(error) and "Traceback" not in str(error)
        return
    for item in files:
        resolved = Path(os.path.realpath(item.path))
        assert Path(os.path.realpath(output_dir)) in resolved.parents, (prefix, item.path)
        assert "\0" not in item.path
        assert len(item.filename.encode()) <= 255, "a name the file system cannot hold was accepted"


@pytest.mark.parametrize("prefix, expected", [
    ("video/x\0y", "control character"),
    ("video/line\nbreak", "control character"),
    ("video/" + "a" * 240, "too long"),
    ("b" * 300 + "/clip", "too long"),
    ("C:\\Windows\\x", "absolute path"),
    ("video/..\\..\\..\\x", "outside ComfyUI's output folder"),
])
def test_server_refuses_prefixes_before_running(rel_client, rel_server, prefix, expected):
    """Through /prompt: refused at validation with the reason, nothing written anywhere."""
    from streamvae.client import PromptRejected
    from support.graphs import streaming_prompt

    root = rel_server.tree.root
    before = {path for path in root.rglob("*") if rel_server.tree.models not in path.parents}
    with pytest.raises(PromptRejected) as rejected:
        rel_client.queue(streaming_prompt("wan21", filename_prefix=prefix))
    details = " | ".join(error["details"] for error in rejected.value.node_errors["save"]["errors"])
    assert expected in details, details
    after = {path for path in root.rglob("*") if rel_server.tree.models not in path.parents}
    assert {path for path in after - before if path.name != "server.log"} == set()
