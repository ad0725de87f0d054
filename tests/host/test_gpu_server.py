"""What users run, measured where they run it: a real ComfyUI server, stock graphs against this pack's.

The pack sits in custom_nodes/ as users install it; random-weight Wan 2.1 and Wan 2.2 VAE files are loaded by
VAELoader and `.latent` files by LoadLatent; everything goes over HTTP and WebSocket as API prompts.

- Pixels, checked through ComfyUI's own SaveImage (PNG, 8-bit): VAE Decode (Async) and VAE Decode (Streaming,
  exact) give stock VAE Decode's pixels exactly; fast mode stays >= 45 dB from them.
- Speed (on a GPU only): stock VAE Decode -> Create Video -> Save Video against VAE Decode (Streaming) in exact and
  fast modes -> Save Video (Streaming), h264 crf 23 medium on both sides, timed from the server's own
  execution_start / execution_success timestamps, after a warm-up, alternating graphs in one run. Each saved file is
  decoded back. Fast must beat exact and exact must beat stock. The table goes to $STREAMVAE_RESULTS_DIR (JSON) and
  to the test's output.

On a GPU the videos are full size (1280x720x161 and 1280x704x121); on a CPU (CI) they are tiny and only the pixel
checks run, which keeps the graphs themselves tested on every host release.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from streamvae.files import comfyui_release
from support import comfy_server as host
from support.comfy_server import WAN21_VAE, WAN22_VAE
from support.host_client import HostClient
from support.process_checks import snapshot
from support.videos import partial_files, psnr, read_video

ON_GPU = torch.cuda.is_available()
# family -> (VAE file, latent shape [B, C, T, H, W]); the full sizes are the benchmark cases of docs/benchmarks.md.
CASES = {
    "wan21": (WAN21_VAE, (1, 16, 41, 90, 160) if ON_GPU else (1, 16, 3, 6, 8)),
    "wan22": (WAN22_VAE, (1, 48, 31, 44, 80) if ON_GPU else (1, 48, 3, 3, 4)),
}
STREAM_SAVE = {"fps": 16, "container": "mp4", "codec": "h264", "crf": 23, "preset": "medium", "pix_fmt": "yuv420p",
               "encoder": "auto", "embed_workflow": True}
FAST_MIN_PSNR_DB = 45.0
TIMED_ROUNDS = 2


# --------------------------------------------------------------------------- the server and its inputs

@pytest.fixture(scope="module")
def server(request, comfyui_path, comfy_tree):
    """On a GPU, a server of its own on the GPU; on a CPU, the host tests' shared `--cpu` server."""
    if not ON_GPU:
        yield request.getfixturevalue("comfy_server")
        return
    server = host.ComfyServer(comfyui_path, comfy_tree, gpu=True).start(timeout=300)
    yield server
    server.stop()


@pytest.fixture
def client(server):
    client = HostClient(server.url, timeout=120)
    yield client
    client.close()


_latent_runs = iter(range(10**6))


def latent_file(server, family: str) -> str:
    """A new .latent file (SaveLatent's format) for each prompt: ComfyUI caches node outputs by their inputs, so a
    new file name makes every node after LoadLatent run again, as a new generation would."""
    shape = CASES[family][1]
    name = f"{family}_{next(_latent_runs)}.latent"
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    save_file({"latent_tensor": latent.contiguous(), "latent_format_version_0": torch.tensor([])},
              str(server.tree.input / name))
    return name


def frame_count(family: str) -> int:
    return 1 + 4 * (CASES[family][1][2] - 1)


