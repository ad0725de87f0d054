"""Farm throughput, measured: jobs per hour with 1 and 2 workers on this machine, for docs/farm.md.

    COMFYUI_PATH=~/comfy/ComfyUI PYTHONPATH=.:tests python -m benchmarks.farm_scaling --jobs 12 \
        --out benchmarks/farm_scaling_cpu.json

Each worker is a real ComfyUI with this pack (a local Ray cluster the farm starts itself, as `python -m streamvae
farm` without --address does), running the decode-only workflow on a random-weight Wan 2.1 VAE. CPU workers
(ComfyUI --cpu, one CPU each) unless --gpu: one worker per GPU. Workers are warmed first (started, the VAE loaded,
one job each); then the same jobs are timed with 1 worker and with 2. Per job it reports the worker's wall time,
how much of it ComfyUI spent rendering, and the farm's own cost around it (inputs, publishing, dispatch). From that
overhead and the GPU numbers in docs/benchmarks.md it also works out the paper cost model of docs/farm.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import safetensors.torch
import torch

from streamvae import DEFAULT_PRICE_PER_GPU_HOUR
from streamvae.farm import Farm, FarmOptions, load_jobs
from streamvae.files import comfyui_release, find_comfyui
from support import comfy_server as host
from support.comfy_server import WAN21_VAE
from support.farm_jobs import DECODE_ONLY, comfyui_args, job_sets


def write_latents(folder: Path, count: int, latent_frames: int, height: int, width: int) -> list[Path]:
    paths = []
    for seed in range(count):
        latent = torch.randn(1, 16, latent_frames, height // 8, width // 8,
                             generator=torch.Generator().manual_seed(seed))
        path = folder / f"bench{seed}.latent"
        safetensors.torch.save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])}, str(path))
        paths.append(path)
    return paths


def job_file(folder: Path, name: str, latents: list[Path], count: int) -> list:
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"id": f"{name}-{number:03d}", "set": job_sets(f"@{latents[number % 4]}")})
                            + "\n" for number in range(count)))
    return load_jobs(path).jobs


def measure(workers: int, args, tree, latents: list[Path], folder: Path) -> dict:
    workflow = json.loads(DECODE_ONLY.read_text())
    options = FarmOptions(workers=workers, cpus_per_worker=None if args.gpu else 1, comfyui=str(args.comfyui),
                          comfyui_args=comfyui_args(tree), startup_timeout=600)
    with Farm(options) as farm:
        farm.wait_ready()
        farm.run(job_file(folder, f"warm{workers}", latents, workers), workflow, str(folder / f"warm{workers}"))
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        report = farm.run(job_file(folder, f"timed{workers}", latents, args.jobs), workflow,
                          str(folder / f"timed{workers}"))
        wall = time.monotonic() - started
    assert report.ok and report.done == args.jobs, report.failed
    records = [json.loads(line) for line in (folder / f"timed{workers}" / "manifest.jsonl").read_text().splitlines()]
    job_wall = [record["timings"]["wall_s"] for record in records]
    render = [record["timings"]["render_s"] for record in records]
    return {"workers": workers, "jobs": args.jobs, "wall_s": round(wall, 2),
            "jobs_per_hour": round(args.jobs / wall * 3600, 1),
            "job_wall_s_mean": round(statistics.mean(job_wall), 3),
            "render_s_mean": round(statistics.mean(render), 3),
            "worker_overhead_s_mean": round(statistics.mean(w - r for w, r in zip(job_wall, render, strict=True)), 3),
            # Worker time the farm did not fill with jobs: dispatch, results, the manifest, the last job's tail.
            "idle_s_per_job": round((workers * wall - sum(job_wall)) / args.jobs, 3),
            "video_seconds_per_job": records[0]["video_seconds"],
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)}


# The paper cost model's per-video GPU time: docs/benchmarks.md, "Latent -> finished MP4, every case" (NVIDIA H200,
# ComfyUI 0.3.64's own Wan 2.1 VAE, run "suite 2, run 3"): 1280x720x161 at 16 fps (10.06 s of video).
# An H200 stands in for the G7e's RTX PRO 6000 until `bench` runs there.
GPU_SECONDS_PER_VIDEO = {"stock ComfyUI": 11.67, "StreamVAE exact": 7.79, "StreamVAE fast": 3.59}
VIDEO_SECONDS = 161 / 16
HEAD_PRICE_PER_HOUR = 0.1008  # m7i.large on demand (us-east-2), the cluster config's head; an assumption to check
FLEET_SIZES = (1, 2, 5, 10, 20)


def paper_cost_model(overhead_s: float, price_per_hour: float = DEFAULT_PRICE_PER_GPU_HOUR) -> list[dict]:
    """Cost of 1,000 hours of video on N G7e workers: every video takes a worker GPU_SECONDS + overhead_s (the
    farm's own time per job, measured), the workers are paid while busy, the head for the whole wall time."""
    videos = 1000 * 3600 / VIDEO_SECONDS
    rows = []
    for path, gpu_s in GPU_SECONDS_PER_VIDEO.items():
        worker_hours = videos * (gpu_s + overhead_s) / 3600
        for workers in FLEET_SIZES:
            wall_hours = worker_hours / workers
            dollars = worker_hours * price_per_hour + wall_hours * HEAD_PRICE_PER_HOUR
            rows.append({"path": path, "workers": workers, "wall_hours": round(wall_hours, 1),
                         "worker_hours": round(worker_hours, 1), "dollars": round(dollars)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, default=find_comfyui())
    parser.add_argument("--jobs", type=int, default=16, help="timed jobs per worker count")
    parser.add_argument("--latent-frames", type=int, default=2, help="latent frames per job (1 + 4(n-1) frames)")
    parser.add_argument("--size", default="64x48", help="video WIDTHxHEIGHT (multiples of 8)")
    parser.add_argument("--gpu", action="store_true", help="one worker per GPU instead of CPU workers")
    parser.add_argument("--out", type=Path, default=Path("farm-scaling.json"))
    args = parser.parse_args()
    if args.comfyui is None:
        parser.error("ComfyUI not found: set COMFYUI_PATH or give --comfyui")
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        tree = host.make_host_tree(folder / "tree", args.comfyui)
        host.build_random_vaes(args.comfyui, tree.vae, only=(WAN21_VAE,))
        latents = write_latents(folder, 4, args.latent_frames, height, width)
        runs = [measure(workers, args, tree, latents, folder) for workers in (1, 2)]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.python_version()}",
              "comfyui": comfyui_release(args.comfyui), "torch": torch.__version__,
              "ray": __import__("ray").__version__, "workers_kind": "GPU" if args.gpu else "CPU (ComfyUI --cpu)",
              "video": f"{width}x{height}, {1 + 4 * (args.latent_frames - 1)} frames at 16 fps", "runs": runs,
              "scaling_efficiency_2_workers": round(runs[1]["jobs_per_hour"] / (2 * runs[0]["jobs_per_hour"]), 3)}
    overhead = runs[0]["worker_overhead_s_mean"] + runs[0]["idle_s_per_job"]
    result["paper_cost_model"] = {"farm_overhead_s_per_video": round(overhead, 3),
                                  "gpu_seconds_per_video": GPU_SECONDS_PER_VIDEO, "video_seconds": VIDEO_SECONDS,
                                  "head_price_per_hour": HEAD_PRICE_PER_HOUR,
                                  "per_1000_video_hours": paper_cost_model(overhead)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
