"""One benchmark case (`python -m benchmarks`): stock-like decode-then-encode vs the streaming pipeline, one run,
one machine.

Both paths run the real Wan VAE architecture with random weights on the same latent, and both hand the encoder
the same realistic frames (photographs panned and zoomed) in place of the decoder's meaningless pixels; the
decoder's output is still computed in full. See benchmarks/synthetic.py for why.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

import av
import torch

from streamvae.api import iter_frames, source_from_decoder, write_video
from streamvae.decoders import decoder_for
from streamvae.encoding import EncodeSettings
from streamvae.errors import StreamVAEError
from streamvae.files import import_comfy
from streamvae.pipeline import FrameSource
from streamvae.stats import DEFAULT_PRICE_PER_GPU_HOUR, DecodeStats, PeakRSS, peak_vram_tracker

from .fidelity import psnr_db
from .synthetic import SPATIAL_SCALE, PanZoomContent, random_comfy_wan_vae, random_latent, random_wan_vae

CONTENT_NOTE = ("decoder: real Wan VAE architecture, random weights, real arithmetic; encoder: fed natural "
                "photographs panned and zoomed, of the same size, instead of the random decoder's noise")


@dataclass
class BenchCase:
    arch: str
    frames: int
    height: int
    width: int
    fps: Fraction
    dtype: torch.dtype
    device: torch.device
    impl: str = "diffusers"  # whose Wan VAE classes: "diffusers" (AutoencoderKLWan) or "comfyui" (comfy.sd.VAE)


def default_case(arch: str, device: torch.device) -> BenchCase:
    """1280x720x161 on a GPU; on a CPU a small size that finishes in about a minute."""
    fps = Fraction(16) if arch == "wan2.1" else Fraction(24)
    if device.type == "cuda":
        height = 720 if arch == "wan2.1" else 704
        return BenchCase(arch, 161 if arch == "wan2.1" else 121, height, 1280, fps, torch.bfloat16, device)
    return BenchCase(arch, 9, 96, 160, fps, torch.float32, device)


def machine_info(device: torch.device) -> dict:
    info = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "pyav": av.__version__,
            "cpu": platform.processor() or platform.machine(), "cpu_count": _cpu_count()}
    if device.type == "cuda":
        info["card"] = torch.cuda.get_device_name(device)
        info["driver"] = _nvidia_driver()
    else:
        info["card"] = "none (CPU)"
    return info


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _nvidia_driver() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_whole_video(vae, latent: torch.Tensor, case: BenchCase) -> torch.Tensor:
    """The stock decode: the whole video at once, then on the host as ComfyUI's IMAGE `[T, H, W, 3]` float32.

    ComfyUI's VAE.decode does all of it itself (load, decode, one blocking copy, float, process_output); with
    diffusers' class the same steps are spelled out."""
    if case.impl == "comfyui":
        return vae.decode(latent).reshape((-1,) + (case.height, case.width, 3))
    decoded = vae.decode(latent.to(case.dtype)).sample
    return torch.clamp((decoded.to("cpu").float() + 1.0) / 2.0, min=0.0, max=1.0).movedim(1, -1)[0]


def run_stock_like(vae, latent: torch.Tensor, content: torch.Tensor, settings: EncodeSettings, path: Path,
                   case: BenchCase) -> DecodeStats:
    """What ComfyUI 0.3.64 does: VAE.decode of the whole video under inference_mode (as its executor runs nodes;
    chunks concatenated on the GPU), one blocking copy to the host, float32 and process_output there, then
    SaveVideo's frame loop."""
    peak_vram = peak_vram_tracker(case.device)
    with PeakRSS() as rss:
        started = time.perf_counter()
        with torch.inference_mode():
            images = decode_whole_video(vae, latent, case)
            decode_seconds = time.perf_counter() - started
            images = content if content.shape == images.shape else images  # realistic frames, same shape
            encode_started = time.perf_counter()
            _encode_like_save_video(images, settings, path)
        encode_seconds = time.perf_counter() - encode_started
        wall = time.perf_counter() - started
    return DecodeStats(frames=images.shape[0], width=case.width, height=case.height, fps=float(case.fps),
                       wall_seconds=wall, decode_seconds=decode_seconds, encode_seconds=encode_seconds,
                       peak_vram_bytes=peak_vram(), peak_host_rss_bytes=rss.peak,
                       decoder=f"{type(vae).__name__}.decode (whole video)", encoder="libx264", path=str(path))


