"""The farm's optional packages (Ray, fsspec, and s3fs for s3:// destinations), imported only when a farm runs.

The engine, the nodes and `run` never need them; `pip install "comfyui-streamvae[farm]"` (or `pip install -e
".[farm]"` in a checkout) brings them."""

from __future__ import annotations

import importlib

INSTALL = 'pip install "comfyui-streamvae[farm]" (from a checkout: pip install -e ".[farm]")'


class FarmExtraMissing(ImportError):
    """A package of the [farm] extra is not installed; the message says what to install."""


def require(module: str, why: str):
    """import module, or FarmExtraMissing naming the package and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise FarmExtraMissing(f"{why} needs the Python package '{module.split('.')[0]}', which is not installed "
                               f"({error}). Install the farm extra: {INSTALL}") from None


def ray():
    return require("ray", "the render farm (python -m streamvae farm)")


def filesystem(url: str, storage_options: dict):
    """fsspec's filesystem for an object store URL (s3://, gs://, ...) and the path inside it."""
    fsspec = require("fsspec", f"writing to {url}")
    try:
        return fsspec.core.url_to_fs(url, **storage_options)
    except ImportError as error:  # fsspec knows the protocol but its package (s3fs, gcsfs, ...) is missing
        raise FarmExtraMissing(f"writing to {url}: {error}. For s3:// the farm extra brings s3fs: {INSTALL}") from None
