"""Fixtures for the reliability tests.

    rel_server   (session)  a real ComfyUI server (`main.py --cpu`) with the pack and the two full-size random-weight
                            Wan VAEs, of its own: the load test measures its process, so no other test's prompts
                            may run on it. `.pid` is the server's process id (psutil reads RSS, threads, fds).
    rel_client   (test)     a HostClient on rel_server
    tight_server (session)  a second server whose output folder is a 2 MiB tmpfs mounted in a private mount
                            namespace (needs root, or user namespaces: skips with the reason otherwise)

Engine-only tests here need none of them. Without ComfyUI every server test skips, saying why.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest

from streamvae.files import find_comfyui
from support import comfy_server as host
from support.host_client import client_for

COMFYUI = find_comfyui()
TMPFS_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="session")
def rel_tree(tmp_path_factory):
    if COMFYUI is None:
        pytest.skip(host.comfyui_missing_reason())
    tree = host.make_host_tree(tmp_path_factory.mktemp("reliability_host"), COMFYUI)
    host.build_random_vaes(COMFYUI, tree.vae)
    yield tree
    host.remove_model_files(tree)


@pytest.fixture(scope="session")
def rel_server(rel_tree):
    server = host.ComfyServer(COMFYUI, rel_tree).start()
    server.pid = server.process.pid
    yield server
    server.stop()


@pytest.fixture
def rel_client(rel_server):
    client = client_for(rel_server)
    yield client
    client.close()


class TmpfsServer(host.ComfyServer):
    """The same server, started inside `unshare --mount` with a small tmpfs mounted over its output folder.

    The mount exists only in the server's own mount namespace: nothing on this machine sees it, and it goes away
    with the process. The test reads the server's view of the folder through /proc/<pid>/root.
    """

    def command(self) -> list[str]:
        script = f'mount -t tmpfs -o size={TMPFS_BYTES} streamvae-test "$1" && shift && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(self.tree.output),
                *super().command()]

    def output_view(self) -> Path:
        return Path(f"/proc/{self.process.pid}/root") / str(self.tree.output).lstrip("/")


def _can_mount_tmpfs() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k probe /mnt"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("mounting a tmpfs in a private mount namespace failed (needs root or CAP_SYS_ADMIN): "
                + probe.stderr.strip())
    return None


@pytest.fixture(scope="session")
def tight_server(rel_tree, tmp_path_factory):
    problem = _can_mount_tmpfs()
    if problem:
        pytest.skip(problem)
    tree = copy.copy(rel_tree)
    tree.output = tmp_path_factory.mktemp("tmpfs_output")
    tree.temp = tmp_path_factory.mktemp("tmpfs_server_temp")  # ComfyUI empties its temp folder at start
    tree.user = tmp_path_factory.mktemp("tmpfs_server_user")
    server = TmpfsServer(COMFYUI, tree)
    server.log_path = tree.output.parent / "tight_server.log"
    server.start()
    server.pid = server.process.pid
    yield server
    server.stop()


@pytest.fixture
def tight_client(tight_server):
    client = client_for(tight_server)
    yield client
    client.close()
