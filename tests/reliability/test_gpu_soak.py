"""GPU soak and cancel storm through the engine on a real GPU: VRAM, the pinned pool, host memory, threads and
open files stay flat over many decodes of mixed sizes, and every output decodes back whole. Run on the device.

STREAMVAE_GPU_SOAK_RUNS and STREAMVAE_GPU_CANCEL_RUNS set the counts (defaults 40 and 30).
"""

from __future__ import annotations

import gc
import json
import os
import random
import threading
from collections import Counter
from pathlib import Path

import psutil
import pytest
import torch

from streamvae import PINNED_POOL, Cancelled, EncodeSettings, decode_to_video
from streamvae.encoding import plan_parallel, usable_cores
from streamvae.slots import MAX_POOLED_BYTES
from benchmarks.synthetic import random_latent, random_wan_vae

from support.process_checks import CancelAfter, count_from_env, engine_threads
from support.videos import partial_files, read_video

pytestmark = [pytest.mark.cuda, pytest.mark.soak,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device)")]

# (frames, height, width) per family: Wan 2.1 sizes are multiples of 8, Wan 2.2's of 16.
SIZES = {"wan2.1": [(17, 240, 416), (9, 480, 832), (33, 160, 160)],
         "wan2.2": [(17, 256, 448), (9, 352, 640), (21, 160, 160)]}
CODECS = [dict(container="mp4", codec="h264"), dict(container="mkv", codec="ffv1", pix_fmt="bgr0")]
# Allowed drift from the first measured run to the last, stated:
VRAM_DRIFT = 0                    # allocated bytes: every tensor of a decode is freed
RESERVED_DRIFT = 512 * 2**20      # the caching allocator may keep blocks for shapes it saw late
RSS_DRIFT = 512 * 2**20           # host memory: allocator arenas, FFmpeg's codec state
# Unnamed native threads (FFmpeg's and x264's codec threads, OpenMP's) come and go with the codec contexts PyAV
# frees at garbage collection: measured on an H200 machine (16 cores, 4 encoders x 4 threads), +50 after the
# 40-decode soak and -28 after the cancel storm that followed, so a pool, not a leak. Bounded by four times the
# parallel encoders' threads (64 then).
_ENCODERS, _THREADS = plan_parallel(EncodeSettings(), "libx264", usable_cores())
NATIVE_THREAD_DRIFT = max(64, 4 * _ENCODERS * max(1, _THREADS))
MODES = ("exact", "fast")


@pytest.fixture(scope="module")
def vaes():
    return {arch: random_wan_vae(arch, device="cuda", dtype=torch.bfloat16) for arch in SIZES}


def native_thread_names() -> Counter:
    """Every OS thread of this process by name (/proc/self/task/*/comm): FFmpeg's, CUDA's and Python's alike."""
    names = Counter()
    for task in Path("/proc/self/task").iterdir():
        try:
            names[(task / "comm").read_text().strip()] += 1
        except OSError:  # the thread ended while we looked
            pass
    return names


def held() -> dict:
    gc.collect()  # what is kept, not what is waiting to be collected
    process = psutil.Process()
    torch.cuda.synchronize()
    return {"allocated": torch.cuda.memory_allocated(), "reserved": torch.cuda.memory_reserved(),
            "pinned_pool": PINNED_POOL.pooled_bytes(), "rss": process.memory_info().rss,
            "threads": process.num_threads(), "python_threads": sorted(t.name for t in threading.enumerate()),
            "native_threads": native_thread_names(), "fds": process.num_fds()}


def drift_of(before: dict, after: dict) -> dict:
    drift = {key: after[key] - before[key] for key in before if isinstance(before[key], int)}
    drift["native_threads"] = {name: after["native_threads"][name] - before["native_threads"][name]
                               for name in set(before["native_threads"]) | set(after["native_threads"])
                               if after["native_threads"][name] != before["native_threads"][name]}
    drift["python_threads_added"] = sorted(set(after["python_threads"]) - set(before["python_threads"]))
    return drift


