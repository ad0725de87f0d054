"""`python -m streamvae run` and ComfyClient against the real server: the decode-only workflow end to end (upload,
progress, download, a video PyAV decodes), and what a user sees when it goes wrong (exit codes, readable errors,
timeouts that cancel the prompt on the server)."""

from __future__ import annotations

import http.server
import json
import os
import re
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

from support import comfy_server as host
from support.comfy_server import WAN21_VAE
from support.graphs import FRAMES, HEIGHT, WIDTH
from support.videos import read_video
from streamvae.client import ComfyClient, Overrides, ui_to_api

DECODE_ONLY = host.REPO_ROOT / "example_workflows" / "decode_only.json"
# ~2000 frames: long enough to be surely still decoding when a test stops it (seconds, even when the cores are
# shared); a stop that works comes within a chunk, so only a failing run pays for the length.
LONG_LATENT_FRAMES = 500


def write_latent(path, latent_frames: int = 2):
    """A .latent as ComfyUI's SaveLatent writes it: Wan 2.1's 16 channels, 8x smaller than the video."""
    torch.manual_seed(0)
    latent = torch.randn(1, 16, latent_frames, HEIGHT // 8, WIDTH // 8)
    safetensors.torch.save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])}, str(path))
    return path


def run_cli(server, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamvae", "run", *map(str, args), "--server", server.url],
                          capture_output=True, text=True, timeout=timeout, cwd=host.REPO_ROOT)


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
    decoded = read_video(video)
    frames, rate, metadata = decoded.frames, decoded.fps, decoded.metadata
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and rate == 24
    assert (comfy_server.tree.input / latent.name).is_file()  # @FILE was uploaded to the input folder
    assert '"StreamVAESaveVideo"' in metadata["prompt"]
    assert '"LoadLatent"' in metadata["workflow"]  # the UI workflow travelled as the page sends it
    assert "VAE Decode (Streaming)" in done.stderr  # progress: one line per node


def test_python_api_runs_the_api_twin_and_reports_files(comfy_server, tmp_path):
    name = f"api_{uuid.uuid4().hex[:8]}.latent"
    write_latent(comfy_server.tree.input / name)
    workflow = json.loads((host.REPO_ROOT / "workflows" / "api" / "decode_only.json").read_text())
    events = []
    client = ComfyClient(comfy_server.url)
    overrides = Overrides(sets=[("1", "latent", name), ("2", "vae_name", WAN21_VAE), ("4", "preset", "ultrafast"),
                                ("4", "filename_prefix", "client/api")])
    result = client.run(workflow, overrides, out_dir=tmp_path, on_event=events.append)
    assert result.ok and result.status == "success" and result.error is None
    assert result.prompt_id == str(uuid.UUID(result.prompt_id))  # canonical: newer servers refuse anything else
    (video,) = result.files
    assert video.read_bytes() == (comfy_server.tree.output / "client" / video.name).read_bytes()
    assert read_video(video).frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert result.outputs["4"]["images"][0]["filename"] == video.name
    kinds = [event["type"] for event in events]
    assert "executed" in kinds and kinds[-1] == "executing"  # ends on executing(node=None)


def test_rejected_prompt_exits_1_naming_node_and_input(comfy_server, tmp_path):
    done = run_cli(comfy_server, DECODE_ONLY, "--set", "LoadLatent.latent=missing.latent", "--out", tmp_path)
    assert done.returncode == 1
    assert "ComfyUI refused the prompt" in done.stderr
    # Named by title and type; an untitled node by its display name, which newer releases give LoadLatent.
    assert re.search(r"node 1 \((Load Latent / )?LoadLatent\)", done.stderr) and "latent" in done.stderr
    assert "node 2 (Load VAE / VAELoader)" in done.stderr and "vae_name" in done.stderr
    assert not list(tmp_path.iterdir())


