"""What the user may ask the encoder for, checked before any decoding starts.

Names follow what ComfyUI users see in nodes (containers mp4/mkv/mov/webm, codecs h264/hevc/av1/prores/ffv1,
x264's preset names); this module maps them to PyAV encoders and options, and turns every impossible combination
into a StreamVAEError that says what would work.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional, Union

from .errors import StreamVAEError
from .file_style import FileStyle

log = logging.getLogger("streamvae")

# container name -> (FFmpeg muxer, codecs it can hold, audio codec for it)
CONTAINERS = {
    "mp4": ("mp4", ("h264", "hevc", "av1"), "aac"),
    "mkv": ("matroska", ("h264", "hevc", "av1", "prores", "ffv1"), "aac"),
    "mov": ("mov", ("h264", "hevc", "prores"), "aac"),
    "webm": ("webm", ("av1",), "libopus"),
}

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class Codec:
    software: str                   # the PyAV encoder used on any machine
    nvenc: Optional[str]            # the NVENC encoder, where the GPU has one
    pix_fmts: tuple[str, ...]       # first one is the default
    crf_range: Optional[tuple[int, int]] = None  # None: the codec has no quality knob we expose
    default_crf: Optional[int] = None


CODECS = {
    "h264": Codec("libx264", "h264_nvenc", ("yuv420p", "yuv444p", "yuv420p10le", "yuv444p10le"), (0, 51), 19),
    "hevc": Codec("libx265", "hevc_nvenc", ("yuv420p", "yuv444p", "yuv420p10le", "yuv444p10le"), (0, 51), 21),
    "av1": Codec("libsvtav1", "av1_nvenc", ("yuv420p", "yuv420p10le"), (0, 63), 30),
    "prores": Codec("prores_ks", None, ("yuv422p10le", "yuv444p10le")),
    # Lossless: bgr0 keeps the RGB bytes exactly; the yuv formats are there for smaller files.
    "ffv1": Codec("ffv1", None, ("bgr0", "yuv444p", "yuv420p")),
}

ENCODERS = ("auto", "software", "nvenc")
MAX_FPS = 240

FpsLike = Union[int, float, str, Fraction]


def parse_fps(fps: FpsLike) -> Fraction:
    """16, 23.976, "24", "30000/1001" or a Fraction -> an exact Fraction within (0, 240]."""
    try:
        if isinstance(fps, float):
            value = Fraction(fps).limit_denominator(1001)
        else:
            value = Fraction(fps)
    except (ValueError, ZeroDivisionError, TypeError):
        raise StreamVAEError(f"fps {fps!r} is not a number; give e.g. 16, 24 or 30000/1001") from None
    if not 0 < value <= MAX_FPS:
        raise StreamVAEError(f"fps {fps!r} is out of range; use a frame rate above 0 and at most {MAX_FPS} "
                             "(Wan 2.1 and Wan 2.2 14B render at 16, Wan 2.2 5B at 24)")
    return value


DEFAULT_CONTAINER = "mp4"  # for a file name that names no container (`out`, `out.bin`) when none is given


@dataclass(frozen=True)
class EncodeSettings:
    """The encoder choices, one object for the library (decode_to_video, write_video), the command line and the Save
    Video (Streaming) node, with one default each; OPTION_HELP says what each means. `resolve()` checks them
    together and picks the concrete encoder."""

    fps: FpsLike = 16
    container: Optional[str] = None  # None: the one the file name says (out.mkv -> mkv); see for_file()
    codec: str = "h264"
    crf: Optional[int] = None  # None: the codec's default
    preset: str = "medium"
    pix_fmt: Optional[str] = None  # None or "auto": the codec's usual one
    encoder: str = "auto"
    threads: int = 0  # 0: let the encoder use every core
    parallel: int = 0  # encoders working on closed-GOP segments at once; 0: chosen from the CPU count
    style: FileStyle = FileStyle()  # container flags and colour handling: the nodes pass their host's

    def __post_init__(self):
        object.__setattr__(self, "fps", parse_fps(self.fps))
        if self.pix_fmt == "auto":
            object.__setattr__(self, "pix_fmt", None)

    @classmethod
    def from_options(cls, settings: Optional["EncodeSettings"] = None, **options) -> "EncodeSettings":
        """`settings` (or the defaults) with the named options changed; StreamVAEError naming the valid options when
        one isn't an encoder option."""
        unknown = sorted(set(options) - set(OPTION_HELP))
        if unknown:
            raise StreamVAEError(f"unknown encoder option {', '.join(map(repr, unknown))}; the encoder options are "
                                 f"{', '.join(OPTION_HELP)}")
        return dataclasses.replace(settings or cls(), **options)

    def for_file(self, path: os.PathLike | str) -> "EncodeSettings":
        """These settings with the container the file name asks for: `out.mkv` -> mkv. A name with no container
        extension keeps the given container (mp4 when none is given); a name and a container that disagree are a
        StreamVAEError, before anything is decoded."""
        named = CONTAINER_EXTENSIONS.get(Path(path).suffix.lower())
        if named is None or self.container in (None, named):
            return dataclasses.replace(self, container=named or self.container or DEFAULT_CONTAINER)
        _check_container(self.container, self.codec)  # a container that could never work says so first
        raise StreamVAEError(f"the file name {Path(path).name} says {named} but container={self.container!r} was "
                             f"given; leave container out (it is taken from the name) or name the file "
                             f"{Path(path).stem}.{self.container}")


