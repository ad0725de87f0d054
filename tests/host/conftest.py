"""Fixtures for the host tests: a real ComfyUI server with this pack loaded, driven over HTTP and WebSocket.

    comfyui_path   (session)  the ComfyUI folder in use; every host test skips when none is found
    comfy_tree     (session)  HostTree: temp models/vae (two random-weight Wan VAEs), custom_nodes
                              (a link to this repo), input, output, temp, user, extra_model_paths.yaml
    comfy_server   (session)  ComfyServer: running `main.py --cpu`; .url, .log_path, .log_text(), .tree
    comfy_client   (test)     ComfyClient on its own client_id and WebSocket: object_info, queue, wait,
                              run, interrupt, view, history
"""

import sys
from pathlib import Path

import pytest

# Importable as `comfy_host` from tests under any --import-mode (importlib mode adds nothing to sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfy_host  # noqa: E402

COMFYUI, TRIED = comfy_host.find_comfyui()
SKIP_REASON = ("ComfyUI not found (looked for main.py in: " + ", ".join(map(str, TRIED)) + "). "
               + comfy_host.HOW_TO_GET_COMFYUI)


def pytest_report_header(config):
    if COMFYUI is None:
        return f"host tests: {SKIP_REASON}"
    return f"host tests: ComfyUI {comfy_host.comfyui_version(COMFYUI)} at {COMFYUI}"


def pytest_collection_modifyitems(config, items):
    # Skip at collection, so a test here skips even if it asks for no fixture.
    if COMFYUI is not None:
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    if COMFYUI is None:
        pytest.skip(SKIP_REASON)
    return COMFYUI


@pytest.fixture(scope="session")
def comfy_tree(comfyui_path, tmp_path_factory):
    tree = comfy_host.make_host_tree(tmp_path_factory.mktemp("comfy_host"), comfyui_path)
    comfy_host.build_random_vaes(comfyui_path, tree.vae)
    yield tree
    comfy_host.remove_model_files(tree)


@pytest.fixture(scope="session")
def comfy_server(comfyui_path, comfy_tree):
    server = comfy_host.ComfyServer(comfyui_path, comfy_tree).start()
    yield server
    server.stop()


@pytest.fixture
def comfy_client(comfy_server):
    if comfy_server.process.poll() is not None:
        pytest.fail(f"the ComfyUI server died earlier (exit {comfy_server.process.returncode}).\n"
                    + comfy_server.log_tail())
    client = comfy_host.ComfyClient(comfy_server.url)
    yield client
    client.close()
