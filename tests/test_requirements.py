"""What `pip install -r requirements.txt` (ComfyUI-Manager's install) and `pip install .` give is enough to run the
pack and its headless client: every third-party module the code imports, even inside a function, is listed in
both, so `python -m streamvae run` never stops on a missing module after a documented install."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Provided by the host, never by the pack's requirements: ComfyUI itself and the torch build it runs on.
HOST_PROVIDED = {"torch", "comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes",
                 "server", "execution", "node_helpers", "latent_preview"}
# Optional paths that say so and carry on when the module is absent (benchmarks and their competitors, fast
# kernels, diffusers VAEs).
OPTIONAL = {"triton", "diffusers", "matplotlib", "skimage", "fastvae"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[\s]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements_txt() -> set[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return {_name(line) for line in lines if line.strip() and not line.lstrip().startswith("#")}


def pyproject_dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_name(item) for item in project["dependencies"]}


def farm_extra() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_name(item) for item in project["optional-dependencies"]["farm"]}


def imported_modules(folder: Path, leave_out: Path | None = None) -> set[str]:
    """Top-level names of every absolute import in folder's Python files (those under leave_out aside),
    function-level imports included."""
    names = set()
    for path in folder.rglob("*.py"):
        if leave_out is not None and leave_out in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    return {name for name in names if name not in sys.stdlib_module_names and name != "streamvae"
            and name not in HOST_PROVIDED and name not in OPTIONAL}


def distribution(module: str) -> str:
    found = importlib.metadata.packages_distributions().get(module)
    if not found:
        pytest.fail(f"module {module!r} is imported but no installed distribution provides it; install it here "
                    "and add it to requirements.txt and pyproject.toml")
    return found[0].lower().replace("_", "-")


@pytest.mark.parametrize("folder", ["streamvae", "streamvae/client", "comfy_nodes"])
def test_every_imported_package_is_a_requirement(folder):
    # The farm's packages come with its own extra (test below): the nodes and the engine never import it.
    needed = {distribution(module)
              for module in third_party(imported_modules(REPO / folder, leave_out=REPO / "streamvae" / "farm"))}
    assert needed, "found no imports at all: the scan is broken"
    assert needed <= requirements_txt(), f"missing from requirements.txt: {sorted(needed - requirements_txt())}"
    assert needed <= pyproject_dependencies(), \
        f"missing from pyproject.toml's dependencies: {sorted(needed - pyproject_dependencies())}"


def test_the_headless_client_follows_runs_over_websocket_client():
    assert "websocket" in imported_modules(REPO / "streamvae" / "client")
    assert "websocket-client" in requirements_txt() and "websocket-client" in pyproject_dependencies()


def test_the_farm_needs_only_the_requirements_and_its_extra():
    needed = {distribution(module) for module in third_party(imported_modules(REPO / "streamvae" / "farm"))}
    assert "ray" in needed
    assert needed <= requirements_txt() | farm_extra(), \
        f"missing from the farm extra: {sorted(needed - requirements_txt() - farm_extra())}"
