"""Encode uint8 frames into a video file with PyAV, atomically: a temporary name beside the target, renamed
only when the file is complete, removed on any failure or cancel."""

from __future__ import annotations

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
    """One output file. Use as a context manager: leaving it with an exception removes the temporary file."""

    def __init__(self, path: os.PathLike | str, settings: EncodeSettings, width: int, height: int, *,
                 audio: Optional[dict] = None, metadata: Optional[dict] = None):
        import av  # noqa: PLC0415

        self.path = Path(path)
        check_output_path(self.path)
        self.settings = settings
        self.resolved: ResolvedEncoder = resolve(settings)
        self.width, self.height = width, height
        self.pad_x, self.pad_y = even_padding(width, height, self.resolved.pix_fmt)
        if self.pad_x or self.pad_y:
            log.warning("streamvae: %dx%d is odd; %s needs even sizes, so the last column/row is repeated",
                        width, height, self.resolved.pix_fmt)
        self.audio = _checked_audio(audio)
        self.frames_written = 0
        self.encode_seconds = 0.0
        self.temp_path = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.partial{self.path.suffix}")
        self._av = av
        try:
            self._open(metadata)
        except Exception as error:
            self._discard()
            raise _encoder_error(self.path, error) from error

    def _open(self, metadata: Optional[dict]) -> None:
        av, resolved = self._av, self.resolved
        options = {"movflags": "use_metadata_tags"} if resolved.muxer in ("mp4", "mov") else {}
        self.container = av.open(str(self.temp_path), mode="w", format=resolved.muxer, options=options)
        for key, value in (metadata or {}).items():  # the same encoding as ComfyUI's SaveVideo
            self.container.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        stream = self.container.add_stream(resolved.encoder, rate=self.settings.fps)
        stream.width, stream.height = self.width + self.pad_x, self.height + self.pad_y
        stream.pix_fmt = resolved.pix_fmt
        stream.time_base = 1 / self.settings.fps
        stream.codec_context.thread_count = self.settings.threads
        stream.codec_context.options = dict(resolved.options)
        self.stream = stream
        self.audio_stream = None
        if self.audio is not None:
            rate = 48000 if resolved.audio_codec == "libopus" else self.audio["sample_rate"]
            self.audio_stream = self.container.add_stream(resolved.audio_codec, rate=rate)

    def write(self, frames: np.ndarray) -> None:
        """Encode `[t, H, W, 3]` uint8 frames (RGB). The array may be reused by the caller once this returns."""
        if frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise StreamVAEError(f"frames of shape {frames.shape} {frames.dtype} don't match the video "
                                 f"({self.height}x{self.width}, 3 channels, uint8)")
        if self.pad_x or self.pad_y:
            frames = np.pad(frames, ((0, 0), (0, self.pad_y), (0, self.pad_x), (0, 0)), mode="edge")
        started = time.perf_counter()
        try:
            for image in frames:
                frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = self.frames_written
                self.container.mux(self.stream.encode(frame))
                self.frames_written += 1
        except Exception as error:
            raise _encoder_error(self.path, error) from error
        finally:
            self.encode_seconds += time.perf_counter() - started

    def finish(self) -> Path:
        """Flush the encoder, add the audio, close the file and give it its final name."""
        started = time.perf_counter()
        try:
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
