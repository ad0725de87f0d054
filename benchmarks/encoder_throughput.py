"""Encoder throughput: VideoWriter alone, fed 161 frames of 1280x720 as fast as it takes them, 4 frames a call as
the pipeline hands them; libx264 crf 23, 16 fps, mp4; wall from opening the writer to the renamed file.

    python -m benchmarks.encoder_throughput [--preset medium] [--input yuv420p] [--layouts 0x0,4x4,8x2]
        [--content photos|random-wan2.1]
    taskset -c 0-7 python -m benchmarks.encoder_throughput ...   # as on 8 cores (VideoWriter reads the affinity)

Content: `photos` are panned and zoomed photographs, like a real video; `random-wan2.1` is what a random-weight
Wan 2.1 VAE decodes (fast mode, on a GPU), the noise-like frames the GPU server test encodes, an encoder's worst
case. Layouts are ENCODERSxTHREADS (0x0: chosen from the cores). Prints one line per layout: cores, preset, input,
content, encoders x threads, frames/s, CPU busy, file MB.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Iterator

import torch

from streamvae.api import iter_frames
from streamvae.encoding import PRESETS, EncodeSettings, plan_parallel, usable_cores
from streamvae.writer import VideoWriter
from streamvae.yuv import rgb_to_yuv420p

from .synthetic import PanZoomContent, random_latent, random_wan_vae

FRAMES, HEIGHT, WIDTH, CHUNK = 161, 720, 1280, 4


def photo_chunks() -> Iterator[torch.Tensor]:
    content = PanZoomContent(HEIGHT, WIDTH)
    for start in range(0, FRAMES, CHUNK):
        yield (content.frames(start, min(CHUNK, FRAMES - start)) * 255).round().byte().permute(0, 2, 3, 1)


def random_wan21_chunks() -> Iterator[torch.Tensor]:
    if not torch.cuda.is_available():
        raise SystemExit("--content random-wan2.1 decodes on a GPU; none is available")
    vae = random_wan_vae("wan2.1", device=torch.device("cuda"), dtype=torch.bfloat16)
    latent = random_latent(vae, FRAMES, HEIGHT, WIDTH)
    yield from iter_frames(vae, latent, mode="fast")


CONTENT = {"photos": photo_chunks, "random-wan2.1": random_wan21_chunks}


def frames_as(input_format: str, content: str) -> list:
    """The video in chunks of CHUNK frames, uint8, already converted: only the encoder is timed."""
    return [(rgb_to_yuv420p(rgb.contiguous()) if input_format == "yuv420p" else rgb.contiguous()).numpy()
            for rgb in CONTENT[content]()]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encode(chunks: list, settings: EncodeSettings, input_format: str) -> tuple[float, float, int]:
    """Frames a second through VideoWriter, the share of the usable cores it kept busy, and the file's bytes."""
    with tempfile.TemporaryDirectory() as folder:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        with VideoWriter(Path(folder) / "x.mp4", settings, WIDTH, HEIGHT, input_format=input_format,
                         frames=FRAMES) as writer:
            for chunk in chunks:
                writer.write(chunk)
            path = writer.finish()
        wall = time.perf_counter() - started
        cpu_busy = (cpu_seconds() - cpu_started) / wall / usable_cores()
        return FRAMES / wall, cpu_busy, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="medium", choices=PRESETS)
    parser.add_argument("--input", default="yuv420p", choices=("rgb24", "yuv420p"))
    parser.add_argument("--content", default="photos", choices=sorted(CONTENT))
    parser.add_argument("--layouts", default="0x0", help="comma-separated ENCODERSxTHREADS, 0 for chosen")
    args = parser.parse_args()
    chunks = frames_as(args.input, args.content)
    for layout in args.layouts.split(","):
        parallel, threads = (int(part) for part in layout.split("x"))
        settings = EncodeSettings(fps=16, crf=23, preset=args.preset, encoder="software", parallel=parallel,
                                  threads=threads)
        encoders, threads = plan_parallel(settings, "libx264", usable_cores())
        rate, cpu_busy, size = encode(chunks, settings, args.input)
        print(f"cores {usable_cores()}, preset {args.preset}, input {args.input}, content {args.content}, "
              f"encoders x threads {encoders} x {threads or 'auto'}: {rate:.0f} frames/s, CPU busy {cpu_busy:.0%}, "
              f"{size / 1e6:.2f} MB", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
