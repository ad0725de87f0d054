"""`python -m benchmarks --suite full`: every case and every path of the fast-decode issue, one run, one card.

Per case: stock ComfyUI (decode + Save Video's encode) and our streaming paths, through `run_bench`; then the
decode-only competitors on diffusers' model of the same architecture: diffusers' eager `decode()` and fastvae's
fused decoder (PyPI), where installed. Writes suite.json and suite.png (a chart) beside the per-case reports.
"""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

import torch

from .bench import BenchCase, machine_info, run_bench
from .synthetic import random_latent, random_wan_vae

# (name, arch, frames, height, width, fps)
CASES = [
    ("wan21_720p_161", "wan2.1", 161, 720, 1280, 16),
    ("wan21_480p_81", "wan2.1", 81, 480, 832, 16),
    ("wan22_704p_121", "wan2.2", 121, 704, 1280, 24),
    ("wan21_720p_1001", "wan2.1", 1001, 720, 1280, 16),
]


def _timed_decode(decode: Callable[[], torch.Tensor]) -> dict:
    """Seconds and peak VRAM of one whole-video decode that stays on the GPU (no copy, no encode)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with torch.inference_mode():
        frames = decode()
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    del frames
    return {"decode_seconds": seconds, "peak_vram_bytes": torch.cuda.max_memory_allocated()}


def decode_only_competitors(arch: str, frames: int, height: int, width: int) -> dict:
    vae = random_wan_vae(arch, device="cuda", dtype=torch.bfloat16)
    latent = random_latent(vae, frames, height, width).to(torch.bfloat16)
    results = {}
    vae.decode(latent[:, :, :2])  # warm-up: cuDNN's first calls
    results["diffusers eager"] = _timed_decode(lambda: vae.decode(latent).sample)
    try:
        from fastvae import FastVAEDecoder  # noqa: PLC0415 - optional competitor
    except ImportError as error:
        results["fastvae"] = {"skipped": f"fastvae is not installed ({error})"}
    else:
        fast = FastVAEDecoder.from_vae(vae).cuda()
        fast.decode(latent[:, :, :2])  # warm-up: Triton compiles its kernels
        results["fastvae"] = _timed_decode(lambda: fast.decode(latent))
    return results  # the models go with this frame; run_suite empties CUDA's cache after each case


def run_suite(out_dir: Path, *, impl: str, modes: tuple, names: tuple = (), log: Callable[[str], None] = print,
              **bench_options) -> dict:
    device = torch.device("cuda")
    suite = {"machine": machine_info(device), "impl": impl, "cases": {}}
    for name, arch, frames, height, width, fps in CASES:
        if names and name not in names:
            continue
        log(f"== {name}")
        case = BenchCase(arch, frames, height, width, Fraction(fps), torch.bfloat16, device, impl)
        report = run_bench(case, out_dir / name, modes=modes, log=log, **bench_options)
        report["decode_only"] = decode_only_competitors(arch, frames, height, width)
        for path, stats in report["decode_only"].items():
            log(f"{path} (decode only): " + (stats.get("skipped") or
                f"{stats['decode_seconds']:.2f} s, {stats['peak_vram_bytes'] / 2**30:.2f} GiB"))
        suite["cases"][name] = report
        torch.cuda.empty_cache()
    (out_dir / "suite.json").write_text(json.dumps(suite, indent=2))
    draw_chart(suite, out_dir / "suite.png")
    log(f"wrote {out_dir / 'suite.json'} and {out_dir / 'suite.png'}")
    return suite


def draw_chart(suite: dict, path: Path) -> None:
    """Wall seconds per path and case: latent to finished MP4 for stock and ours, decode alone for the rest."""
    import matplotlib  # noqa: PLC0415 - only for the chart

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cases = list(suite["cases"])
    series: dict[str, list] = {}
    for index, name in enumerate(cases):
        report = suite["cases"][name]
        for path_name, stats in report["paths"].items():
            series.setdefault(f"{path_name} (to MP4)", [None] * len(cases))[index] = stats["wall_seconds"]
        for path_name, stats in report["decode_only"].items():
            series.setdefault(f"{path_name} (decode only)", [None] * len(cases))[index] = stats.get("decode_seconds")
    figure, axes = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(series)
    for offset, (label, values) in enumerate(series.items()):
        xs = [i + offset * width for i, value in enumerate(values) if value is not None]
        axes.bar(xs, [value for value in values if value is not None], width, label=label)
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))], cases)
    axes.set_ylabel("seconds (lower is better)")
    machine = suite["machine"]
    axes.set_title(f"Wan VAE decode, {machine['card']}, torch {machine['torch']}, {machine['date']}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