def report(name: str, data: dict) -> None:
    print(name, json.dumps(data))
    if os.environ.get("STREAMVAE_RELIABILITY_REPORT"):
        with open(os.environ["STREAMVAE_RELIABILITY_REPORT"], "a") as log:
            log.write(json.dumps({"test": name, **data}) + "\n")


def one_decode(vaes, rng, path, **extra):
    arch = rng.choice(sorted(SIZES))
    frames, height, width = rng.choice(SIZES[arch])
    settings = {**rng.choice(CODECS), "mode": rng.choice(MODES)}
    return decode(vaes, arch, (frames, height, width), path.with_suffix("." + settings["container"]),
                  seed=rng.randrange(1000), **settings, **extra)


def decode(vaes, arch, size, path, seed=0, **settings):
    frames, height, width = size
    latent = random_latent(vaes[arch], frames, height, width, seed=seed)
    return decode_to_video(vaes[arch], latent, path, fps=16, **settings), size, path


def warm_up(vaes, folder: Path):
    """Every family, size and mode once, before measuring: what a first decode leaves for the next ones (fast mode's
    converted weights per VAE, cuDNN's plans per shape, Triton's compiled kernels, the cuBLAS workspace of the
    attention's matmul) is then in place, and what the soak measures is what a decode leaves behind."""
    for arch, sizes in SIZES.items():
        for size in sizes:
            for mode in MODES:
                decode(vaes, arch, size, folder / "warm.mp4", mode=mode, **CODECS[0])


def test_gpu_soak_stays_flat(vaes, tmp_path):
    runs = count_from_env("STREAMVAE_GPU_SOAK_RUNS", 40)
    rng = random.Random(6)
    warm_up(vaes, tmp_path)
    before = held()
    for index in range(runs):
        stats, (frames, height, width), path = one_decode(vaes, rng, tmp_path / f"soak{index:03d}")
        decoded = read_video(path).frames
        assert decoded.shape == (frames, height, width, 3) and stats.frames == frames
        path.unlink()
    after = held()
    drift = drift_of(before, after)
    report("gpu_soak", {"runs": runs, "before": before, "after": after, "drift": drift})
    assert drift["allocated"] <= VRAM_DRIFT, drift
    assert drift["reserved"] <= RESERVED_DRIFT, drift
    assert after["pinned_pool"] <= MAX_POOLED_BYTES
    assert drift["rss"] <= RSS_DRIFT, drift
    assert not drift["python_threads_added"] and drift["fds"] <= 0, drift
    assert drift["threads"] <= NATIVE_THREAD_DRIFT, drift
    assert not partial_files(tmp_path)


def test_gpu_cancel_storm_leaves_nothing_behind(vaes, tmp_path):
    runs = count_from_env("STREAMVAE_GPU_CANCEL_RUNS", 30)
    rng = random.Random(30)
    warm_up(vaes, tmp_path)
    before = held()
    cancelled = 0
    for index in range(runs):
        stem = tmp_path / f"storm{index:02d}"
        try:  # polls to let through: 0 cancels before the first chunk
            _, _, path = one_decode(vaes, rng, stem, cancel=CancelAfter(rng.randrange(0, 6)))
        except Cancelled:
            cancelled += 1
            assert not list(tmp_path.glob(stem.name + ".*"))
        else:
            assert read_video(path).frames.shape[0] > 0  # it finished before its cancel point: the file is whole
            path.unlink()
        assert not partial_files(tmp_path) and engine_threads() == []
    after = held()
    drift = drift_of(before, after)
    report("gpu_cancel_storm", {"runs": runs, "cancelled": cancelled, "drift": drift})
    assert cancelled >= runs // 2
    assert drift["allocated"] <= VRAM_DRIFT and not drift["python_threads_added"] and drift["fds"] <= 0, drift
    assert drift["threads"] <= NATIVE_THREAD_DRIFT, drift
