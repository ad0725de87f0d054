"""The command line as users run it: a subprocess, real files in, a real video out."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from support.videos import read_video


REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "benchmarks" / "results.jsonl"


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "streamvae", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def run_benchmark(*args):
    """`python -m benchmarks`, as the README runs it: from the repository root."""
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=600)


@pytest.mark.slow
def test_bench_writes_a_video_and_a_report(tmp_path):
    results_before = RESULTS.read_bytes()
    result = run_benchmark("--frames", "5", "--width", "64", "--height", "48", "--device", "cpu",
                           "--out", str(tmp_path), "--modes", "exact,fast")
    assert result.returncode == 0, result.stderr
    assert "stock-like" in result.stdout and "streaming" in result.stdout and "photographs" in result.stdout
    # A CPU run says what it is and where the GPU numbers are, and claims no speed of its own.
    assert "not how fast StreamVAE is" in result.stdout and "docs/benchmarks.md" in result.stdout
    assert "Measured on an NVIDIA" in result.stdout and "x its speed" not in result.stdout
    assert "not recorded" in result.stdout and RESULTS.read_bytes() == results_before
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["paths"]["streaming exact"]["frames"] == report["paths"]["stock-like"]["frames"] == 5
    assert report["paths"]["streaming fast"]["frames"] == 5 and report["fast_psnr_vs_exact_db"] >= 45
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["date"]
    assert read_video(tmp_path / "streamvae_exact.mp4").frames.shape == (5, 48, 64, 3)


def test_decode_reads_comfyui_latent_and_vae_files(tmp_path, comfy):
    from benchmarks.synthetic import COMFY_WAN, fill_random_weights_

    model = fill_random_weights_(comfy.ldm.wan.vae.WanVAE(**COMFY_WAN["wan2.1"][1]))
    save_file(model.state_dict(), str(tmp_path / "wan_2.1_vae.safetensors"))
    # The layout ComfyUI's SaveLatent writes.
    save_file({"latent_tensor": torch.randn(1, 16, 3, 4, 6), "latent_format_version_0": torch.tensor([])},
              str(tmp_path / "clip.latent"))
    result = run_cli("decode", "--vae", str(tmp_path / "wan_2.1_vae.safetensors"), "--latent",
                     str(tmp_path / "clip.latent"), "-o", str(tmp_path / "clip.mp4"), "--fps", "16",
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "host comfy.ldm.wan.vae.WanVAE (exact)" in result.stdout
    video = read_video(tmp_path / "clip.mp4")
    assert video.frames.shape == (9, 32, 48, 3) and video.fps == 16


def test_decode_reports_bad_files_without_a_traceback(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    result = run_cli("decode", "--vae", str(tmp_path / "broken.safetensors"), "--latent",
                     str(tmp_path / "missing.latent"), "-o", str(tmp_path / "x.mp4"))
    assert result.returncode == 2
    assert "not a readable safetensors file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.slow
def test_bench_can_time_comfyui_own_vae(tmp_path, comfy):
    result = run_benchmark("--impl", "comfyui", "--frames", "5", "--width", "64", "--height", "48",
                     "--device", "cpu", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["case"]["impl"] == "comfyui"
    assert report["paths"]["stock-like"]["decoder"] == "VAE.decode (whole video)"
    assert report["paths"]["streaming exact"]["decoder"] == "host comfy.ldm.wan.vae.WanVAE (exact)"


def test_suite_chart_is_drawn_from_a_report(tmp_path):
    from benchmarks.suite import draw_chart

    stats = {"wall_seconds": 2.0}
    suite = {"machine": {"card": "test card", "torch": "x", "date": "2026-11-26"},
             "cases": {"a": {"paths": {"stock-like": stats, "streaming exact": {"wall_seconds": 1.0}},
                             "decode_only": {"diffusers eager": {"decode_seconds": 1.5},
                                             "fastvae": {"skipped": "not installed"}}}}}
    draw_chart(suite, tmp_path / "suite.png")
    assert (tmp_path / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_full_suite_refuses_to_run_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        return
    result = run_benchmark("--suite", "full", "--device", "cpu", "--out", str(tmp_path))
    assert result.returncode == 2 and "CUDA GPU" in result.stderr


def test_decode_options_make_one_encode_settings_and_the_output_names_the_container():
    from streamvae.cli import DECODE_ENCODER_OPTIONS, build_parser, encode_settings

    args = build_parser().parse_args(["decode", "--vae", "v.safetensors", "--latent", "c.latent", "-o", "clip.mkv",
                                      "--codec", "ffv1", "--fps", "30000/1001"])
    settings = encode_settings(args, DECODE_ENCODER_OPTIONS).for_file(args.output)
    assert (settings.container, settings.codec, settings.crf, settings.pix_fmt) == ("mkv", "ffv1", None, None)
    assert settings.fps == Fraction(30000, 1001) and args.mode == "exact"

