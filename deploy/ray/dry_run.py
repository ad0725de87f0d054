"""What `ray up` would do with a farm cluster config, worked out offline (no AWS call, nothing changed).

    python deploy/ray/dry_run.py deploy/ray/g7e-cluster.yaml

Ray's launcher has no offline dry run, so this does its first steps itself: the config filled out with Ray's
defaults and checked against Ray's own schema (what `ray up` does before it calls AWS), then printed as a plan:
the node types, what is copied to each node and every command in the order Ray runs it, and the G7e script's own
dry run of what it does on each worker. It refuses (exit 1) a config that would open more than Ray's own security
group (all traffic between the cluster's nodes, SSH for the launcher) or expose ComfyUI or Ray's dashboard beyond
loopback. Needs Ray (the farm extra).
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = "deploy/g7e/setup.sh"
# Anything in a command that would listen beyond loopback.
EXPOSED = re.compile(r"--listen(?!\s+127\.0\.0\.1)(\s|=|$)|0\.0\.0\.0|--dashboard-host[= ](?!127\.0\.0\.1)")
PLACEHOLDER = re.compile(r"^REPLACE_WITH_")


class ConfigRefused(Exception):
    pass


def prepared(path: Path) -> tuple[dict, dict]:
    """(the config as written, as Ray's launcher sees it: defaults filled in, setup commands merged, validated)."""
    from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: PLC0415

    written = yaml.safe_load(path.read_text())
    config = prepare_config(copy.deepcopy(written))
    validate_config(config)
    return written, config


def security_problems(written: dict, config: dict) -> list[str]:
    problems = []
    extra_rules = written.get("provider", {}).get("security_group", {}).get("IpPermissions")
    if extra_rules:
        ports = ", ".join(f"{rule.get('FromPort')}-{rule.get('ToPort')}" for rule in extra_rules)
        problems.append(f"provider.security_group.IpPermissions opens more ports ({ports}) than Ray's own group")
    for kind in ("head_setup_commands", "worker_setup_commands", "head_start_ray_commands",
                 "worker_start_ray_commands", "initialization_commands"):
        for command in config.get(kind, []):
            if EXPOSED.search(command):
                problems.append(f"{kind}: {command!r} listens beyond loopback")
    return problems


def placeholders(config: dict) -> list[str]:
    return sorted({f"{name}.node_config.{key}" for name, node in config["available_node_types"].items()
                   for key, value in node["node_config"].items()
                   if isinstance(value, str) and PLACEHOLDER.match(value)})


def plan(config: dict) -> list[str]:
    lines = [f"cluster {config['cluster_name']!r} on {config['provider']['type']} {config['provider']['region']}, "
             f"at most {config['max_workers']} workers; config valid for Ray's launcher"]
    for name, node in config["available_node_types"].items():
        count = "1" if name == config["head_node_type"] else f"{node['min_workers']}..{node['max_workers']}"
        role = "head (runs the farm's driver)" if name == config["head_node_type"] else "farm workers, one per GPU"
        lines.append(f"  {name}: {node['node_config']['InstanceType']} x{count}, resources {node['resources']}: {role}")
    lines.append("copied to every node: " + ", ".join(f"{source} -> {target}"
                                                      for target, source in config["file_mounts"].items()))
    for role in ("head", "worker"):
        lines.append(f"on the {role}, in order:")
        commands = config.get("initialization_commands", []) + config[f"{role}_setup_commands"] + \
            config[f"{role}_start_ray_commands"]
        lines += [f"  {number}. {' '.join(command.split())}" for number, command in enumerate(commands, start=1)]
    lines.append("security group: Ray's own (all traffic between the cluster's nodes; SSH 22 for the launcher); "
                 "nothing else is opened")
    lines.append("ComfyUI: each farm worker starts its own on 127.0.0.1 and a free port (streamvae/farm)")
    return lines


def setup_script_dry_run(config: dict) -> str:
    """The worker's setup.sh command, run here with --dry-run: what it does on each g7e."""
    for command in config["worker_setup_commands"]:
        words = shlex.split(command)
        if words and words[0].endswith(SETUP_SCRIPT):
            prefix = f"/home/{config['auth']['ssh_user']}/comfy"  # the script's default there; a dry run writes nothing
            done = subprocess.run(["bash", str(REPO / SETUP_SCRIPT), *words[1:], "--dry-run", "--prefix", prefix],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise ConfigRefused(f"{SETUP_SCRIPT} refuses the worker's arguments: {done.stderr.strip()}")
            return done.stdout
    raise ConfigRefused(f"no worker_setup_commands line runs {SETUP_SCRIPT}: the workers would have no ComfyUI")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, nargs="?", default=REPO / "deploy" / "ray" / "g7e-cluster.yaml")
    args = parser.parse_args(argv)
    try:
        written, config = prepared(args.config)
        problems = security_problems(written, config)
        if problems:
            raise ConfigRefused("; ".join(problems))
        print("\n".join(plan(config)))
        print(f"--- {SETUP_SCRIPT} on each worker (its own dry run) ---")
        print(setup_script_dry_run(config), end="")
    except ConfigRefused as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - Ray's schema and YAML errors, shown as the launcher shows them
        print(f"invalid config {args.config}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    for name in placeholders(config):
        print(f"before `ray up`: set {name} (see the comment beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
