"""Run a real ComfyUI server with this pack loaded, and talk to it as a headless user would.

Plain helpers, no pytest in here: `conftest.py` turns them into fixtures, and a script can use
them too. Nothing here imports ComfyUI; the server and the weight builder run in their own
processes, with the same Python interpreter as the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

try:
    import websocket  # websocket-client
except ImportError:  # only the client needs it; finding ComfyUI and skipping must still work
    websocket = None

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


# --------------------------------------------------------------------------- finding ComfyUI

def comfyui_candidates() -> list[Path]:
    """Where to look for ComfyUI, in order: $COMFYUI_PATH, the ComfyUI holding this pack, ~/comfy/ComfyUI."""
    candidates = []
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(Path(os.environ["COMFYUI_PATH"]).expanduser())
    # A clone inside ComfyUI/custom_nodes/. (A *link* there resolves elsewhere: use COMFYUI_PATH.)
    if REPO_ROOT.parent.name == "custom_nodes":
        candidates.append(REPO_ROOT.parent.parent)
    candidates.append(Path.home() / "comfy" / "ComfyUI")
    return list(dict.fromkeys(candidates))


def find_comfyui() -> tuple[Path | None, list[Path]]:
    """The first candidate that holds main.py (or None), and every path tried."""
    tried = comfyui_candidates()
    found = next((path for path in tried if (path / "main.py").is_file()), None)
    return found, tried


def comfyui_version(comfyui: Path) -> str:
    text = (comfyui / "comfyui_version.py").read_text() if (comfyui / "comfyui_version.py").exists() else ""
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


# --------------------------------------------------------------------------- the temporary tree

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


def build_random_vaes(comfyui: Path, vae_dir: Path, timeout: float = 300) -> list[Path]:
    """Write the two random-weight Wan VAEs into vae_dir, in a subprocess (it imports ComfyUI)."""
    command = [sys.executable, str(HERE / "make_random_wan_vaes.py"), "--comfyui", str(comfyui), "--out", str(vae_dir)]
    done = subprocess.run(command, cwd=comfyui, env=_child_env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"building the random Wan VAEs failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}")
    return [vae_dir / WAN21_VAE, vae_dir / WAN22_VAE]


def remove_model_files(tree: HostTree):
    """The random VAEs are 1.6 GB; pytest keeps the last few temp trees, so don't leave them there."""
    shutil.rmtree(tree.models, ignore_errors=True)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the (possibly shared) ComfyUI checkout
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file as they happen, so a failure's tail is complete
    return env


# --------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ComfyServer:
    """A `python main.py --cpu` subprocess on a free loopback port, its output in a log file."""

    def __init__(self, comfyui: Path, tree: HostTree, port: int | None = None, extra_args: tuple[str, ...] = ()):
        self.comfyui = comfyui
        self.tree = tree
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tree.root / "server.log"
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        tree = self.tree
        return [
            sys.executable, "main.py",
            "--cpu",
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
            *self.extra_args,
        ]

    def start(self, timeout: float = 120) -> "ComfyServer":
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.comfyui, env=_child_env(),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_serving(timeout)
        except BaseException:  # including Ctrl-C: no fixture teardown would stop it otherwise
            self.stop()
            raise
        return self

    def _wait_until_serving(self, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} before serving.\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        raise RuntimeError(f"ComfyUI did not answer {self.url}/system_stats within {timeout:.0f} s.\n{self.log_tail()}")

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


# --------------------------------------------------------------------------- the client

class PromptRejected(Exception):
    """POST /prompt answered 400: the prompt failed validation and never ran."""

    def __init__(self, status: int, body: dict):
        self.status = status
        self.body = body
        self.error = body.get("error", {})
        self.node_errors = body.get("node_errors", {})
        message = self.error.get("message", "") if isinstance(self.error, dict) else str(self.error)
        super().__init__(f"HTTP {status}: {message} node_errors={json.dumps(self.node_errors)[:2000]}")


@dataclass
class PromptRun:
    """What happened to one prompt: its WebSocket messages in order, and its /history entry."""

    prompt_id: str
    messages: list[dict]  # {"type": str, "data": dict}; binary frames as {"type": "binary", "event": int, "data": bytes}
    history: dict

    @property
    def types(self) -> list[str]:
        return [message["type"] for message in self.messages]

    @property
    def status(self) -> str:
        return self.history.get("status", {}).get("status_str", "")

    @property
    def outputs(self) -> dict:
        """The `ui` dicts of the output nodes, by node id (as stored in /history)."""
        return self.history.get("outputs", {})

    def of_type(self, message_type: str) -> list[dict]:
        return [message["data"] for message in self.messages if message["type"] == message_type]