# What each encoder option means: the command line's help and the Save node's tooltips.
OPTION_HELP = {
    "fps": "Frames per second. Wan 2.1 and Wan 2.2 14B render at 16, Wan 2.2 5B at 24.",
    "container": "The file format. mkv holds every codec; webm holds av1.",
    "codec": "h264 plays everywhere; ffv1 is lossless (mkv only); prores for editing.",
    "crf": "Quality: lower is better and bigger. h264/hevc 0-51, av1 0-63; ignored by prores and ffv1.",
    "preset": "Encoder speed: faster presets make bigger files at the same quality.",
    "pix_fmt": "Pixel format; auto (the default) picks the codec's usual one (yuv420p for h264).",
    "encoder": "auto uses the GPU's NVENC where it has one, else the CPU encoder.",
    "threads": "Encoder threads; 0 lets the encoder use every core.",
    "parallel": "libx264 encoders working on 2-second segments at once; 0 picks one per 2 cores (8+ cores).",
}
OPTION_CHOICES = {"container": tuple(CONTAINERS), "codec": tuple(CODECS), "preset": PRESETS, "encoder": ENCODERS}
CONTAINER_EXTENSIONS = {f".{name}": name for name in CONTAINERS}


def option_default(name: str):
    """EncodeSettings' default for one option (fps as given, before parsing)."""
    return EncodeSettings.__dataclass_fields__[name].default


@dataclass(frozen=True)
class ResolvedEncoder:
    muxer: str
    encoder: str
    pix_fmt: str
    options: dict = field(default_factory=dict)
    audio_codec: str = "aac"
    threads: int = 0           # per encoder; 0: the encoder decides
    segments: int = 1          # parallel encoders (1: one encoder for the whole video)
    segment_frames: int = 0    # frames per closed-GOP segment when segments > 1


# Frame sizes checked before decoding, so that they fail with a sentence instead of mid-run (or worse):
# - libx265 takes nothing under 16 px either way; it answered only "Invalid argument".
# - PyAV 18.1.0's wheel (x265 4.2, libavcodec 62.28): frames 33 to 48 px wide can corrupt libx265's heap, and glibc
#   then aborts the process -- the whole ComfyUI server -- at any height, pixel format, preset or frame count
#   (how often, and which widths never did: docs/reliability.md). Measure again with
#   tests/reliability/repro_libx265_small_frames.py when PyAV changes.
MIN_FRAME_SIZE = {"hevc": 16}
HEAP_CORRUPTING_WIDTHS = {"libx265": range(33, 49)}
# The same build can fail at the final flush ("Not yet implemented in FFmpeg") on 1- and 2-frame videos, at any
# size; without B-frames (which a video that short can't use anyway) it never did (docs/reliability.md).
X265_NO_BFRAMES_UP_TO = 2

