"""Fixtures for the farm tests: a local Ray cluster, real ComfyUI `--cpu` workers with a random-weight Wan 2.1 VAE,
small latents, and what one plain ComfyUI server makes of them (the result every farm output must decode to).

    farm_host        (session)  the ComfyUI folder; skips when there is none, when Ray is not installed, or when
                                this host is not the one the farm tests run on (support/farm_jobs.py, FARM_HOST)
    farm_tree        (session)  HostTree with the Wan 2.1 VAE; comfyui_args() points a worker's ComfyUI at it
    ray_cluster      (session)  ray.init(num_cpus=2) in this process; its address, for drivers in subprocesses
    latents          (session)  three .latent files, as SaveLatent writes them
    reference_frames (session)  {latent name: frames} decoded back from one plain ComfyUI server's videos
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamvae.client import ComfyClient, Overrides
from support import comfy_server as host
from support.comfy_server import WAN21_VAE
from support.farm_jobs import COMFYUI, DECODE_ONLY, farm_skip_reason, job_sets, write_latent
from support.videos import read_video

FARM_FOLDER = Path(__file__).resolve().parent

def pytest_collection_modifyitems(config, items):
    # The tests that start ComfyUI servers are host tests, like those in host/ (tests/conftest.py, pytest.ini).
    for item in items:
        if FARM_FOLDER in Path(item.path).resolve().parents and "farm_host" in item.fixturenames:
            item.add_marker(pytest.mark.host)


@pytest.fixture(scope="session")
def farm_host() -> Path:
    reason = farm_skip_reason()
    if reason:
        pytest.skip(reason)
    return COMFYUI


@pytest.fixture(scope="session")
def farm_tree(farm_host, tmp_path_factory):
    tree = host.make_host_tree(tmp_path_factory.mktemp("farm_host"), farm_host)
    host.build_random_vaes(farm_host, tree.vae, only=(WAN21_VAE,))
    yield tree
    host.remove_model_files(tree)


@pytest.fixture(scope="session")
def ray_cluster(farm_host):
    import ray

    context = ray.init(num_cpus=2, include_dashboard=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="session")
def latents(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("latents")
    return [write_latent(folder / f"clip{seed}.latent", seed) for seed in range(3)]


@pytest.fixture(scope="session")
def reference_frames(farm_host, farm_tree, latents) -> dict:
    """Each latent through the decode-only workflow on one plain ComfyUI server, as `run` would do it."""
    server = host.ComfyServer(farm_host, farm_tree).start()
    try:
        client = ComfyClient(server.url)
        workflow = json.loads(DECODE_ONLY.read_text())
        frames = {}
        for latent in latents:
            sets = [tuple(key.rsplit(".", 1)) + (value,) for key, value in job_sets(f"@{latent}").items()]
            result = client.run(workflow, Overrides(sets=sets), out_dir=farm_tree.root / "reference")
            assert result.ok, result.error
            frames[latent.name] = read_video(result.files[0]).frames
        return frames
    finally:
        server.stop()
