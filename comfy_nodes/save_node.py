"""Save Video (Streaming): decodes a FRAME_STREAM (or encodes an IMAGE batch) straight into video files."""

from __future__ import annotations

from typing import Optional

import comfy.model_management
from comfy.cli_args import args
from comfy_api.latest import InputImpl, io, ui

from ..streamvae import CODECS, CONTAINERS, PRESETS, DecodeStats, EncodeSettings, StreamVAEError, write_video
from ..streamvae.encoding import DEFAULT_CONTAINER, ENCODERS, OPTION_HELP, option_default, resolve
from ..streamvae.file_style import host_file_style
from .errors import user_facing_errors
from .frame_stream import FrameStream, FrameStreamSocket, image_stream
from .output_files import OutputFile, plan_output_files, prefix_problem
from .progress import PREVIEW_WIDTH, LiveProgress

PIX_FMTS = ("auto",) + tuple(dict.fromkeys(fmt for codec in CODECS.values() for fmt in codec.pix_fmts))


class SaveVideoStreaming(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamVAESaveVideo",
            display_name="Save Video (Streaming)",
            category="image/video",
            description="Decodes the frames while it encodes them and saves the video to your ComfyUI output "
                        "directory; memory stays flat however long the video. Connect frames or images, not both.",
            inputs=[
                FrameStreamSocket.Input("frames", optional=True,
                                        tooltip="From VAE Decode (Streaming) or Images to Frame Stream."),
                io.Image.Input("images", optional=True, tooltip="Or an IMAGE batch, one frame per image."),
                io.Audio.Input("audio", optional=True, tooltip="The audio to add to the video."),
                io.Float.Input("fps", default=float(option_default("fps")), min=1.0, max=240.0, step=1.0,
                               round=0.001, tooltip=OPTION_HELP["fps"]),
                io.String.Input("filename_prefix", default="video/StreamVAE",
                                tooltip="The prefix for the file to save, relative to the output folder. This may "
                                        "include formatting information such as %date:yyyy-MM-dd% or "
                                        "%Empty Latent Image.width% to include values from nodes."),
                io.Combo.Input("container", options=list(CONTAINERS), default=DEFAULT_CONTAINER,
                               tooltip=OPTION_HELP["container"]),
                io.Combo.Input("codec", options=list(CODECS), default=option_default("codec"),
                               tooltip=OPTION_HELP["codec"]),
                # A widget needs a number: the default codec's own default.
                io.Int.Input("crf", default=CODECS[option_default("codec")].default_crf, min=0, max=63,
                             tooltip=OPTION_HELP["crf"]),
                io.Combo.Input("preset", options=list(PRESETS), default=option_default("preset"),
                               tooltip=OPTION_HELP["preset"]),
                io.Combo.Input("pix_fmt", options=list(PIX_FMTS), default="auto", tooltip=OPTION_HELP["pix_fmt"]),
                io.Combo.Input("encoder", options=list(ENCODERS), default=option_default("encoder"),
                               tooltip=OPTION_HELP["encoder"]),
                io.Boolean.Input("embed_workflow", default=True,
                                 tooltip="Store the workflow and prompt in the file's metadata, as Save Video does."),
            ],
            outputs=[
                io.Video.Output(display_name="video", tooltip="The saved video (the first one for a batch)."),
                io.String.Output(display_name="path", tooltip="The saved file's full path (the first one)."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, filename_prefix: Optional[str] = None) -> bool | str:
        # Only what is known before the prompt runs; a prefix arriving through a link is checked in execute.
        return True if filename_prefix is None else (prefix_problem(filename_prefix) or True)

    @classmethod
    def fingerprint_inputs(cls, **inputs) -> float:
        # A save node's job is one file per queued prompt, as users expect from Queue: never reuse the cached
        # result (NaN never equals itself). Upstream nodes stay cached, so the stream is re-read, not rebuilt.
        return float("nan")

    @classmethod
    def execute(cls, fps, filename_prefix, container, codec, crf, preset, pix_fmt, encoder, embed_workflow,
                frames: Optional[FrameStream] = None, images=None, audio=None) -> io.NodeOutput:
        stream = _one_stream(frames, images)
        # The file laid out and colour-described as this ComfyUI's own Save Video does it: with stock's encoder
        # settings and one encoder, exact mode writes the same bytes.
        settings = EncodeSettings(fps=fps, container=container, codec=codec, crf=crf, preset=preset,
                                  pix_fmt=pix_fmt, encoder=encoder,
                                  style=host_file_style())
        resolve(settings)  # every bad combination fails here, before anything is decoded
        problem = prefix_problem(filename_prefix)  # also checked at validation, unless the prefix came by a link
        if problem:
            raise StreamVAEError(problem)
        metadata = _metadata(cls.hidden) if embed_workflow else None
        with user_facing_errors("writing the video"):
            saved = _write_all(stream, settings, filename_prefix, audio, metadata)
        return io.NodeOutput(InputImpl.VideoFromFile(saved[0].path), saved[0].path,
                             ui=ui.PreviewVideo([ui.SavedResult(item.filename, item.subfolder, io.FolderType.output)
                                                 for item in saved]))


def _one_stream(frames: Optional[FrameStream], images) -> FrameStream:
    if (frames is None) == (images is None):
        state = "both are" if frames is not None else "neither is"
        raise StreamVAEError(f"connect exactly one of 'frames' (a FRAME_STREAM) or 'images' (an IMAGE batch); "
                             f"{state} connected")
    return frames if frames is not None else image_stream(images)


def _metadata(hidden) -> Optional[dict]:
    """The workflow and prompt, stored the way core's Save Video stores them (and not when disabled globally)."""
    if args.disable_metadata:
        return None
    metadata = dict(hidden.extra_pnginfo or {})
    if hidden.prompt is not None:
        metadata["prompt"] = hidden.prompt
    return metadata or None


def _write_all(stream: FrameStream, settings: EncodeSettings, prefix: str, audio, metadata) -> list[OutputFile]:
    """One file per video in the stream, one after another, with one progress bar over all of them."""
    reporter = LiveProgress(float(settings.fps))
    first = stream.open(0)
    reporter.total = first.total_frames * stream.videos
    files: list[OutputFile] = plan_output_files(prefix, settings.container, stream.videos, first.width, first.height)
    stats: list[DecodeStats] = []
    for index, target in enumerate(files):
        source = first if index == 0 else stream.open(index)
        reporter.offset = index * first.total_frames
        reporter.decoder = source.name
        stats.append(write_video(source, target.path, settings, audio=audio, metadata=metadata, mode=stream.mode,
                                 progress=reporter, preview_width=PREVIEW_WIDTH,
                                 # Polled while the engine waits for a slot: it reads the flag without consuming
                                 # it; the progress callback (this thread) raises ComfyUI's interrupt.
                                 cancel=comfy.model_management.processing_interrupted))
    reporter.done(stats)
    return files