def _encode_like_save_video(images: torch.Tensor, settings: EncodeSettings, path: Path) -> None:
    """ComfyUI's VideoFromComponents.save_to, with the benchmark's crf and preset so both paths encode alike."""
    with av.open(str(path), mode="w", options={"movflags": "use_metadata_tags"}) as output:
        stream = output.add_stream("h264", rate=settings.fps)
        stream.width, stream.height, stream.pix_fmt = images.shape[2], images.shape[1], "yuv420p"
        stream.codec_context.options = {"crf": str(settings.crf), "preset": settings.preset}
        for frame in images:
            image = (frame * 255).clamp(0, 255).byte().cpu().numpy()
            video_frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            output.mux(stream.encode(video_frame))
        output.mux(stream.encode(None))


def run_streaming(vae, latent: torch.Tensor, settings: EncodeSettings, path: Path, case: BenchCase, *,
                  mode: str, progress: Optional[Callable] = None) -> DecodeStats:
    started = time.perf_counter()
    decoder = decoder_for(vae, latent, mode)
    source = source_from_decoder(decoder, latent)
    content = PanZoomContent(case.height, case.width, device=case.device)
    swapped = FrameSource(content.swap_into(source.chunks), source.total_frames, source.height, source.width,
                          source.device, source.unit_range, source.name)
    return write_video(swapped, path, settings, mode=mode, progress=progress, started=started)


def warm_up(vae, case: BenchCase, modes: tuple) -> None:
    """First uses cost extra (cuDNN's algorithm choice; fast mode's Triton kernels compile once per machine and
    are cached on disk): keep them out of every timing. Fast mode warms at the video's own size, two latent
    frames, so its kernels are compiled for the shapes the timed run uses."""
    scale = SPATIAL_SCALE[case.arch]
    small = random_latent(vae, 5, 2 * scale, 2 * scale)
    with torch.inference_mode():
        decode_whole_video(vae, small, BenchCase(case.arch, 5, 2 * scale, 2 * scale, case.fps, case.dtype,
                                                 case.device, case.impl))
    if "fast" in modes:
        for _ in iter_frames(vae, random_latent(vae, 5, case.height, case.width), mode="fast"):
            pass
    _synchronize(case.device)


def build_vae(case: BenchCase):
    if case.impl == "comfyui":
        if import_comfy(device=case.device.type) is None:
            raise StreamVAEError("--impl comfyui needs ComfyUI: point $COMFYUI_PATH at a ComfyUI folder")
        return random_comfy_wan_vae(case.arch)  # ComfyUI chooses device and dtype, as in a real graph
    return random_wan_vae(case.arch, device=case.device, dtype=case.dtype)


def fast_mode_psnr(vae, latent: torch.Tensor, latent_frames: int = 6) -> float:
    """PSNR (dB) of fast mode's frames against exact mode's, on the decoder's own pixels (no content swap)."""
    short = latent[:, :, :latent_frames]
    return psnr_db(torch.cat(list(iter_frames(vae, short, mode="exact"))),
                   torch.cat(list(iter_frames(vae, short, mode="fast"))))


def run_bench(case: BenchCase, out_dir: Path, *, crf: int = 23, preset: str = "medium",
              modes: tuple = ("exact",), price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR, progress: Optional[Callable] = None,
              log: Callable[[str], None] = print) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"building the {case.arch} VAE ({case.impl}'s classes, random weights) on {case.device}, {case.dtype}; "
        f"video {case.width}x{case.height}, {case.frames} frames at {case.fps} fps")
    vae = build_vae(case)
    latent = random_latent(vae, case.frames, case.height, case.width)
    settings = EncodeSettings(fps=case.fps, crf=crf, preset=preset, encoder="software")
    content = PanZoomContent(case.height, case.width, device=case.device).frames(0, case.frames)
    content = content.permute(0, 2, 3, 1).float().cpu().contiguous()
    warm_up(vae, case, modes)
    log("stock-like path: decode the whole video, copy it to the host as float32, then encode ...")
    results = {"stock-like": run_stock_like(vae, latent, content, settings, out_dir / "stock_like.mp4", case)}
    del content
    for mode in modes:
        log(f"streaming path ({mode}): chunk by chunk, pinned double buffer, encoder thread ...")
        results[f"streaming {mode}"] = run_streaming(vae, latent, settings, out_dir / f"streamvae_{mode}.mp4",
                                                     case, mode=mode, progress=progress)
    for stats in results.values():
        stats.price_per_gpu_hour = price_per_gpu_hour
    stock = results["stock-like"]
    report = {"machine": machine_info(case.device), "note": CONTENT_NOTE,
              "case": {"impl": case.impl, "arch": case.arch, "frames": case.frames, "width": case.width, "height": case.height,
                       "fps": str(case.fps), "dtype": str(case.dtype).replace("torch.", ""), "crf": crf,
                       "preset": preset},
              "paths": {name: stats.as_dict() for name, stats in results.items()},
              "speedup_vs_stock": {name: stock.wall_seconds / stats.wall_seconds
                                   for name, stats in results.items() if name != "stock-like"}}
    if "fast" in modes:
        report["fast_psnr_vs_exact_db"] = fast_mode_psnr(vae, latent)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    log(format_table(results))
    for line in summary(report, case.device):
        log(line)
    log(CONTENT_NOTE)
    log(f"wrote the videos and {out_dir / 'bench.json'}")
    return report


