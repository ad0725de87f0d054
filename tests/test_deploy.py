"""deploy/g7e/setup.sh: the dry run shows every step (driver, venv, pinned ComfyUI, the pack, checksummed models,
a loopback-only service, the tunnel) and changes nothing; the script is shellcheck-clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "g7e" / "setup.sh"
COMFYUI_V0_3_64 = "a125cd84b054a57729b5eecab930ca9408719832"


def models_tsv() -> list[list[str]]:
    return [line.split("\t") for line in (REPO / "workflows" / "models.tsv").read_text().splitlines()
            if line and not line.startswith("#")]


def dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "--prefix", str(tmp_path / "comfy"), *args],
                          capture_output=True, text=True, timeout=60)


def test_dry_run_prints_every_step_in_order_and_changes_nothing(tmp_path):
    done = dry_run(tmp_path)
    assert done.returncode == 0, done.stderr
    steps = [line[3:] for line in done.stdout.splitlines() if line.startswith("== ")]
    assert [step.split(" ")[0] for step in steps] == [
        "NVIDIA", "System", "Python", "ComfyUI", "ComfyUI-StreamVAE", "Models", "systemd", "Waiting", "Use"]
    assert "+ nvidia-smi --query-gpu=" in done.stdout
    assert f"+ git -C {tmp_path}/comfy/ComfyUI checkout -q {COMFYUI_V0_3_64}" in done.stdout
    assert f"+ ln -sfn {REPO} {tmp_path}/comfy/ComfyUI/custom_nodes/ComfyUI-StreamVAE" in done.stdout
    assert not (tmp_path / "comfy").exists()


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


def test_unknown_option_exits_2(tmp_path):
    done = dry_run(tmp_path, "--bogus")
    assert done.returncode == 2 and "unknown option: --bogus" in done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (apt-get install shellcheck); the lint was not run")
def test_script_is_shellcheck_clean():
    done = subprocess.run(["shellcheck", "--severity=style", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