def windows(family: str) -> list[tuple[int, int]]:
    """(first frame, count) of the frames checked: the first chunks, the middle and the end of the video."""
    frames = frame_count(family)
    count = min(5, frames)
    return sorted({(0, count), (max(0, frames // 2 - 2), count), (frames - count, count)})


# --------------------------------------------------------------------------- graphs

def inputs_nodes(server, family: str) -> dict:
    return {"vae": {"class_type": "VAELoader", "inputs": {"vae_name": CASES[family][0]}},
            "latent": {"class_type": "LoadLatent", "inputs": {"latent": latent_file(server, family)}}}


def decoder_nodes(graph: str) -> tuple[dict, list]:
    """The nodes that turn "latent" into an IMAGE batch, and the link to that batch."""
    if graph == "stock":
        return {"decode": {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0]}}}, \
            ["decode", 0]
    if graph == "async":
        return {"decode": {"class_type": "StreamVAEDecodeAsync",
                           "inputs": {"samples": ["latent", 0], "vae": ["vae", 0]}}}, ["decode", 0]
    return {"stream": {"class_type": "StreamVAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0],
                                                                  "mode": graph}},
            "decode": {"class_type": "StreamVAEFrameStreamToImages", "inputs": {"frames": ["stream", 0],
                                                                                "start": 0, "count": 0}}}, \
        ["decode", 0]


def pixels_prompt(server, family: str, graph: str) -> dict:
    """Decode, then SaveImage of each checked window of frames."""
    nodes, images = decoder_nodes(graph)
    prompt = {**inputs_nodes(server, family), **nodes}
    for first, count in windows(family):
        prompt[f"window_{first}"] = {"class_type": "ImageFromBatch",
                                     "inputs": {"image": images, "batch_index": first, "length": count}}
        prompt[f"save_{first}"] = {"class_type": "SaveImage", "inputs": {
            "images": [f"window_{first}", 0], "filename_prefix": f"pixels/{family}_{graph}_{first}"}}
    return prompt


def video_prompt(server, family: str, graph: str) -> dict:
    """What users time: latent to a finished h264 MP4."""
    prompt = inputs_nodes(server, family)
    prefix = f"timed/{family}_{graph}"
    if graph == "stock":
        prompt["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0]}}
        prompt["video"] = {"class_type": "CreateVideo", "inputs": {"images": ["decode", 0], "fps": 16}}
        prompt["save"] = {"class_type": "SaveVideo", "inputs": {"video": ["video", 0], "filename_prefix": prefix,
                                                                "format": "mp4", "codec": "h264"}}
    else:
        prompt["stream"] = {"class_type": "StreamVAEDecode", "inputs": {"samples": ["latent", 0],
                                                                        "vae": ["vae", 0], "mode": graph}}
        prompt["save"] = {"class_type": "StreamVAESaveVideo",
                          "inputs": {**STREAM_SAVE, "frames": ["stream", 0], "filename_prefix": prefix}}
    return prompt


# --------------------------------------------------------------------------- reading results

def run_ok(client, prompt: dict, timeout: float = 600):
    run = client.run_prompt(prompt, timeout=timeout)
    errors = run.of_type("execution_error")
    assert run.status == "success", errors[0]["exception_message"] if errors else run.messages[-3:]
    return run


def saved_images(run, output: Path) -> np.ndarray:
    """Every PNG the prompt's SaveImage nodes wrote, in window order, as one uint8 [N, H, W, 3] array."""
    paths = []
    for node in sorted(run.outputs, key=lambda name: int(name.split("_")[1])):
        paths += [output / item["subfolder"] / item["filename"] for item in run.outputs[node]["images"]]
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])


