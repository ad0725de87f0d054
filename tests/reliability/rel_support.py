"""Shared by the reliability tests: tiny real VAEs, reading files back, and counting what a process holds.

Sizes are tiny on purpose (2 shared CPU cores in CI); counts of repeated runs come from environment variables so a
bigger machine can run the issue's full numbers:

    STREAMVAE_LOAD_PROMPTS   prompts in the load test (issue: 50; default here 4, after a 4-prompt warm-up)
    STREAMVAE_CANCEL_RUNS    interrupted prompts in the server's cancel storm (issue: 30; default here 4)
    STREAMVAE_ENGINE_CANCELS cancels in the engine-level storm (default 8)
    STREAMVAE_PROPERTY_EXAMPLES  hypothesis examples per property (default 60)
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import av
import numpy as np
import torch


def count_from_env(name: str, default: int) -> int:
    value = int(os.environ.get(name, default))
    if value < 1:
        raise ValueError(f"{name}={value}: use a positive count")
    return value


def tiny_wan21_vae(seed: int = 0):
    """diffusers' AutoencoderKLWan (the real class) at width 8: a 64x64 frame decodes in milliseconds."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=8, z_dim=16).eval().requires_grad_(False)


def tiny_wan22_vae(seed: int = 0):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=8, decoder_base_dim=16, z_dim=48, in_channels=12, out_channels=12,
                            patch_size=2, scale_factor_spatial=16, is_residual=True).eval().requires_grad_(False)


def latent(channels: int = 16, latent_frames: int = 2, height: int = 8, width: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, channels, latent_frames, height, width, generator=generator)


def read_video(path: Path) -> tuple[np.ndarray, object]:
    """Every frame, RGB `[N, H, W, 3]`, and the stream's average rate. Raises if the file does not decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return np.stack(frames), stream.average_rate


def partial_files(folder: Path) -> list[Path]:
    return [path for path in Path(folder).rglob("*") if ".partial" in path.name]


class CancelAfter:
    """A cancel check for the engine that answers True from its (allowed + 1)-th poll on; `polls` counts them."""

    def __init__(self, allowed: int):
        self.allowed, self.polls = allowed, 0

    def __call__(self) -> bool:
        self.polls += 1
        return self.polls > self.allowed


def engine_threads(timeout: float = 5.0) -> list[str]:
    """Names of the engine's threads still alive after giving them `timeout` seconds to finish."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("streamvae-"):
            thread.join(max(0.0, deadline - time.monotonic()))
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("streamvae-") and
            thread.is_alive()]


def snapshot(pid: int) -> dict:
    """What a process holds: resident memory, threads, open file descriptors, and the files among them."""
    import psutil

    process = psutil.Process(pid)
    return {"rss": process.memory_info().rss, "threads": process.num_threads(), "fds": process.num_fds(),
            "files": sorted(item.path for item in process.open_files())}


# --------------------------------------------------------------------------- host helpers

def wait_for_progress(client, prompt_id: str, node: str, timeout: float, at_least: int = 0) -> dict | None:
    """Read the prompt's events until `node` reports progress with value >= at_least; return that update, or None
    if the prompt ended first. Messages read here are kept for `client.wait()`, which still sees the whole run."""
    for message in client.events(timeout):
        data = message.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            continue
        client._held.setdefault(prompt_id, []).append(message)
        if message["type"] == "progress" and data.get("node") == node and data.get("value", 0) >= at_least:
            return data
        if message["type"] in ("execution_error", "execution_success", "execution_interrupted"):
            return None
    raise AssertionError(f"no progress from node {node} within {timeout:.0f} s")


def saved_paths(run, output_dir: Path, node: str = "save") -> list[Path]:
    return [Path(output_dir) / item["subfolder"] / item["filename"] for item in run.outputs[node]["images"]]


def error_message(run) -> str:
    errors = run.of_type("execution_error")
    assert errors, f"expected an execution error, got {run.types}"
    return errors[0]["exception_message"]
