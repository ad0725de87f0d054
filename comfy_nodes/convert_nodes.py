"""Frame Stream to Images and Images to Frame Stream: a stream meets every IMAGE node, and back."""

from __future__ import annotations

import comfy.model_management
from comfy_api.latest import io

from .errors import user_facing_errors
from .frame_stream import FrameStream, FrameStreamSocket, image_stream
from .image_frames import collect_images, intermediate_dtype
from .progress import ChunkProgress


class FrameStreamToImages(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamVAEFrameStreamToImages",
            display_name="Frame Stream to Images",
            category="image/video",
            description="Decodes a frame stream into an IMAGE batch (all videos of a batch, one after another), "
                        "optionally only a range of frames. The same images as VAE Decode.",
            inputs=[
                FrameStreamSocket.Input("frames", tooltip="From VAE Decode (Streaming)."),
                io.Int.Input("start", default=0, min=0, max=1_000_000,
                             tooltip="The first frame to keep (0 is the first frame of the video)."),
                io.Int.Input("count", default=0, min=0, max=1_000_000,
                             tooltip="How many frames to keep; 0 keeps every frame from start to the end. "
                                     "Decoding stops after the last kept frame."),
            ],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, frames: FrameStream, start: int, count: int) -> io.NodeOutput:
        with user_facing_errors("decoding the frames"):
            images = collect_images(frames.open, frames.videos, comfy.model_management.intermediate_device(),
                                    start=start, count=count, progress=ChunkProgress(), dtype=intermediate_dtype())
        return io.NodeOutput(images)


class ImagesToFrameStream(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamVAEImagesToFrameStream",
            display_name="Images to Frame Stream",
            category="image/video",
            description="Turns an IMAGE batch into a frame stream (one video, one frame per image).",
            inputs=[io.Image.Input("images", tooltip="The frames, in order, e.g. from Load Video or any image node.")],
            outputs=[FrameStreamSocket.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, images) -> io.NodeOutput:
        return io.NodeOutput(image_stream(images))