def execution_seconds(run) -> float:
    """From the server's own timestamps (milliseconds) of execution_start and execution_success."""
    stamps = {kind: data["timestamp"] for kind, data in run.history["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("family", list(CASES))
def test_pixels_match_stock_vae_decode(client, server, family):
    output = server.tree.output
    stock = saved_images(run_ok(client, pixels_prompt(server, family, "stock")), output)
    for graph in ("async", "exact"):
        ours = saved_images(run_ok(client, pixels_prompt(server, family, graph)), output)
        assert ours.shape == stock.shape
        differing = int(np.count_nonzero(ours != stock))
        assert differing == 0, f"{graph}: {differing} of {stock.size} bytes differ from stock VAE Decode"
    fast = saved_images(run_ok(client, pixels_prompt(server, family, "fast")), output)
    assert psnr(fast, stock) >= FAST_MIN_PSNR_DB


@pytest.mark.cuda
@pytest.mark.skipif(not ON_GPU, reason="timings mean something on a GPU only")
def test_streaming_graphs_are_faster_than_stock(client, server):
    graphs = ("stock", "exact", "fast")
    seconds = {(family, graph): [] for family in CASES for graph in graphs}
    engine_stats = {}  # where a streaming graph's time went, as the save node reported it
    for round_index in range(TIMED_ROUNDS + 1):  # round 0 warms up: VAE load, cuDNN autotuning, Triton compiles
        for family in CASES:
            for graph in graphs:
                run = run_ok(client, video_prompt(server, family, graph))
                check_video(run, server.tree.output, family)
                if round_index:
                    seconds[family, graph].append(execution_seconds(run))
                    engine_stats.setdefault(f"{family}/{graph}", []).extend(done_stats(run))
    table = record(seconds, server, engine_stats)
    print("\n" + table)
    for family in CASES:
        best = {graph: min(seconds[family, graph]) for graph in graphs}
        assert best["fast"] < best["exact"] < best["stock"], f"{family}: {best}"


def check_video(run, output: Path, family: str):
    (item,) = run.outputs["save"]["images"]
    frames = read_video(output / item["subfolder"] / item["filename"]).frames
    shape = CASES[family][1]
    scale = 8 if family == "wan21" else 16
    assert frames.shape == (frame_count(family), shape[3] * scale, shape[4] * scale, 3)


def done_stats(run) -> list[dict]:
    """The engine's own account of a streaming run (decoder, decode and encode seconds, encoder, GPU busy), from the
    save node's `streamvae.done` message; nothing for stock graphs."""
    keep = ("decoder", "encoder", "wall_seconds", "decode_seconds", "encode_seconds", "gpu_busy", "peak_vram_bytes")
    return [{key: item.get(key) for key in keep} for done in run.of_type("streamvae.done") for item in done["files"]]


def record(seconds: dict, server, engine_stats: dict) -> str:
    """A markdown table of the timings, and the same as JSON in $STREAMVAE_RESULTS_DIR when that is set."""
    facts = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__,
             "driver": _driver_version(), "host_release": comfyui_release(server.comfyui),
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version(),
             "rounds": TIMED_ROUNDS, "seconds": {f"{family}/{graph}": times
                                                 for (family, graph), times in seconds.items()},
             "engine_stats": engine_stats}
    lines = [f"ComfyUI {facts['host_release']}, {facts['card']}, driver {facts['driver']}, torch {facts['torch']}, "
             f"{facts['date']}", "| VAE | stock s | exact s | fast s | exact × | fast × |", "|---|---:|---:|---:|---:|---:|"]
    for family in CASES:
        best = {graph: min(seconds[family, graph]) for graph in ("stock", "exact", "fast")}
        lines.append(f"| {family} | {best['stock']:.2f} | {best['exact']:.2f} | {best['fast']:.2f} | "
                     f"{best['stock'] / best['exact']:.2f} | {best['stock'] / best['fast']:.2f} |")
    results_dir = os.environ.get("STREAMVAE_RESULTS_DIR")
    if results_dir:
        path = Path(results_dir) / f"gpu-server-{facts['host_release']}.json"
        path.write_text(json.dumps(facts, indent=1))
    return "\n".join(lines)


def _driver_version() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "unknown"
    import subprocess  # noqa: PLC0415

    done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


# --------------------------------------------------------------------------- the soak users live through

SOAK_PROMPTS = 50
SOAK_SETTLED = 10  # from this prompt on, every config has run once and every cache (VAE weights, fast mode's
#                    converted weights, cuDNN plans, the pinned-buffer pool) holds what it will hold
SOAK_CANCEL_EVERY = 7
SOAK_LATENT = {"wan21": (1, 16, 9, 60, 104), "wan22": (1, 48, 9, 30, 52)}  # 832x480x33: a prompt takes ~a second


@pytest.mark.cuda
@pytest.mark.soak
@pytest.mark.skipif(not ON_GPU, reason="the server soak runs full-size VAEs on the GPU")
def test_server_stays_flat_over_50_prompts(client, server, monkeypatch):
    """Both VAEs, exact and fast, a cancel every few prompts: after the tenth prompt the server's VRAM in use, host
    memory, threads and open files stop growing, and every saved file is whole."""
    monkeypatch.setitem(CASES, "wan21", (WAN21_VAE, SOAK_LATENT["wan21"]))
    monkeypatch.setitem(CASES, "wan22", (WAN22_VAE, SOAK_LATENT["wan22"]))
    configs = [(family, mode) for family in CASES for mode in ("exact", "fast")]
    samples = []
    for index in range(SOAK_PROMPTS):
        family, mode = configs[index % len(configs)]
        prompt_id = client.queue(video_prompt(server, family, mode))
        cancel = index % SOAK_CANCEL_EVERY == SOAK_CANCEL_EVERY - 1
        if cancel:
            client.wait_for_progress(prompt_id, "save", timeout=300, at_least=1)
            client.interrupt(prompt_id)
        run = client.wait(prompt_id, timeout=300)
        interrupted = cancel and "execution_interrupted" in run.types
        if interrupted:
            assert not run.outputs.get("save"), "an interrupted prompt reported a file"
        else:
            assert run.status == "success", run.of_type("execution_error")
            check_video(run, server.tree.output, family)
        assert not partial_files(server.tree.output)
        samples.append({"prompt": index + 1, "config": f"{family}/{mode}", "interrupted": interrupted,
                        **server_vram(client), **snapshot(server.process.pid)})
    growth = soak_growth(samples)
    print("\nserver soak growth from prompt", SOAK_SETTLED, json.dumps(growth))
    results_dir = os.environ.get("STREAMVAE_RESULTS_DIR")
    if results_dir:
        Path(results_dir, "gpu-server-soak.json").write_text(json.dumps({"growth": growth, "samples": [
            {key: value for key, value in sample.items() if key != "files"} for sample in samples]}, indent=1))
    # Between prompts nothing of a decode is alive: the VRAM in use is the VAEs' weights (and fast mode's converted
    # copy), the same after every prompt of a configuration. Host memory may move by what glibc keeps in its arenas
    # (a few chunks of frames); threads and files by the encoder's pools, which are reused, not added to.
    assert growth["vram_active"] == 0, growth
    assert growth["rss"] <= 256 * 2**20, growth
    assert growth["threads"] <= 8, growth
    assert growth["fds"] <= 4, growth


def soak_growth(samples: list[dict]) -> dict:
    """How far each measure rose, from the first settled prompt of a configuration to any later finished prompt of
    the same configuration; the largest rise over the configurations. Like is compared with like: between
    prompts of different configurations the server may hold different things (which VAE ComfyUI loaded last, how
    its model management placed the weights) without anything growing; a leak shows as a rise within one."""
    growth = {}
    for key in ("vram_active", "rss", "threads", "fds"):
        rises = []
        for config in {sample["config"] for sample in samples}:
            values = [sample[key] for sample in samples
                      if sample["config"] == config and sample["prompt"] >= SOAK_SETTLED and not sample["interrupted"]]
            rises.append(max(values) - values[0])
        growth[key] = max(rises)
    return growth


def server_vram(client) -> dict:
    """VRAM in use by the server's tensors: what PyTorch has reserved minus what is free inside it."""
    (device,) = client.get_json("/system_stats")["devices"][:1]
    return {"vram_active": device["torch_vram_total"] - device["torch_vram_free"]}
