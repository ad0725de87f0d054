"""Encoder throughput: VideoWriter alone, fed 1280x720 panned photographs as fast as it takes them, 4 frames a call
as the pipeline hands them; libx264 crf 23, 16 fps, mp4; wall from opening the writer to the renamed file.

    python -m benchmarks.encoder_throughput [--preset medium] [--input yuv420p] [--parallel 2] [--threads 4]
    taskset -c 0-7 python -m benchmarks.encoder_throughput ...   # as on 8 cores (VideoWriter reads the affinity)

Prints one line: cores, preset, input, encoders x threads, frames/s, file MB.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from streamvae.encoding import PRESETS, EncodeSettings, plan_parallel, usable_cores
from streamvae.writer import VideoWriter
from streamvae.yuv import rgb_to_yuv420p

from .synthetic import PanZoomContent

FRAMES, HEIGHT, WIDTH, CHUNK = 161, 720, 1280, 4


def frames_as(input_format: str) -> list:
    """The video in chunks of CHUNK frames, uint8, already converted: only the encoder is timed."""
    content = PanZoomContent(HEIGHT, WIDTH)
    chunks = []
    for start in range(0, FRAMES, CHUNK):
        rgb = (content.frames(start, min(CHUNK, FRAMES - start)) * 255).round().byte().permute(0, 2, 3, 1)
        chunks.append((rgb_to_yuv420p(rgb.contiguous()) if input_format == "yuv420p" else rgb).numpy())
    return chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="medium", choices=PRESETS)
    parser.add_argument("--input", default="yuv420p", choices=("rgb24", "yuv420p"))
    parser.add_argument("--parallel", type=int, default=0, help="segment encoders (0: chosen from the cores)")
    parser.add_argument("--threads", type=int, default=0, help="threads per encoder (0: chosen)")
    args = parser.parse_args()
    chunks = frames_as(args.input)
    settings = EncodeSettings(fps=16, crf=23, preset=args.preset, encoder="software", parallel=args.parallel,
                              threads=args.threads)
    encoders, threads = plan_parallel(settings, "libx264", usable_cores())
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        with VideoWriter(Path(folder) / "x.mp4", settings, WIDTH, HEIGHT, input_format=args.input,
                         frames=FRAMES) as writer:
            for chunk in chunks:
                writer.write(chunk)
            path = writer.finish()
        seconds = time.perf_counter() - started
        size = path.stat().st_size
    print(f"cores {usable_cores()}, preset {args.preset}, input {args.input}, encoders x threads {encoders} x "
          f"{threads or 'auto'}: {FRAMES / seconds:.0f} frames/s, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
