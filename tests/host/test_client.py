"""`python -m streamvae run` and ComfyClient against the real server: the decode-only workflow end to end (upload,
progress, download, a video PyAV decodes), and what a user sees when it goes wrong (exit codes, readable errors,
timeouts that cancel the prompt on the server)."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
import safetensors.torch
import torch

import comfy_host
from comfy_host import WAN21_VAE
from nodes_graphs import FRAMES, HEIGHT, WIDTH, read_frames
from streamvae.client import ComfyClient, Overrides, ui_to_api

DECODE_ONLY = comfy_host.REPO_ROOT / "workflows" / "decode_only.json"


def write_latent(path, latent_frames: int = 2):
    """A .latent as ComfyUI's SaveLatent writes it: Wan 2.1's 16 channels, 8x smaller than the video."""
    torch.manual_seed(0)
    latent = torch.randn(1, 16, latent_frames, HEIGHT // 8, WIDTH // 8)
    safetensors.torch.save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])}, str(path))
    return path


def run_cli(server, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamvae", "run", *map(str, args), "--server", server.url],
                          capture_output=True, text=True, timeout=timeout, cwd=comfy_host.REPO_ROOT)


def decode_only_args(latent: str, prefix: str) -> list[str]:
    return [DECODE_ONLY, "--set", f"LoadLatent.latent={latent}", "--set", f"Load VAE.vae_name={WAN21_VAE}",
            "--set", f"Save Video (Streaming).filename_prefix={prefix}",
            "--set", "Save Video (Streaming).preset=ultrafast"]


def test_decode_only_runs_end_to_end_from_the_command_line(comfy_server, tmp_path):
    latent = write_latent(tmp_path / f"clip_{uuid.uuid4().hex[:8]}.latent")
    out = tmp_path / "out"
    done = run_cli(comfy_server, *decode_only_args(f"@{latent}", "client/cli"), "--fps", 24, "--out", out)
    assert done.returncode == 0, done.stderr
    (video,) = out.rglob("*.mp4")
    assert done.stdout.split() == [str(video)]
    assert video.relative_to(out).parts[0] == "client"  # the server's subfolder is kept
    frames, rate, metadata = read_frames(video)
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and rate == 24
    assert (comfy_server.tree.input / latent.name).is_file()  # @FILE was uploaded to the input folder
    assert '"StreamVAESaveVideo"' in metadata["prompt"]
    assert '"LoadLatent"' in metadata["workflow"]  # the UI workflow travelled as the page sends it
    assert "VAE Decode (Streaming)" in done.stderr  # progress: one line per node


def test_python_api_runs_the_api_twin_and_reports_files(comfy_server, tmp_path):
    name = f"api_{uuid.uuid4().hex[:8]}.latent"
    write_latent(comfy_server.tree.input / name)
    workflow = json.loads((comfy_host.REPO_ROOT / "workflows" / "api" / "decode_only.json").read_text())
    events = []
    client = ComfyClient(comfy_server.url)
    overrides = Overrides(sets=[("1", "latent", name), ("2", "vae_name", WAN21_VAE), ("4", "preset", "ultrafast"),
                                ("4", "filename_prefix", "client/api")])
    result = client.run(workflow, overrides, out_dir=tmp_path, on_event=events.append)
    assert result.ok and result.status == "success" and result.error is None
    (video,) = result.files
    assert video.read_bytes() == (comfy_server.tree.output / "client" / video.name).read_bytes()
    assert read_frames(video)[0].shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert result.outputs["4"]["images"][0]["filename"] == video.name
    kinds = [event["type"] for event in events]
    assert "executed" in kinds and kinds[-1] == "executing"  # ends on executing(node=None)


def test_rejected_prompt_exits_1_naming_node_and_input(comfy_server, tmp_path):
    done = run_cli(comfy_server, DECODE_ONLY, "--set", "LoadLatent.latent=missing.latent", "--out", tmp_path)
    assert done.returncode == 1
    assert "ComfyUI refused the prompt" in done.stderr
    assert "node 1 (LoadLatent)" in done.stderr and "latent" in done.stderr
    assert "node 2 (Load VAE / VAELoader)" in done.stderr and "vae_name" in done.stderr
    assert not list(tmp_path.iterdir())


def test_execution_error_exits_1_with_the_node_and_exception(comfy_server, tmp_path):
    name = f"broken_{uuid.uuid4().hex[:8]}.latent"
    (comfy_server.tree.input / name).write_bytes(b"not a safetensors file")
    done = run_cli(comfy_server, *decode_only_args(name, "client/broken"), "--out", tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("node 1 (LoadLatent) failed: ") and "Error" in last, done.stderr


def test_bad_override_exits_2_before_queueing(comfy_server, tmp_path):
    done = run_cli(comfy_server, DECODE_ONLY, "--set", "Load VAE.no_such_input=1")
    assert done.returncode == 2
    assert "node 2 (VAELoader) has no input 'no_such_input'; it has: vae_name" in done.stderr
    done = run_cli(comfy_server, DECODE_ONLY, "--prompt", "a fox")
    assert done.returncode == 2 and "no text encoder feeds a sampler's positive input" in done.stderr


def test_unreachable_server_exits_3_and_says_what_to_check(tmp_path):
    done = subprocess.run([sys.executable, "-m", "streamvae", "run", str(DECODE_ONLY), "--server",
                           f"http://127.0.0.1:{comfy_host.free_port()}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "can't reach ComfyUI" in done.stderr and "SSH tunnel" in done.stderr


def test_timeout_exits_124_and_cancels_the_prompt_on_the_server(comfy_server, comfy_client, tmp_path):
    """Long enough to still be running at the deadline: the client must not leave it on the server's GPU."""
    name = f"long_{uuid.uuid4().hex[:8]}.latent"
    # ~1000 frames: over a minute here, so the prompt is surely still running at the client's 3 s deadline.
    write_latent(comfy_server.tree.input / name, latent_frames=250)
    done = run_cli(comfy_server, *decode_only_args(name, "client/timeout"), "--timeout", 3, "--out", tmp_path)
    assert done.returncode == 124, done.stderr
    assert "did not finish within 3 s" in done.stderr
    # The server stops it within a chunk; then its history says interrupted and nothing is left queued.
    wait_for_idle(comfy_client)
    assert "execution_interrupted" in history_events(comfy_client, name)
    assert not list((comfy_server.tree.output / "client").glob("timeout*"))  # no partial video left

