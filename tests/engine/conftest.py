"""Fixtures for the engine tests: tiny configurations of the real VAE classes (support/tiny_vaes.py), diffusers'
always, ComfyUI's when ComfyUI is found."""

from __future__ import annotations

import pytest

from streamvae.files import import_comfy
from support.process_checks import engine_threads
from support.tiny_vaes import tiny_comfy_wan_model, tiny_diffusers_vae


@pytest.fixture(scope="session", params=["wan2.1", "wan2.2"])
def diffusers_vae(request):
    return tiny_diffusers_vae(request.param)


@pytest.fixture(scope="session")
def wan21_vae():
    return tiny_diffusers_vae("wan2.1")


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI's `comfy` package on the CPU, imported in-process, or a skip saying how to get it."""
    if import_comfy() is None:  # on the GPU when there is one, else in ComfyUI's CPU mode
        pytest.skip("ComfyUI not found ($COMFYUI_PATH, ../../ when in custom_nodes/, ~/comfy/ComfyUI); "
                    "see the README's Tests section")
    import comfy.sd

    return comfy


@pytest.fixture(scope="session", params=["wan2.1", "wan2.2"])
def comfy_wan_model(request, comfy):
    """A tiny ComfyUI WanVAE module of each family with real-valued random weights."""
    return tiny_comfy_wan_model(request.param)


@pytest.fixture
def no_thread_left():
    """Asserts that a test leaves none of the engine's threads running."""
    yield
    alive = engine_threads(timeout=5)
    assert not alive, f"threads left running: {alive}"