def summary(report: dict, device: torch.device) -> list[str]:
    """What the run shows. On a GPU: each streaming path's speed against stock. On a CPU a ratio would mislead (the
    streaming gain is GPU work overlapping copy and encode; a small CPU decode is mostly the model's own arithmetic),
    so: what ran, what it checks, and where the GPU measurements are."""
    lines = []
    for name, speedup in report["speedup_vs_stock"].items():
        wall = report["paths"][name]["wall_seconds"]
        lines.append(f"{name}: {wall:.2f} s against stock-like's {report['paths']['stock-like']['wall_seconds']:.2f} s"
                     + (f", {speedup:.2f}x its speed" if device.type == "cuda" else ""))
    if "fast_psnr_vs_exact_db" in report:
        lines.append(f"fast mode vs exact: PSNR {report['fast_psnr_vs_exact_db']:.1f} dB")
    if device.type != "cuda":
        lines += ["This was a CPU run of a small video: it shows that both paths decode and encode here, not how fast "
                  "StreamVAE is. Its speed-up is a GPU claim: decoding on the GPU while the copy to the host and the "
                  "encoder run beside it.",
                  *measured_on_a_gpu(),
                  "Run this on a CUDA GPU for your card's numbers (python -m benchmarks)."]
    return lines


def measured_on_a_gpu() -> list[str]:
    """The headline of the latest full-suite run in benchmarks/results.jsonl, and where the tables are."""
    from .results import latest, read  # noqa: PLC0415

    try:
        found = latest(read())
    except OSError:
        return ["Measured GPU tables: docs/benchmarks.md."]
    stock = found.get(("wan21_720p_161", "stock-like"))
    paths = [found.get(("wan21_720p_161", path)) for path in ("streaming exact", "streaming fast")]
    if stock is None or None in paths:
        return ["Measured GPU tables: docs/benchmarks.md."]
    exact, fast = paths
    return [f"Measured on an {stock['card']} ({stock['date']}, torch {stock['torch']}, {stock['host']}), Wan 2.1 VAE "
            f"1280x720x161 to a finished MP4: stock {stock['wall_seconds']:.2f} s, exact {exact['wall_seconds']:.2f} s "
            f"({stock['wall_seconds'] / exact['wall_seconds']:.2f}x), fast {fast['wall_seconds']:.2f} s "
            f"({stock['wall_seconds'] / fast['wall_seconds']:.2f}x). Every case: docs/benchmarks.md; every run: "
            "benchmarks/results.jsonl."]


def format_table(results: dict) -> str:
    def gib(value):
        return "-" if value is None else f"{value / 2**30:.2f}"

    def percent(value):
        return "-" if value is None else f"{100 * value:.0f}%"

    rows = [("path", "wall s", "decode s", "encode fps", "RTF", "GPU busy", "VRAM GiB", "RSS GiB",
             "$/video-h")]
    for name, stats in results.items():
        rows.append((name, f"{stats.wall_seconds:.2f}", f"{stats.decode_seconds:.2f}",
                     f"{stats.encode_frames_per_second:.0f}", f"{stats.realtime_factor:.2f}",
                     percent(stats.gpu_busy), gib(stats.peak_vram_bytes), gib(stats.peak_host_rss_bytes),
                     f"{stats.dollars_per_video_hour:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)