def test_execution_error_exits_1_with_the_node_and_exception(comfy_server, tmp_path):
    name = f"broken_{uuid.uuid4().hex[:8]}.latent"
    (comfy_server.tree.input / name).write_bytes(b"not a safetensors file")
    done = run_cli(comfy_server, *decode_only_args(name, "client/broken"), "--out", tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert re.match(r"node 1 \((Load Latent / )?LoadLatent\) failed: ", last) and "Error" in last, done.stderr


def test_bad_override_exits_2_before_queueing(comfy_server, tmp_path):
    done = run_cli(comfy_server, DECODE_ONLY, "--set", "Load VAE.no_such_input=1")
    assert done.returncode == 2
    assert "node 2 (VAELoader) has no input 'no_such_input'; it has: vae_name" in done.stderr
    done = run_cli(comfy_server, DECODE_ONLY, "--prompt", "a fox")
    assert done.returncode == 2 and "no text encoder feeds a sampler's positive input" in done.stderr


def test_unreachable_server_exits_3_and_says_what_to_check(tmp_path):
    done = subprocess.run([sys.executable, "-m", "streamvae", "run", str(DECODE_ONLY), "--server",
                           f"http://127.0.0.1:{host.free_port()}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "can't reach ComfyUI" in done.stderr and "SSH tunnel" in done.stderr


def test_timeout_exits_124_and_cancels_the_prompt_on_the_server(comfy_server, comfy_client, tmp_path):
    """Long enough to still be running at the deadline: the client must not leave it on the server's GPU."""
    name = f"long_{uuid.uuid4().hex[:8]}.latent"
    write_latent(comfy_server.tree.input / name, latent_frames=LONG_LATENT_FRAMES)
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
            # Quoting the refused credential back, as careless proxies do: the client must not print it.
            self._answer(401, f"invalid {key}: {self.headers.get(key)}".encode())
            return
        with urllib.request.urlopen(self.server.upstream + self.path) as upstream:
            self._answer(200, upstream.read())

    def _answer(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def environment_without_token() -> dict:
    return {key: value for key, value in os.environ.items() if key != "STREAMVAE_TOKEN"}


def proxy_credentials(source: str, token: str, tmp_path) -> tuple[tuple[str, str], list[str], dict]:
    """(the header the proxy wants, the client's arguments, its environment) for one way of giving the token."""
    environment = environment_without_token()
    bearer = ("Authorization", f"Bearer {token}")
    if source == "--token-file":
        path = tmp_path / "token"
        path.write_text(token + "\n")  # as `echo TOKEN > file` writes it
        path.chmod(0o600)
        # The file wins over the environment: the option is the more explicit of the two.
        return bearer, ["--token-file", str(path)], {**environment, "STREAMVAE_TOKEN": "stale-token"}
    if source == "STREAMVAE_TOKEN":
        return bearer, [], {**environment, "STREAMVAE_TOKEN": token}
    if source == "--token":
        return bearer, ["--token", token], environment
    return ("X-Proxy-Key", token), ["--header", f"X-Proxy-Key: {token}"], environment


@pytest.mark.parametrize("source", ["--token-file", "STREAMVAE_TOKEN", "--token", "--header"])
def test_proxy_credentials_get_through_and_never_reach_the_output(comfy_server, tmp_path, source):
    token = f"s3cret-{uuid.uuid4().hex}"  # unique: finding it in the output can only mean a leak
    header, args, environment = proxy_credentials(source, token, tmp_path)
    proxy = AuthProxy(comfy_server.url, header)
    try:
        command = [sys.executable, "-m", "streamvae", "run", str(DECODE_ONLY), "--server", proxy.url,
                   "--save-api", str(tmp_path / "p.json")]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                 env=environment_without_token())
        assert refused.returncode == 1
        assert "GET /object_info answered 401" in refused.stderr and "--token-file" in refused.stderr
        allowed = subprocess.run(command + args, capture_output=True, text=True, timeout=120, env=environment)
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads((tmp_path / "p.json").read_text())["3"]["class_type"] == "StreamVAEDecode"
        assert token not in allowed.stdout + allowed.stderr
        warnings = [line for line in allowed.stderr.splitlines() if line.startswith("warning:")]
        if source == "--token":
            assert warnings == ["warning: --token is visible to other users of this machine (ps); use --token-file "
                                "PATH (a file only you can read) or the STREAMVAE_TOKEN environment variable instead."]
        else:
            assert warnings == []
        (tmp_path / "wrong").mkdir()
        _, wrong_args, wrong_environment = proxy_credentials(source, "wrong-" + token, tmp_path / "wrong")
        wrong = subprocess.run(command + wrong_args, capture_output=True, text=True, timeout=120,
                               env=wrong_environment)
        assert wrong.returncode == 1 and "answered 401" in wrong.stderr
        assert token not in wrong.stdout + wrong.stderr  # nor "wrong-" + token, which holds it
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_credential_mistakes_are_refused_without_showing_them(tmp_path):
    """Exit 2 before any request (the server here does not exist), naming the file and the fix, never the token."""
    server = f"http://127.0.0.1:{host.free_port()}"
    token = f"s3cret-{uuid.uuid4().hex}"

    def run_with(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "streamvae", "run", str(DECODE_ONLY), "--server", server,
                               *map(str, args)], capture_output=True, text=True, timeout=120)

    missing = run_with("--token-file", tmp_path / "absent")
    assert missing.returncode == 2 and f"--token-file {tmp_path / 'absent'}: no such file" in missing.stderr
    (tmp_path / "empty").write_text("\n")
    empty = run_with("--token-file", tmp_path / "empty")
    assert empty.returncode == 2 and f"the token in {tmp_path / 'empty'} is empty" in empty.stderr
    (tmp_path / "two_lines").write_text(f"{token}\nsecond line\n")
    two_lines = run_with("--token-file", tmp_path / "two_lines")
    assert two_lines.returncode == 2 and "a line break" in two_lines.stderr and token not in two_lines.stderr
    both = run_with("--token-file", tmp_path / "two_lines", "--token", token)
    assert both.returncode == 2 and "give the token once" in both.stderr and token not in both.stderr
    header = run_with("--header", f"X-Proxy-Key: {token}\r\nX-Injected: 1")
    assert header.returncode == 2 and "'X-Proxy-Key'" in header.stderr and token not in header.stderr
    # A token file other users can read is used (the run goes on, to the missing server), with a warning.
    (tmp_path / "shared").write_text(token)
    (tmp_path / "shared").chmod(0o644)
    shared = run_with("--token-file", tmp_path / "shared")
    assert shared.returncode == 3 and f"chmod 600 {tmp_path / 'shared'}" in shared.stderr
    assert token not in shared.stderr


def test_ctrl_c_interrupts_the_prompt_on_the_server_and_exits_130(comfy_server, comfy_client, tmp_path):
    name = f"ctrlc_{uuid.uuid4().hex[:8]}.latent"
    write_latent(comfy_server.tree.input / name, latent_frames=LONG_LATENT_FRAMES)
    command = [sys.executable, "-m", "streamvae", "run", *map(str, decode_only_args(name, "client/ctrlc")),
               "--server", comfy_server.url, "--out", str(tmp_path)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=host.REPO_ROOT,
                               preexec_fn=host.ctrl_c_as_in_a_terminal)
    seen = ""
    try:
        while "VAE Decode (Streaming)" not in seen:  # decoding has started on the server
            line = process.stderr.readline()
            assert line, f"the client ended before decoding started: {seen}"
            seen += line
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
    finally:  # a client that did not stop must not outlive the test
        process.kill()
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
    assert read_video(video).frames.shape == (1 + 4 * 5, HEIGHT, WIDTH, 3)


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
