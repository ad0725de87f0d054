"""deploy/ray/g7e-cluster.yaml, checked offline by deploy/ray/dry_run.py: valid for Ray's launcher (its defaults and
its own schema), a small head and g7e.2xlarge workers set up by the G7e script (without its service: the farm runs
ComfyUI itself, on loopback), nothing opened beyond Ray's own security group; configs that would open more, or
that Ray's schema refuses, are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray", reason='the cluster config is checked with Ray\'s own schema: pip install -e ".[farm]"')

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "ray" / "g7e-cluster.yaml"


def dry_run(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "deploy" / "ray" / "dry_run.py"), str(config)],
                          capture_output=True, text=True, timeout=120)


def variant(tmp_path: Path, change) -> Path:
    config = yaml.safe_load(CONFIG.read_text())
    change(config)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_g7e_cluster_plan(tmp_path):
    done = dry_run(CONFIG)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("cluster 'streamvae-farm' on aws us-east-2, at most 20 workers; config valid for Ray's "
                        "launcher")
    assert "  head: m7i.large x1, resources {'CPU': 0}: head (runs the farm's driver)" in lines
    assert "  g7e: g7e.2xlarge x0..20, resources {'CPU': 8, 'GPU': 1}: farm workers, one per GPU" in lines
    worker = lines[lines.index("on the worker, in order:") + 1:]
    assert worker[0] == ("  1. ~/ComfyUI-StreamVAE/deploy/g7e/setup.sh --only driver,packages,venv,comfyui,pack,"
                         "models --models wan22_14b_t2v")
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker[3]
    head_start = [line for line in lines if "ray start --head" in line]
    assert len(head_start) == 1 and "--dashboard-host=127.0.0.1" in head_start[0]
    assert "security group: Ray's own (all traffic between the cluster's nodes; SSH 22 for the launcher); nothing " \
           "else is opened" in lines
    # The G7e script's own dry run: everything but its loopback service, which the farm replaces.
    script = done.stdout.split("--- deploy/g7e/setup.sh on each worker (its own dry run) ---\n", 1)[1]
    steps = [line[3:].split(" ")[0] for line in script.splitlines() if line.startswith("== ")]
    assert steps == ["NVIDIA", "System", "Python", "ComfyUI", "ComfyUI-StreamVAE", "Models"]
    assert "/home/ubuntu/comfy/ComfyUI/models/vae/wan_2.1_vae.safetensors" in script
    assert "0.0.0.0" not in done.stdout
    assert lines[-2:] == ["before `ray up`: set g7e.node_config.ImageId (see the comment beside it)",
                          "before `ray up`: set head.node_config.ImageId (see the comment beside it)"]


def test_a_config_opening_a_port_is_refused(tmp_path):
    def open_comfyui(config):
        config["provider"]["security_group"] = {"IpPermissions": [
            {"FromPort": 8188, "ToPort": 8188, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}

    done = dry_run(variant(tmp_path, open_comfyui))
    assert done.returncode == 1
    assert "refused: provider.security_group.IpPermissions opens more ports (8188-8188) than Ray's own group" \
           in done.stderr


def test_a_dashboard_beyond_loopback_is_refused(tmp_path):
    def public_dashboard(config):
        config["head_start_ray_commands"][1] = config["head_start_ray_commands"][1].replace(
            "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")

    done = dry_run(variant(tmp_path, public_dashboard))
    assert done.returncode == 1
    assert "head_start_ray_commands" in done.stderr and "listens beyond loopback" in done.stderr


def test_what_rays_schema_refuses_is_refused(tmp_path):
    done = dry_run(variant(tmp_path, lambda config: config.update(max_wokers=3)))
    assert done.returncode == 1
    assert "invalid config" in done.stderr and "max_wokers" in done.stderr


def test_workers_without_the_g7e_script_are_refused(tmp_path):
    done = dry_run(variant(tmp_path, lambda config: config.update(worker_setup_commands=["echo hi"])))
    assert done.returncode == 1
    assert "no worker_setup_commands line runs deploy/g7e/setup.sh: the workers would have no ComfyUI" in done.stderr
