"""ComfyUI's side of the pack: the nodes, registered through the V3 node API (`comfy_api.latest`)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .convert_nodes import FrameStreamToImages, ImagesToFrameStream
from .decode_nodes import VAEDecodeAsync, VAEDecodeStreaming
from .save_node import SaveVideoStreaming

NODES: list[type[io.ComfyNode]] = [
    VAEDecodeStreaming, SaveVideoStreaming, VAEDecodeAsync, FrameStreamToImages, ImagesToFrameStream,
]


class StreamVAEExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> StreamVAEExtension:
    return StreamVAEExtension()
