"""ComfyUI-StreamVAE: ComfyUI loads this file from custom_nodes/. It registers the nodes and the web extension."""

from .comfy_nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
