"""Encode frames into a video file with PyAV, atomically: a temporary name beside the target, renamed only when the
file is complete, removed on any failure or cancel.

Frames come as rgb24 (`[t, H, W, 3]`, converted by swscale, as stock ComfyUI does) or, in fast mode, as yuv420p
planes made on the GPU (`[t, H*3/2, W]`, handed to the encoder as they are). One encoder, or, for libx264 on a CPU
with cores to spare, several encoding closed-GOP segments in parallel (`segments`). The settings' FileStyle says
how the file is laid out and colour-described beyond the encoder (MP4 movflags, conversion matrix, colour tags).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import time
import uuid
from pathlib import Path
from typing import Optional

import numpy as np

from .encoding import EncodeSettings, ResolvedEncoder, resolve
from .errors import EncoderError, StreamVAEError
from .file_style import MATRIX_CODE, ColourTags
from .segments import SegmentEncoders

log = logging.getLogger("streamvae")


def check_output_path(path: Path) -> None:
    """Fail before decoding when the file could never be written."""
    folder = path.parent
    if not folder.is_dir():
        raise StreamVAEError(f"the output folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StreamVAEError(f"the output folder {folder} is not writable; fix its permissions or choose another")
    if path.is_dir():
        raise StreamVAEError(f"{path} is a folder; give a file name such as {path / 'video.mp4'}")


def even_padding(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """Columns and rows to add so a chroma-subsampled format can take the frame.

    yuv420p needs even sizes. Rather than refuse an odd-sized frame, we repeat the last column/row: nothing the
    decoder made is lost, and the file plays everywhere. Wan VAEs always give multiples of 8, so this only
    touches generic VAEs and hand-made frames.
    """
    horizontal = any(tag in pix_fmt for tag in ("420", "422"))
    vertical = "420" in pix_fmt
    return (width % 2 if horizontal else 0), (height % 2 if vertical else 0)


class VideoWriter:
    """One output file. Use as a context manager: leaving it with an exception removes the temporary file.

    `frames`, the video's length when the caller knows it, lets the encoder settings suit very short videos.
    `resolved`: the settings already resolved for this size and length, by a caller that needed them first."""

    def __init__(self, path: os.PathLike | str, settings: EncodeSettings, width: int, height: int, *,
                 audio: Optional[dict] = None, metadata: Optional[dict] = None, input_format: str = "rgb24",
                 frames: Optional[int] = None, resolved: Optional[ResolvedEncoder] = None):
        import av  # noqa: PLC0415

        self.path = Path(path)
        check_output_path(self.path)
        settings = settings.for_file(self.path)
        self.settings = settings
        # A caller that needed the resolved settings first (to pick the frames' layout) hands them over, so that
        # what resolving logs (NVENC missing, say) is logged once.
        self.resolved = resolved if resolved is not None else resolve(settings, (width, height), frames)
        self.total_frames = frames
        if input_format != "rgb24" and not input_format == self.resolved.pix_fmt == "yuv420p":
            raise StreamVAEError(f"frames in {input_format} can't be written to a {self.resolved.pix_fmt} video; "
                                 "hand rgb24 frames, or yuv420p frames to a yuv420p video")
        self.input_format = input_format
        self.width, self.height = width, height
        self.pad_x, self.pad_y = even_padding(width, height, self.resolved.pix_fmt)
        if (self.pad_x or self.pad_y) and input_format == "rgb24":
            log.warning("streamvae: %dx%d is odd; %s needs even sizes, so the last column/row is repeated",
                        width, height, self.resolved.pix_fmt)
        self.audio = _checked_audio(audio)
        self.frames_written = 0
        self.encode_seconds = 0.0
        self.temp_path = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.partial{self.path.suffix}")
        self._av = av
        self._segments: Optional[SegmentEncoders] = None
        try:
            self._open(metadata)
        except Exception as error:
            self._discard()
            raise _encoder_error(self.path, error) from error

    def _open(self, metadata: Optional[dict]) -> None:
        av, resolved, style = self._av, self.resolved, self.settings.style
        options = {"movflags": "+".join(style.movflags)} if resolved.muxer in ("mp4", "mov") and style.movflags else {}
        self.container = av.open(str(self.temp_path), mode="w", format=resolved.muxer, options=options)
        for key, value in (metadata or {}).items():  # the same encoding as ComfyUI's SaveVideo
            self.container.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        stream = self.container.add_stream(resolved.encoder, rate=self.settings.fps)
        stream.width, stream.height = self.width + self.pad_x, self.height + self.pad_y
        stream.pix_fmt = resolved.pix_fmt
        stream.time_base = 1 / self.settings.fps
        stream.codec_context.thread_count = resolved.threads
        stream.codec_context.options = dict(resolved.options)
        # Colour conversion and tags apply to YUV files: an RGB one (ffv1 bgr0) keeps the decoder's bytes as they are.
        is_yuv = resolved.pix_fmt.startswith("yuv")
        self._convert_matrix = MATRIX_CODE.get(style.matrix) if is_yuv and self.input_format == "rgb24" else None
        self._colour_tags = style.tags if is_yuv else None
        if self._colour_tags is not None:
            _set_colour_tags(stream.codec_context, self._colour_tags)
        self.stream = stream
        if resolved.segments > 1:
            # The container opens `stream`'s own encoder only to write the file header; the frames go to the
            # segment encoders, made with the same settings, whose packets are muxed into `stream`.
            self._segments = SegmentEncoders(self._segment_encoder, resolved.segments, resolved.segment_frames,
                                             self.total_frames)
        self.audio_stream = None
        if self.audio is not None:
            rate = 48000 if resolved.audio_codec == "libopus" else self.audio["sample_rate"]
            self.audio_stream = self.container.add_stream(resolved.audio_codec, rate=rate)

    def _segment_encoder(self):
        """A fresh encoder for one segment: the output stream's settings, a closed GOP of one segment."""
        resolved = self.resolved
        context = self._av.CodecContext.create(resolved.encoder, "w")
        context.width, context.height = self.stream.width, self.stream.height
        context.pix_fmt = resolved.pix_fmt
        context.time_base = 1 / self.settings.fps  # one frame: not the stream's, which the muxer changes
        context.framerate = self.settings.fps
        context.thread_count = resolved.threads
        context.flags |= self._av.codec.context.Flags.global_header  # headers apart, as the mp4 stream has them
        context.options = dict(resolved.options)
        if self._colour_tags is not None:  # the same sequence headers as the file's stream
            _set_colour_tags(context, self._colour_tags)
        context.open()
        return context

    def _frame_shape(self) -> tuple[int, ...]:
        if self.input_format == "yuv420p":
            return ((self.height + self.pad_y) * 3 // 2, self.width + self.pad_x)
        return (self.height, self.width, 3)

    def write(self, frames: np.ndarray) -> None:
        """Encode uint8 frames: `[t, H, W, 3]` RGB, or `[t, H*3/2, W]` yuv420p planes (Y, U, V; even sizes).

        The array may be reused by the caller once this returns.
        """
        if frames.shape[1:] != self._frame_shape() or frames.dtype != np.uint8:
            raise StreamVAEError(f"frames of shape {frames.shape} {frames.dtype} don't match the video: expected "
                                 f"[t, {', '.join(map(str, self._frame_shape()))}] uint8 {self.input_format}")
        if self.input_format == "rgb24" and (self.pad_x or self.pad_y):
            frames = np.pad(frames, ((0, 0), (0, self.pad_y), (0, self.pad_x), (0, 0)), mode="edge")
        started = time.perf_counter()
        try:
            self._check_folder_is_there()
            for image in frames:
                frame = self._prepared_frame(image)
                if self._segments is not None:
                    self._mux(self._segments.encode(frame))
                else:
                    frame.pts = self.frames_written
                    self.container.mux(self.stream.encode(frame))
                self.frames_written += 1
        except Exception as error:
            raise _encoder_error(self.path, error) from error
        finally:
            self.encode_seconds += time.perf_counter() - started

    def _check_folder_is_there(self) -> None:
        """Writes to a file whose folder was removed still succeed (the open file lives on, unnamed), so without
        this the whole video would be encoded into nothing before the final rename failed. A stat per chunk."""
        folder = self.temp_path.parent
        if not folder.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(folder))

    def _prepared_frame(self, image: np.ndarray):
        # from_ndarray copies into the frame's own planes, so the caller's slot is free once we return
        frame = self._av.VideoFrame.from_ndarray(image, format=self.input_format)
        if self._convert_matrix is not None:
            # As ComfyUI's Save Video does where it converts with a named matrix; otherwise the encoder converts
            # with swscale's default (BT.601), as older releases let it.
            frame = frame.reformat(format=self.resolved.pix_fmt, dst_colorspace=self._convert_matrix)
        if self._colour_tags is not None:
            _set_colour_tags(frame, self._colour_tags)
        return frame

    def _mux(self, packets: list) -> None:
        for packet in packets:
            packet.stream = self.stream
            self.container.mux(packet)
        # The stream's headers exist only once the first mux has opened its encoder, so this checks after muxing:
        # a mismatch still fails the write, and the partial file is removed like any other failure.
        header = self._segments.header
        if packets and header != self.stream.codec_context.extradata:
            raise EncoderError("the parallel segment encoders made other sequence headers than the file's; "
                               "encode with parallel=1")

    def finish(self) -> Path:
        """Flush the encoder, add the audio, close the file and give it its final name."""
        started = time.perf_counter()
        try:
            if self._segments is not None:
                self._mux(self._segments.flush())
            else:
                self.container.mux(self.stream.encode(None))
            if self.audio_stream is not None:
                self._write_audio()
            self.container.close()
            os.replace(self.temp_path, self.path)
        except Exception as error:
            self._discard()
            raise _encoder_error(self.path, error) from error
        finally:
            self.encode_seconds += time.perf_counter() - started
        return self.path

    def _write_audio(self) -> None:
        """The whole track as one frame from time 0, cut to the video's length, as ComfyUI's SaveVideo does."""
        waveform, rate = self.audio["waveform"], self.audio["sample_rate"]
        samples = math.ceil(rate * self.frames_written / self.settings.fps)
        clip = np.ascontiguousarray(waveform[:, :samples].T.reshape(1, -1), dtype=np.float32)
        frame = self._av.AudioFrame.from_ndarray(clip, format="flt",
                                                 layout="mono" if waveform.shape[0] == 1 else "stereo")
        frame.sample_rate, frame.pts = rate, 0
        self.container.mux(self.audio_stream.encode(frame))
        self.container.mux(self.audio_stream.encode(None))

    def abort(self) -> None:
        """Drop everything written so far; safe to call more than once."""
        self._discard()

    def _discard(self) -> None:
        if self._segments is not None:
            self._segments.close()
            self._segments = None
        container = getattr(self, "container", None)
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - a broken file is being thrown away anyway
                pass
            self.container = None
        try:
            self.temp_path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _set_colour_tags(target, tags: ColourTags) -> None:
    """Describe the colours on a codec context or a frame (the encoder writes them into the stream's headers)."""
    target.color_primaries = tags.primaries
    target.color_trc = tags.transfer
    target.colorspace = tags.matrix
    target.color_range = tags.range


