"""Run a real ComfyUI server with this pack loaded (host_client.py talks to it as a headless user would).

Plain helpers, no pytest in here: the conftest.py files turn them into fixtures, and a script can use them too.
Nothing here imports ComfyUI; the server and the weight builder run in their own processes, with the same Python
interpreter as the caller. ComfyUI itself is found by streamvae.files.find_comfyui.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from streamvae.farm.comfy_process import free_port, wait_until_serving
from streamvae.files import comfyui_candidates

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
# The folder name ComfyUI sees for the pack. It becomes the module name, the prefix of
# `python_module` in /object_info and the web extension's URL (/extensions/ComfyUI-StreamVAE/).
PACK_NAME = "ComfyUI-StreamVAE"
WAN21_VAE = "tiny_wan21_vae.safetensors"
WAN22_VAE = "tiny_wan22_vae.safetensors"

HOW_TO_GET_COMFYUI = (
    "Set COMFYUI_PATH to a ComfyUI checkout (git clone https://github.com/comfyanonymous/ComfyUI; "
    "pip install -r requirements.txt into this interpreter's environment), or put this pack "
    "in ComfyUI/custom_nodes/."
)


def comfyui_missing_reason() -> str:
    """Why the host tests skip when streamvae.files.find_comfyui() finds nothing: where it looked, and what to do."""
    tried = ", ".join(map(str, comfyui_candidates()))
    return f"ComfyUI not found (looked for main.py and comfy/sd.py in: {tried}). {HOW_TO_GET_COMFYUI}"


@dataclass
class HostTree:
    """A throwaway ComfyUI base: models, custom_nodes, input, output, temp and user folders."""

    root: Path
    models: Path = field(init=False)
    vae: Path = field(init=False)
    custom_nodes: Path = field(init=False)
    input: Path = field(init=False)
    output: Path = field(init=False)
    temp: Path = field(init=False)
    user: Path = field(init=False)
    extra_model_paths: Path = field(init=False)

    def __post_init__(self):
        self.models = self.root / "models"
        self.vae = self.models / "vae"
        self.custom_nodes = self.root / "custom_nodes"
        self.input = self.root / "input"
        self.output = self.root / "output"
        self.temp = self.root / "temp"
        self.user = self.root / "user"  # --user-directory must exist before the server starts
        self.extra_model_paths = self.root / "extra_model_paths.yaml"


def make_host_tree(root: Path, comfyui: Path, repo_root: Path = REPO_ROOT) -> HostTree:
    """Create the folders, link the pack in as a custom node, and write extra_model_paths.yaml."""
    tree = HostTree(root)
    for folder in (tree.vae, tree.custom_nodes, tree.input, tree.output, tree.temp, tree.user):
        folder.mkdir(parents=True, exist_ok=True)

    # JSON strings are valid YAML: quoting keeps odd characters in the temp path harmless.
    lines = ["streamvae_host_tests:", f"    base_path: {json.dumps(str(tree.root))}", "    vae: models/vae"]
    # When the pack already sits in ComfyUI's own custom_nodes under PACK_NAME, ComfyUI finds it
    # there; a second copy would load the module twice (and register its routes twice).
    installed = comfyui / "custom_nodes" / PACK_NAME
    if installed.exists():
        if installed.resolve() != repo_root.resolve():
            raise RuntimeError(f"{installed} is another copy of the pack; the server would load it, "
                               f"not the one under test ({repo_root}). Move it away or set COMFYUI_PATH.")
    else:
        (tree.custom_nodes / PACK_NAME).symlink_to(repo_root.resolve(), target_is_directory=True)
        lines.append("    custom_nodes: custom_nodes")
    tree.extra_model_paths.write_text("\n".join(lines) + "\n")
    return tree


def build_random_vaes(comfyui: Path, vae_dir: Path, timeout: float = 300, only: tuple[str, ...] = ()) -> list[Path]:
    """Write the random-weight Wan VAEs (both, or the `only` ones) into vae_dir, in a subprocess (it imports
    ComfyUI)."""
    command = [sys.executable, str(HERE / "make_random_wan_vaes.py"), "--comfyui", str(comfyui), "--out", str(vae_dir),
               *(argument for name in only for argument in ("--only", name))]
    env = _child_env()
    # The builder imports this checkout's packages: these first, whatever the environment has installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(command, cwd=comfyui, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"building the random Wan VAEs failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}")
    return [vae_dir / name for name in (only or (WAN21_VAE, WAN22_VAE))]


def remove_model_files(tree: HostTree):
    """The random VAEs are 1.6 GB; pytest keeps the last few temp trees, so don't leave them there."""
    shutil.rmtree(tree.models, ignore_errors=True)


def ctrl_c_as_in_a_terminal():
    """Popen's preexec_fn for a child that is stopped with Ctrl-C (SIGINT), as a user in a terminal would.

    A child inherits an ignored SIGINT, and Python then never raises KeyboardInterrupt: pytest started in the
    background (`pytest ... &`, nohup, some CI runners) ignores it, so without this the child would not stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the (possibly shared) ComfyUI checkout
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file as they happen, so a failure's tail is complete
    return env


def frontend_args(tree: HostTree) -> tuple[str, ...]:
    """The HTTP API needs no frontend: where its package isn't installed (the GPU machines carry no wheels for it),
    serve an empty folder instead of letting ComfyUI exit for want of it."""
    if importlib.util.find_spec("comfyui_frontend_package") is not None:
        return ()
    empty = tree.root / "no_frontend"
    empty.mkdir(exist_ok=True)
    return ("--front-end-root", str(empty))


# --------------------------------------------------------------------------- the server

class ComfyServer:
    """A `python main.py` subprocess on a free loopback port (`--cpu` unless gpu=True), its output in a log file."""

    def __init__(self, comfyui: Path, tree: HostTree, port: int | None = None, extra_args: tuple[str, ...] = (),
                 gpu: bool = False, log_name: str = "server.log"):
        self.comfyui = comfyui
        self.gpu = gpu
        self.tree = tree
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tree.root / log_name
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        tree = self.tree
        return [
            sys.executable, "main.py",
            *(() if self.gpu else ("--cpu",)),
            "--listen", "127.0.0.1",
            "--port", str(self.port),
            "--disable-auto-launch",
            "--output-directory", str(tree.output),
            "--input-directory", str(tree.input),
            "--temp-directory", str(tree.temp),  # ComfyUI puts its temp/ inside this folder
            "--user-directory", str(tree.user),
            # The default database lives inside the ComfyUI checkout; keep the checkout untouched.
            "--database-url", "sqlite:///:memory:",
            "--extra-model-paths-config", str(tree.extra_model_paths),
            "--disable-api-nodes",  # faster, offline start
            # Load only this pack: the user's other custom nodes would slow the start and muddy the log.
            "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME,
            *frontend_args(tree),
            *self.extra_args,
        ]

    def start(self, timeout: float = 120) -> "ComfyServer":
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.comfyui, env=_child_env(),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=ctrl_c_as_in_a_terminal)
        try:
            self._wait_until_serving(timeout)
        except BaseException:  # including Ctrl-C: no fixture teardown would stop it otherwise
            self.stop()
            raise
        return self

    def _wait_until_serving(self, timeout: float):
        wait_until_serving(self.process, self.url, timeout, self.log_tail)

    def stop(self, timeout: float = 15):
        """Ctrl-C first (ComfyUI shuts down cleanly on KeyboardInterrupt), then kill."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "--- ComfyUI log tail ---\n" + "\n".join(self.log_text().splitlines()[-lines:])
