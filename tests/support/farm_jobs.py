"""What the farm's tests and its benchmark share: the decode-only workflow and its job lines, small latents, a
worker's ComfyUI arguments, the one ComfyUI release the farm tests run on, and the check that every output is in
DEST once."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from streamvae.files import comfyui_release, find_comfyui
from streamvae.farm.destination import PARTIAL_FOLDER
from support import comfy_server as host
from support.comfy_server import WAN21_VAE
from support.videos import read_video

DECODE_ONLY = host.REPO_ROOT / "workflows" / "api" / "decode_only.json"
SETUP_SCRIPT = host.REPO_ROOT / "deploy" / "g7e" / "setup.sh"
# The farm is host-agnostic (it speaks to ComfyUI through the same client `run` uses, whose host tests run on every
# release); its tests take minutes, so they run once per suite, on the release the cluster recipe deploys.
FARM_HOST = re.search(r"tested against \((v[\d.]+)\)", SETUP_SCRIPT.read_text()).group(1).lstrip("v")
ALL_HOSTS_ENV = "STREAMVAE_FARM_ALL_HOSTS"
COMFYUI = find_comfyui()


def farm_skip_reason() -> str | None:
    if COMFYUI is None:
        return host.comfyui_missing_reason()
    try:
        import ray  # noqa: F401
    except ImportError:
        return 'Ray is not installed: pip install -e ".[farm]"'
    version = comfyui_release(COMFYUI)
    if version != FARM_HOST and not os.environ.get(ALL_HOSTS_ENV):
        return (f"the farm tests run on one host per suite, ComfyUI {FARM_HOST} (what deploy/g7e/setup.sh "
                f"installs); this is {version}. Set {ALL_HOSTS_ENV}=1 to run them here too")
    return None


def comfyui_args(tree) -> tuple[str, ...]:
    """What a worker's ComfyUI needs to see the test VAE and load only this pack (and start without a frontend
    package, as on the GPU machines)."""
    return ("--extra-model-paths-config", str(tree.extra_model_paths), "--disable-api-nodes",
            "--disable-all-custom-nodes", "--whitelist-custom-nodes", host.PACK_NAME, *host.frontend_args(tree))


def write_latent(path: Path, seed: int) -> Path:
    """A .latent as ComfyUI's SaveLatent writes it (Wan 2.1's 16 channels): one latent frame of 4x4, a one-frame
    32x32 video. The smallest there is: a job's cost on 2 shared cores is the VAE's, and the farm tests run dozens."""
    latent = torch.randn(1, 16, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    safetensors.torch.save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])}, str(path))
    return path


def job_sets(latent: str) -> dict:
    """A job's `set` for the decode-only workflow; latent is "@path" or "@s3://..."."""
    return {"LoadLatent.latent": latent, "Load VAE.vae_name": WAN21_VAE, "Save Video (Streaming).preset": "ultrafast"}


def latent_of(job) -> str:
    return Path(job.inputs[0].location).name


def assert_every_output_once(dest: Path, jobs: list, reference_frames: dict) -> dict:
    """DEST holds exactly one video per job, named by its id, each decoding to the plain server's frames, and
    the manifest one done record per job whose size and sha256 are the file's. The records, by id."""
    assert sorted(path.name for path in dest.glob("*.mp4")) == sorted(f"{job.id}.mp4" for job in jobs)
    assert not (dest / PARTIAL_FOLDER).exists() and not list(dest.rglob("*.part*"))
    lines = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    done = [record for record in lines if record["status"] == "done"]
    assert sorted(record["id"] for record in done) == sorted(job.id for job in jobs)  # each once: none twice
    for job in jobs:
        (record,) = [record for record in done if record["id"] == job.id]
        video = dest / f"{job.id}.mp4"
        (output,) = record["outputs"]
        assert output == {"location": str(video), "size": video.stat().st_size,
                          "sha256": hashlib.sha256(video.read_bytes()).hexdigest()}
        assert record["worker"] in ("w1", "w2") and record["video_seconds"] > 0 and record["rtf"] > 0
        assert set(record["timings"]) == {"inputs_s", "render_s", "publish_s", "wall_s"}
        np.testing.assert_array_equal(read_video(video).frames, reference_frames[latent_of(job)], err_msg=job.id)
    return {record["id"]: record for record in done}