# Parallel segments only for libx264: its sequence headers depend on the settings alone and its decode delay is
# fixed by them, which is what joining segments needs (see `segments`). NVENC is fast enough alone.
SEGMENTED_ENCODERS = ("libx264",)
SEGMENT_SECONDS = 2  # one GOP a segment: a keyframe every 2 s, as streaming sites ask for


def _choice(kind: str, value, allowed) -> None:
    if value not in allowed:
        raise StreamVAEError(f"unknown {kind} {value!r}; choose one of: {', '.join(map(str, allowed))}")


def resolve(settings: EncodeSettings, frame_size: Optional[tuple[int, int]] = None,
            frames: Optional[int] = None) -> ResolvedEncoder:
    """Check the settings together, and against the frame size (width, height) when it is known, and map them onto
    one PyAV encoder with its options; `frames`, when known, lets very short videos avoid libx265's flush fault."""
    resolved = _resolve_encoder(settings)
    if frame_size is not None:
        check_frame_size(settings.codec, resolved.encoder, *frame_size)
    if resolved.encoder == "libx265" and frames is not None and frames <= X265_NO_BFRAMES_UP_TO:
        resolved.options["x265-params"] += ":bframes=0"
    return resolved


def check_frame_size(codec: str, encoder: str, width: int, height: int) -> None:
    """StreamVAEError for a frame size the encoder can't take (or can't take safely), naming what to use instead."""
    smallest = MIN_FRAME_SIZE.get(codec)
    if smallest and min(width, height) < smallest:
        raise StreamVAEError(f"{codec} cannot encode frames smaller than {smallest}x{smallest} (this video is "
                             f"{width}x{height}); use h264, av1, prores or ffv1 for it")
    unsafe = HEAP_CORRUPTING_WIDTHS.get(encoder, range(0))
    if width in unsafe:
        raise StreamVAEError(f"{encoder} ({codec} on the CPU) can crash the whole process on frames {unsafe.start} to "
                             f"{unsafe.stop - 1} pixels wide in this PyAV build (this video is {width}x{height}); "
                             f"use h264, av1, prores or ffv1, or make the video wider than {unsafe.stop - 1} pixels")


def _check_container(container: str, codec: str) -> None:
    _choice("container", container, tuple(CONTAINERS))
    _choice("codec", codec, tuple(CODECS))
    holds = CONTAINERS[container][1]
    if codec not in holds:
        fits = [name for name, (_, codecs, _) in CONTAINERS.items() if codec in codecs]
        raise StreamVAEError(f"a {container} file cannot hold {codec}; it holds "
                             f"{', '.join(holds)}. Use {' or '.join(fits)} for {codec}")


def _resolve_encoder(settings: EncodeSettings) -> ResolvedEncoder:
    container = settings.container or DEFAULT_CONTAINER
    _check_container(container, settings.codec)
    _choice("encoder", settings.encoder, ENCODERS)
    _choice("preset", settings.preset, PRESETS)
    muxer, _, audio_codec = CONTAINERS[container]
    codec = CODECS[settings.codec]
    pix_fmt = settings.pix_fmt or codec.pix_fmts[0]
    if pix_fmt not in codec.pix_fmts:
        raise StreamVAEError(f"{settings.codec} cannot encode pixel format {pix_fmt!r}; "
                             f"choose one of: {', '.join(codec.pix_fmts)}")
    crf = settings.crf if settings.crf is not None else codec.default_crf
    if crf is not None and codec.crf_range is not None:
        low, high = codec.crf_range
        if not low <= crf <= high:
            raise StreamVAEError(f"crf {crf} is out of range for {settings.codec}; use {low} (best) to {high}")
    if settings.threads < 0:
        raise StreamVAEError(f"threads {settings.threads} must be 0 (all cores) or more")
    if settings.parallel < 0:
        raise StreamVAEError(f"parallel {settings.parallel} must be 0 (chosen from the CPU count), 1 (one "
                             "encoder) or more")

    if codec.nvenc and settings.encoder != "software" and nvenc_available(codec.nvenc):
        return ResolvedEncoder(muxer, codec.nvenc, pix_fmt, _nvenc_options(crf, settings.preset),
                               audio_codec, settings.threads)
    if settings.encoder == "nvenc":
        log.warning("streamvae: %s is not available on this machine; encoding with %s on the CPU instead",
                    codec.nvenc or f"an NVENC encoder for {settings.codec}", codec.software)
    options = _software_options(codec, crf, settings.preset)
    segments, threads = plan_parallel(settings, codec.software, usable_cores())
    if segments == 1:
        return ResolvedEncoder(muxer, codec.software, pix_fmt, options, audio_codec, threads)
    segment_frames = max(1, round(SEGMENT_SECONDS * settings.fps))
    options["g"] = str(segment_frames)  # the fixed GOP: no second keyframe inside a segment
    return ResolvedEncoder(muxer, codec.software, pix_fmt, options, audio_codec, threads, segments, segment_frames)


