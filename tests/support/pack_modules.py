"""The pack's node modules (comfy_nodes/*), imported in this process without registering any node.

They use relative imports (`..streamvae`), so they load under a stand-in package name whose `streamvae` is the
engine already imported; the pack's own __init__ (which registers nodes with ComfyUI) never runs.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from types import ModuleType

PACKAGE = "streamvae_pack_under_test"
REPO = Path(__file__).resolve().parents[2]


def import_pack_module(name: str) -> ModuleType:
    """`import_pack_module("comfy_nodes.output_files")`: that module of this checkout's pack."""
    import streamvae

    for package_name, path in ((PACKAGE, REPO), (f"{PACKAGE}.comfy_nodes", REPO / "comfy_nodes")):
        package = types.ModuleType(package_name)
        package.__path__ = [str(path)]
        sys.modules.setdefault(package_name, package)
    sys.modules.setdefault(f"{PACKAGE}.streamvae", streamvae)
    return importlib.import_module(f"{PACKAGE}.{name}")