def _checked_audio(audio: Optional[dict]) -> Optional[dict]:
    """ComfyUI's AUDIO ({"waveform": [B, C, S], "sample_rate": int}) -> channels x samples float32."""
    if audio is None:
        return None
    try:
        waveform, rate = audio["waveform"], int(audio["sample_rate"])
    except (KeyError, TypeError, ValueError):
        raise StreamVAEError("audio must be ComfyUI's AUDIO: a dict with 'waveform' [B, C, S] and "
                             "'sample_rate'") from None
    waveform = np.asarray(waveform.detach().cpu().float() if hasattr(waveform, "detach") else waveform,
                          dtype=np.float32)
    if waveform.ndim == 3:
        waveform = waveform[0]
    if waveform.ndim != 2 or waveform.shape[0] not in (1, 2) or rate <= 0:
        raise StreamVAEError(f"audio waveform of shape {waveform.shape} at {rate} Hz is not mono or stereo "
                             "[B, C, S] with a positive sample rate")
    return {"waveform": waveform, "sample_rate": rate}


def _encoder_error(path: Path, error: Exception) -> Exception:
    if isinstance(error, (StreamVAEError, EncoderError)):
        return error
    reason = getattr(error, "strerror", None) or str(error)
    hint = ""
    if getattr(error, "errno", None) == 28:
        hint = "; free some disk space or write to another folder"
    elif isinstance(error, FileNotFoundError):
        hint = "; the output folder was removed while writing"
    return EncoderError(f"writing {path} failed: {reason}{hint}. No file was left behind")