def usable_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _auto_layout(cores: int) -> tuple[int, int]:
    """Segment encoders and threads each: below 8 cores one encoder alone; from 8 up, one 4-thread encoder per 2
    cores, twice as many encoder threads as cores. A segment encoder idles while it waits for frames or its
    look-ahead, so fewer threads than that left cores idle on detailed content (35-40% idle at 16 cores); the
    encoders run niced, so the extra threads never take the decoding thread's core. Fastest of the layouts measured
    at 1280x720 on natural and on noise-like content (docs/benchmarks.md, "Encoder throughput")."""
    if cores < 8:
        return 1, 0
    return cores // 2, 4


def plan_parallel(settings: EncodeSettings, encoder: str, cores: int) -> tuple[int, int]:
    """How many segment encoders, and threads for each: (1, settings.threads) means one plain encoder."""
    if encoder not in SEGMENTED_ENCODERS:
        if settings.parallel > 1:
            log.warning("streamvae: parallel segments work with libx264 only; %s encodes alone", encoder)
        return 1, settings.threads
    if settings.parallel:
        segments, threads = settings.parallel, max(1, cores // settings.parallel)
    else:
        segments, threads = _auto_layout(cores)
    if segments == 1:
        return 1, settings.threads
    return segments, settings.threads or threads


def _software_options(codec: Codec, crf: Optional[int], preset: str) -> dict:
    if codec.software in ("libx264", "libx265"):
        options = {"crf": str(crf), "preset": preset}
        if codec.software == "libx265":
            options["x265-params"] = "log-level=error"
        return options
    if codec.software == "libsvtav1":
        # SVT-AV1 presets are numbers, 0 (slowest) to 13 (fastest); x264's ultrafast..veryslow map onto 12..4.
        return {"crf": str(crf), "preset": str(12 - PRESETS.index(preset))}
    if codec.software == "prores_ks":
        return {"profile": "3"}  # ProRes 422 HQ, the usual editing intermediate
    return {"level": "3", "slicecrc": "1"}  # ffv1 version 3: multithreaded and checksummed


def _nvenc_options(crf: Optional[int], preset: str) -> dict:
    # NVENC presets run p1 (fastest) .. p7 (best); constant-quality VBR stands in for crf.
    speed = min(7, 1 + PRESETS.index(preset) * 7 // len(PRESETS))
    return {"preset": f"p{speed}", "rc": "vbr", "cq": str(crf), "b": "0"}


@functools.lru_cache(maxsize=None)
def nvenc_available(encoder: str) -> bool:
    """Open the encoder once on a tiny frame: the only reliable test (a listed codec may lack the hardware)."""
    import av  # noqa: PLC0415 - keep `import streamvae` light

    try:
        context = av.CodecContext.create(encoder, "w")
        context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
        context.time_base = Fraction(1, 24)
        context.open()  # PyAV frees the context when it goes out of scope; it has no close()
        return True
    except Exception as error:  # noqa: BLE001 - any failure means "not usable here"
        log.info("streamvae: %s is not usable here (%s)", encoder, error)
        return False