def test_validate_checks_on_the_server_and_leaves_no_video(comfy_server, comfy_client, tmp_path):
    name = f"validate_{uuid.uuid4().hex[:8]}.latent"
    write_latent(comfy_server.tree.input / name)
    done = run_cli(comfy_server, *decode_only_args(name, "client/validate"), "--validate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "valid: 4 nodes; taken off the queue"
    wait_for_idle(comfy_client)
    assert not list(comfy_server.tree.output.rglob("validate*"))
    rejected = run_cli(comfy_server, DECODE_ONLY, "--validate")  # the bundled names aren't on this server
    assert rejected.returncode == 1 and "ComfyUI refused the prompt" in rejected.stderr


def test_save_api_writes_the_prompt_the_server_would_get(comfy_server, tmp_path):
    target = tmp_path / "prompt.json"
    done = run_cli(comfy_server, DECODE_ONLY, "--set", "2.vae_name=other.safetensors", "--save-api", target)
    assert done.returncode == 0, done.stderr
    expected = ui_to_api(json.loads(DECODE_ONLY.read_text()), ComfyClient(comfy_server.url).object_info())
    expected["2"]["inputs"]["vae_name"] = "other.safetensors"
    assert json.loads(target.read_text()) == expected


class AuthProxy(http.server.ThreadingHTTPServer):
    """A reverse proxy in front of ComfyUI that wants a header (GET only: what --save-api needs)."""

    def __init__(self, upstream: str, header: tuple[str, str]):
        self.upstream, self.header = upstream, header
        super().__init__(("127.0.0.1", 0), AuthProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class AuthProxyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        key, value = self.server.header
        if self.headers.get(key) != value:
            self.send_response(401)
            self.end_headers()
            return
        with urllib.request.urlopen(self.server.upstream + self.path) as upstream:
            body = upstream.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("header, args", [(("Authorization", "Bearer s3cret"), ["--token", "s3cret"]),
                                          (("X-Proxy-Key", "abc"), ["--header", "X-Proxy-Key: abc"])])
def test_auth_header_or_token_gets_through_a_proxy(comfy_server, tmp_path, header, args):
    proxy = AuthProxy(comfy_server.url, header)
    try:
        command = [sys.executable, "-m", "streamvae", "run", str(DECODE_ONLY), "--server", proxy.url,
                   "--save-api", str(tmp_path / "p.json")]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        assert "GET /object_info answered 401" in refused.stderr and "--token" in refused.stderr
        allowed = subprocess.run(command + args, capture_output=True, text=True, timeout=120)
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads((tmp_path / "p.json").read_text())["3"]["class_type"] == "StreamVAEDecode"
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_ctrl_c_interrupts_the_prompt_on_the_server_and_exits_130(comfy_server, comfy_client, tmp_path):
    name = f"ctrlc_{uuid.uuid4().hex[:8]}.latent"
    write_latent(comfy_server.tree.input / name, latent_frames=80)
    command = [sys.executable, "-m", "streamvae", "run", *map(str, decode_only_args(name, "client/ctrlc")),
               "--server", comfy_server.url, "--out", str(tmp_path)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=comfy_host.REPO_ROOT)
    seen = ""
    while "VAE Decode (Streaming)" not in seen:  # decoding has started on the server
        line = process.stderr.readline()
        assert line, f"the client ended before decoding started: {seen}"
        seen += line
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130, seen + rest
    assert "interrupted" in rest
    wait_for_idle(comfy_client)
    assert "execution_interrupted" in history_events(comfy_client, name)
    assert not list(tmp_path.iterdir())


def test_a_dropped_websocket_is_reconnected_and_the_run_completes(comfy_server, tmp_path):
    name = f"drop_{uuid.uuid4().hex[:8]}.latent"
    write_latent(comfy_server.tree.input / name, latent_frames=6)
    client = ComfyClient(comfy_server.url)
    dropped = []

    def drop_once(event):  # the network fails under the client while the decode is running
        if event["type"] == "progress" and not dropped:
            dropped.append(event)
            client._ws.sock.shutdown(socket.SHUT_RDWR)

    workflow = json.loads(DECODE_ONLY.read_text())
    result = client.run(workflow, Overrides(sets=[("LoadLatent", "latent", name), ("Load VAE", "vae_name", WAN21_VAE),
                                                  ("Save Video (Streaming)", "preset", "ultrafast")]),
                        out_dir=tmp_path, on_event=drop_once)
    assert dropped and result.ok, result
    (video,) = result.files
    assert read_frames(video)[0].shape == (1 + 4 * 5, HEIGHT, WIDTH, 3)


def wait_for_idle(comfy_client, within: float = 120):
    deadline = time.monotonic() + within
    while (busy := comfy_client.get_json("/queue")) and (busy["queue_running"] or busy["queue_pending"]):
        assert time.monotonic() < deadline, "the prompt kept running on the server"
        time.sleep(0.5)


def history_events(comfy_client, latent_name: str) -> list[str]:
    """The status events of the one prompt that loaded latent_name."""
    (entry,) = [entry for entry in comfy_client.get_json("/history").values()
                if any(node["inputs"].get("latent") == latent_name for node in entry["prompt"][2].values())]
    return [event for event, _ in entry["status"]["messages"]]
