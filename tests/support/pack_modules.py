"""The pack's node modules (comfy_nodes/*), imported in this process without registering any node.

They use relative imports (`..streamvae`), so they load under a stand-in package whose `streamvae` is the engine
this process already uses: every `<stand-in>.streamvae.X` is the module `streamvae.X` itself, never a second copy
(a copy would split the engine in two: a test patching `streamvae.pipeline` would patch one and run the other).
The pack's own __init__ (which registers nodes with ComfyUI) never runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
from pathlib import Path
from types import ModuleType

PACKAGE = "streamvae_pack_under_test"
ENGINE = f"{PACKAGE}.streamvae"
REPO = Path(__file__).resolve().parents[2]


class _EngineAliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `<stand-in>.streamvae[.X]` to the already importable `streamvae[.X]`."""

    def __init__(self):
        self._own_specs = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname == ENGINE or fullname.startswith(ENGINE + "."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module("streamvae" + spec.name[len(ENGINE):])
        self._own_specs[spec.name] = module.__spec__  # the import system sets __spec__ to the alias's next
        return module

    def exec_module(self, module):
        module.__spec__ = self._own_specs.pop(module.__spec__.name)  # already executed under its own name


def import_pack_module(name: str) -> ModuleType:
    """`import_pack_module("comfy_nodes.output_files")`: that module of this checkout's pack."""
    if not any(isinstance(finder, _EngineAliases) for finder in sys.meta_path):
        sys.meta_path.insert(0, _EngineAliases())
    for package_name, path in ((PACKAGE, REPO), (f"{PACKAGE}.comfy_nodes", REPO / "comfy_nodes")):
        package = types.ModuleType(package_name)
        package.__path__ = [str(path)]
        sys.modules.setdefault(package_name, package)
    return importlib.import_module(f"{PACKAGE}.{name}")
