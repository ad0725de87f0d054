"""One farm worker's own ComfyUI: `python main.py` on 127.0.0.1 and a free port, in folders of its own.

ComfyUI has no authentication, so it never listens beyond loopback; only its worker talks to it. Its input, output,
temp and user folders are the worker's (several workers on one machine never share a file), and its database is
in memory. Models and custom nodes are ComfyUI's own (deploy/g7e/setup.sh puts them there) or wherever
`--extra-model-paths-config` in the extra arguments says.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from ..files import comfyui_candidates, find_comfyui

def comfyui_folder(given: Optional[str]) -> Path:
    """The ComfyUI folder on this machine: the option, else $COMFYUI_PATH, else ~/comfy/ComfyUI (where
    deploy/g7e/setup.sh installs it)."""
    found = find_comfyui(given)
    if found is None:
        tried = ", ".join(map(str, comfyui_candidates(given)))
        raise FileNotFoundError(f"no ComfyUI on {socket.gethostname()} (looked in {tried}): give --comfyui PATH (a "
                                "path on the worker machines) or set COMFYUI_PATH there; deploy/g7e/setup.sh "
                                "installs it in ~/comfy/ComfyUI")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(process: subprocess.Popen, url: str, timeout: float, log_tail: Callable[[], str]) -> None:
    """Poll GET /system_stats until ComfyUI answers; a clear error, with the log's tail, if it exits first or the
    time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode} before serving {url}.\n{log_tail()}")
        try:
            with urllib.request.urlopen(url + "/system_stats", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise RuntimeError(f"ComfyUI did not answer {url}/system_stats within {timeout:.0f} s.\n{log_tail()}")


class ComfyProcess:
    def __init__(self, comfyui: Path, python: str, root: Path, extra_args: tuple = (), cpu: bool = False):
        self.comfyui, self.python, self.root = comfyui, python, root
        self.extra_args, self.cpu = tuple(extra_args), cpu
        self.input_dir, self.output_dir = root / "input", root / "output"
        self.log_path = root / "comfyui.log"
        self.process: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        return [self.python, "main.py", "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
                "--input-directory", str(self.input_dir), "--output-directory", str(self.output_dir),
                "--temp-directory", str(self.root / "temp"), "--user-directory", str(self.root / "user"),
                "--database-url", "sqlite:///:memory:", *(["--cpu"] if self.cpu else []), *self.extra_args]

    def start(self, timeout: float) -> None:
        """Start it and wait until it answers; RuntimeError with its log's tail if it exits or stays silent."""
        for folder in (self.input_dir, self.output_dir, self.root / "temp", self.root / "user"):
            folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.comfyui, env=environment,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_serving(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_serving(self, timeout: float) -> None:
        wait_until_serving(self.process, self.url, timeout, self.log_tail)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then kill. Not Ctrl-C: a Ray worker ignores SIGINT, and a child inherits that; nothing of a
        worker's ComfyUI outlives it anyway (its folders go with the worker)."""
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "--- ComfyUI log tail ---\n" + "\n".join(text.splitlines()[-lines:])
