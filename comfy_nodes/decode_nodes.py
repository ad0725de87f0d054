"""VAE Decode (Streaming) -> FRAME_STREAM, and VAE Decode (Async) -> IMAGE, the drop-in for VAE Decode."""

from __future__ import annotations

from comfy_api.latest import io

from ..streamvae.convert import MODES
from ..streamvae.precision import PRECISIONS
from .errors import user_facing_errors
from .frame_stream import FrameStreamSocket, LatentFrameStream, latent_stream
from .image_frames import collect_images, intermediate_dtype
from .progress import ChunkProgress

MODE_TOOLTIP = ("exact: the same bytes as stock VAE Decode + Save Video. fast: StreamVAE's own Wan decoder, with fused "
                "GPU kernels, several times faster, not byte-identical; VAEs it can't take decode as in exact mode, "
                "and the stats say why.")


PRECISION_TOOLTIP = ("The dtype the decoder computes in. auto: the VAE's own (bf16 on recent GPUs, fp32 on a CPU); "
                     "fp32 for the last bit of quality; fp16 for cards without fast bf16 (may overflow on some "
                     "videos). The VAE is converted for this decode only.")


class VAEDecodeStreaming(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamVAEDecode",
            display_name="VAE Decode (Streaming)",
            category="latent",
            description="Prepares a video latent for decoding chunk by chunk. Nothing is decoded here: Save Video "
                        "(Streaming) or Frame Stream to Images decodes it while it writes, so the whole video never "
                        "sits in memory.",
            inputs=[
                io.Latent.Input("samples", tooltip="The video latent to decode (Wan 2.1 / Wan 2.2)."),
                io.Vae.Input("vae", tooltip="The VAE that matches the model that made the latent."),
                io.Combo.Input("mode", options=list(MODES), default="exact", tooltip=MODE_TOOLTIP),
                # Optional, so workflows saved before it existed still load and queue unchanged.
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto", optional=True,
                               tooltip=PRECISION_TOOLTIP),
            ],
            outputs=[FrameStreamSocket.Output(display_name="frames",
                                              tooltip="The video's frames, decoded when a consumer reads them.")],
        )

    @classmethod
    def execute(cls, samples, vae, mode, precision="auto") -> io.NodeOutput:
        return io.NodeOutput(latent_stream(vae, samples, mode, precision))


class VAEDecodeAsync(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamVAEDecodeAsync",
            display_name="VAE Decode (Async)",
            category="latent",
            description="VAE Decode for video latents, chunk by chunk: the same images as VAE Decode, with less GPU "
                        "memory, a progress bar and Cancel that stops within one chunk.",
            inputs=[
                io.Latent.Input("samples", tooltip="The latent to be decoded."),
                io.Vae.Input("vae", tooltip="The VAE model used for decoding the latent."),
            ],
            outputs=[io.Image.Output(tooltip="The decoded image.")],
        )

    @classmethod
    def execute(cls, samples, vae) -> io.NodeOutput:
        latent = samples["samples"]
        if latent.dim() != 5:
            # Image latents have no frames to stream: decode them exactly as VAE Decode does.
            return io.NodeOutput(vae.decode(latent))
        with user_facing_errors("decoding the latent"):
            stream: LatentFrameStream = latent_stream(vae, samples, "exact")
            images = collect_images(stream.open, stream.videos, vae.output_device, progress=ChunkProgress(),
                                    dtype=intermediate_dtype())
        return io.NodeOutput(images)