class ComfyClient:
    """HTTP for requests, one WebSocket for events, one client_id for both.

    The WebSocket opens in the constructor: ComfyUI sends a prompt's events only to the
    client_id that queued it, and only while that socket is connected.
    """

    def __init__(self, url: str, timeout: float = 30):
        if websocket is None:
            raise ImportError("the host tests need websocket-client: pip install websocket-client")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        ws_url = self.url.replace("http://", "ws://", 1) + "/ws?clientId=" + self.client_id
        self.ws = websocket.create_connection(ws_url, timeout=timeout)
        self._held: dict[str, list[dict]] = {}  # messages read while waiting for a different prompt

    def close(self):
        self.ws.close()

    # ---- HTTP

    def _request(self, method: str, path: str, body: dict | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read()

    def get_json(self, path: str):
        return json.loads(self._request("GET", path))

    def object_info(self, node_class: str | None = None) -> dict:
        """All node definitions, or one node's definition (its inputs, outputs, combo values)."""
        if node_class is None:
            return self.get_json("/object_info")
        return self.get_json("/object_info/" + urllib.parse.quote(node_class))[node_class]

    def queue(self, prompt: dict) -> str:
        """POST an API-format prompt; returns its prompt_id, or raises PromptRejected on HTTP 400."""
        prompt_id = str(uuid.uuid4())  # newer servers refuse anything but a canonical UUID string
        try:
            answer = json.loads(self._request("POST", "/prompt",
                                              {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}))
        except urllib.error.HTTPError as error:
            if error.code != 400:
                raise
            raise PromptRejected(error.code, json.loads(error.read() or b"{}")) from None
        return answer["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        return self.get_json("/history/" + prompt_id).get(prompt_id)

    def events(self, timeout: float):
        """Every JSON event the WebSocket delivers, in the server's order (binary previews skipped), for up to
        `timeout` seconds; then the read times out. For tests that act mid-run; wait() follows a whole prompt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            frame = self.ws.recv()
            if not isinstance(frame, bytes):
                yield json.loads(frame)

    def interrupt(self, prompt_id: str | None = None):
        """Stop the running prompt (only if it is prompt_id, when given)."""
        self._request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """Download a file the way the frontend does (GET /view)."""
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        return self._request("GET", "/view?" + query)

    # ---- WebSocket

    def wait(self, prompt_id: str, timeout: float = 120, on_message=None) -> PromptRun:
        """Follow the prompt's events until it finishes (any way), then fetch its history.

        The end is ComfyUI's `executing` with node None: the prompt worker sends it after
        success, error and interrupt alike, and after the history entry is written.
        on_message(message), when given, sees each of the prompt's messages as it arrives
        (to interrupt at a chosen moment, say).
        """
        messages = self._held.pop(prompt_id, [])
        if on_message:
            for message in messages:
                on_message(message)
        finished = any(_is_end(message) for message in messages)
        deadline = time.monotonic() + timeout
        while not finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s; "
                                   f"messages so far: {[message['type'] for message in messages]}")
            self.ws.settimeout(remaining)
            try:
                frame = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if isinstance(frame, bytes):
                # Previews carry no prompt_id; only one prompt runs at a time, so they are this one's.
                message = {"type": "binary", "event": int.from_bytes(frame[:4], "big"), "data": frame[4:]}
                owner = prompt_id
            else:
                message = json.loads(frame)
                # Messages without a prompt_id (the queue's `status`, ...) belong to no prompt: dropped.
                data = message.get("data")
                owner = data.get("prompt_id") if isinstance(data, dict) else None
            if owner == prompt_id:
                messages.append(message)
                finished = _is_end(message)
                if on_message:
                    on_message(message)
            elif owner is not None:
                self._held.setdefault(owner, []).append(message)
        return PromptRun(prompt_id, messages, self.history(prompt_id) or {})

    def run(self, prompt: dict, timeout: float = 120, on_message=None) -> PromptRun:
        """queue + wait."""
        return self.wait(self.queue(prompt), timeout, on_message)


def _is_end(message: dict) -> bool:
    """`executing` with node None: the last message of a prompt (the caller checked whose)."""
    return message["type"] == "executing" and message["data"].get("node") is None
