"""Fixtures for the host tests: a real ComfyUI server with this pack loaded, driven over HTTP and WebSocket.

    comfyui_path   (session)  the ComfyUI folder in use; every host test skips when none is found
    comfy_tree     (session)  HostTree: temp models/vae (two random-weight Wan VAEs), custom_nodes
                              (a link to this repo), input, output, temp, user, extra_model_paths.yaml
    comfy_server   (session)  ComfyServer: running `main.py --cpu`; .url, .log_path, .log_text(), .tree
    comfy_client   (test)     HostClient on its own client_id and WebSocket (support/host_client.py)
"""

from pathlib import Path

import pytest

from streamvae.files import comfyui_release, find_comfyui
from support import comfy_server as host
from support.host_client import client_for

COMFYUI = find_comfyui()


def pytest_report_header(config):
    if COMFYUI is None:
        return f"host tests: {host.comfyui_missing_reason()}"
    return f"host tests: ComfyUI {comfyui_release(COMFYUI)} at {COMFYUI}"


def pytest_collection_modifyitems(config, items):
    # Skip at collection, so a test here skips even if it asks for no fixture.
    if COMFYUI is not None:
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=host.comfyui_missing_reason()))


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    if COMFYUI is None:
        pytest.skip(host.comfyui_missing_reason())
    return COMFYUI


@pytest.fixture(scope="session")
def comfy_tree(comfyui_path, tmp_path_factory):
    tree = host.make_host_tree(tmp_path_factory.mktemp("comfy_host"), comfyui_path)
    host.build_random_vaes(comfyui_path, tree.vae)
    yield tree
    host.remove_model_files(tree)


@pytest.fixture(scope="session")
def comfy_server(comfyui_path, comfy_tree):
    server = host.ComfyServer(comfyui_path, comfy_tree).start()
    yield server
    server.stop()


@pytest.fixture
def comfy_client(comfy_server):
    client = client_for(comfy_server)
    yield client
    client.close()
