"""deploy/g7e/setup.sh: the dry run shows every step (driver, venv, pinned ComfyUI, the pack, checksummed models,
a loopback-only service, the tunnel) and changes nothing; the models step, run for real against a local Hugging
Face (HF_ENDPOINT), verifies SHA-256 and refuses a bad download; the script is shellcheck-clean."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "g7e" / "setup.sh"
COMFYUI_V0_33_0 = "2f35f4a08176d993cded35dac3332be4f7287f41"  # the newest release the tests run against


def models_tsv() -> list[list[str]]:
    return [line.split("\t") for line in (REPO / "workflows" / "models.tsv").read_text().splitlines()
            if line and not line.startswith("#")]


def dry_run(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "--prefix", str(tmp_path / "comfy"), *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_dry_run_prints_every_step_in_order_and_changes_nothing(tmp_path):
    done = dry_run(tmp_path)
    assert done.returncode == 0, done.stderr
    steps = [line[3:] for line in done.stdout.splitlines() if line.startswith("== ")]
    assert [step.split(" ")[0] for step in steps] == [
        "NVIDIA", "System", "Python", "ComfyUI", "ComfyUI-StreamVAE", "Models", "systemd", "Waiting", "Use"]
    assert "+ nvidia-smi --query-gpu=" in done.stdout
    assert f"+ git -C {tmp_path}/comfy/ComfyUI checkout -q {COMFYUI_V0_33_0}" in done.stdout
    assert f"+ ln -sfn {REPO} {tmp_path}/comfy/ComfyUI/custom_nodes/ComfyUI-StreamVAE" in done.stdout
    assert not (tmp_path / "comfy").exists()


def test_another_tested_release_is_one_variable_away(tmp_path):
    v0_3_64 = "a125cd84b054a57729b5eecab930ca9408719832"
    done = dry_run(tmp_path, "--only", "comfyui", env={"COMFYUI_COMMIT": v0_3_64})
    assert done.returncode == 0, done.stderr
    assert f"+ git -C {tmp_path}/comfy/ComfyUI checkout -q {v0_3_64}" in done.stdout
    assert COMFYUI_V0_33_0 not in done.stdout


def test_dry_run_downloads_and_checksums_every_listed_model(tmp_path):
    done = dry_run(tmp_path)
    for folder, name, url, _ in models_tsv():
        target = f"{tmp_path}/comfy/ComfyUI/models/{folder}/{name}"
        assert f"+ curl -fL --retry 5 -C - -o {target}.part {url}" in done.stdout
        assert f"+ sha256sum {target}.part" in done.stdout


def test_models_option_picks_one_workflows_files(tmp_path):
    done = dry_run(tmp_path, "--models", "wan22_5b_ti2v")
    downloaded = {line.rsplit("/", 1)[1] for line in done.stdout.splitlines() if line.startswith("+ curl -fL")}
    assert downloaded == {"wan2.2_ti2v_5B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                          "wan2.2_vae.safetensors"}
    unknown = dry_run(tmp_path, "--models", "wan3_nonexistent")
    assert unknown.returncode == 1 and "no models listed for 'wan3_nonexistent'" in unknown.stderr


def test_service_listens_on_loopback_only_and_the_tunnel_is_printed(tmp_path):
    done = dry_run(tmp_path, "--port", "8190", "--user", "ubuntu")
    (exec_start,) = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("ExecStart=")]
    assert "--listen 127.0.0.1 --port 8190" in exec_start and "0.0.0.0" not in done.stdout
    assert "--highvram" in exec_start  # 96 GB holds both 14B experts: no reload between prompts
    assert "User=ubuntu" in done.stdout
    assert "ssh -i YOUR_KEY.pem -N -L 8190:127.0.0.1:8190 ubuntu@INSTANCE_PUBLIC_DNS" in done.stdout
    assert "--server http://127.0.0.1:8190" in done.stdout


def test_unknown_option_or_step_exits_2(tmp_path):
    done = dry_run(tmp_path, "--bogus")
    assert done.returncode == 2 and "unknown option: --bogus" in done.stderr
    done = dry_run(tmp_path, "--only", "models,bogus")
    assert done.returncode == 2 and "unknown step in --only: bogus" in done.stderr


def test_only_runs_the_steps_asked_for(tmp_path):
    done = dry_run(tmp_path, "--only", "pack,service")
    steps = [line[3:].split(" ")[0] for line in done.stdout.splitlines() if line.startswith("== ")]
    assert steps == ["ComfyUI-StreamVAE", "systemd", "Waiting", "Use"]


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (apt-get install shellcheck); the lint was not run")
def test_script_is_shellcheck_clean():
    done = subprocess.run(["shellcheck", "--severity=style", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


class FakeHuggingFace(http.server.ThreadingHTTPServer):
    """A local Hugging Face (HF_ENDPOINT): the tree API with each file's LFS SHA-256, and the file itself."""

    def __init__(self, files: dict[str, bytes], advertised_sha: dict[str, str] | None = None):
        self.files, self.advertised_sha, self.downloads = files, advertised_sha or {}, []
        super().__init__(("127.0.0.1", 0), FakeHuggingFaceHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeHuggingFaceHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        repo_path = self.path.split("/resolve/main/", 1)
        if self.path.startswith("/api/models/"):
            folder = self.path.split("/tree/main/", 1)[1]
            body = json.dumps([{"type": "file", "path": path, "size": len(data),
                                "lfs": {"oid": self.server.advertised_sha.get(path, hashlib.sha256(data).hexdigest()),
                                        "size": len(data), "pointerSize": 134}}
                               for path, data in self.server.files.items()
                               if path.rsplit("/", 1)[0] == folder]).encode()
        elif len(repo_path) == 2 and repo_path[1] in self.server.files:
            self.server.downloads.append(repo_path[1])
            body = self.server.files[repo_path[1]]
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


VAE_PATH = "split_files/vae/wan_2.1_vae.safetensors"


def download_models(tmp_path: Path, hub: FakeHuggingFace) -> subprocess.CompletedProcess:
    """The real models step (not a dry run) for the decode-only workflow's one file, from the local hub."""
    return subprocess.run(["bash", str(SCRIPT), "--only", "models", "--models", "decode_only",
                           "--prefix", str(tmp_path / "comfy")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_ENDPOINT": hub.url})


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_models_are_downloaded_verified_and_not_fetched_twice(tmp_path):
    data = os.urandom(100_000)
    hub = FakeHuggingFace({VAE_PATH: data})
    try:
        done = download_models(tmp_path, hub)
        assert done.returncode == 0, done.stderr
        target = tmp_path / "comfy" / "ComfyUI" / "models" / "vae" / "wan_2.1_vae.safetensors"
        assert target.read_bytes() == data
        assert "wan_2.1_vae.safetensors: 100000 bytes, SHA-256 verified" in done.stdout
        again = download_models(tmp_path, hub)
        assert again.returncode == 0 and "present, verified earlier" in again.stdout
        assert hub.downloads == [VAE_PATH]
    finally:
        hub.shutdown()
        hub.server_close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_download_with_the_wrong_checksum_is_removed_and_fails(tmp_path):
    hub = FakeHuggingFace({VAE_PATH: b"corrupted in transit"}, advertised_sha={VAE_PATH: "0" * 64})
    try:
        done = download_models(tmp_path, hub)
    finally:
        hub.shutdown()
        hub.server_close()
    assert done.returncode == 1
    assert f"Hugging Face says {'0' * 64}; the download was removed" in done.stderr
    assert not list((tmp_path / "comfy" / "ComfyUI" / "models" / "vae").iterdir())
