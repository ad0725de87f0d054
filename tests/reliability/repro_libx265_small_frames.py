"""Measures libx265's failures in the installed PyAV, without any of the pack's code (docs/reliability.md, "Upstream
finding"). Not a test: an encode can abort the interpreter (heap corruption), so each (width, frames) pair runs in
child processes of its own, and an abort is counted and the next encode goes on in a fresh child.

    python tests/reliability/repro_libx265_small_frames.py                          # widths 16-128, 5 frames
    python tests/reliability/repro_libx265_small_frames.py --widths 30-60 --encodes 40
    python tests/reliability/repro_libx265_small_frames.py --widths 256-256 --height 256 --frames 1 2 3 \\
        --x265-params log-level=error:bframes=0

Prints one line per (width, frames): encodes that worked, that raised (e.g. "Not yet implemented in FFmpeg, patches
welcome" at the flush), and that aborted the process.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile


def encode_in_this_process(width: int, height: int, pix_fmt: str, frames: int, seeds: range, x265_params: str):
    """The child: one small mp4 per seed (random frames), a line before and after each, flushed, so the parent
    knows which encode an abort interrupted."""
    import av
    import numpy as np

    folder = tempfile.mkdtemp()
    for seed in seeds:
        print("start", seed, flush=True)
        try:
            with av.open(os.path.join(folder, "x.mp4"), "w") as container:
                stream = container.add_stream("libx265", rate=16)
                stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
                stream.codec_context.options = {"crf": "39", "preset": "ultrafast", "x265-params": x265_params}
                images = np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
                for index, image in enumerate(images):
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts = index
                    container.mux(stream.encode(frame))
                container.mux(stream.encode(None))
            print("ok", seed, flush=True)
        except Exception:  # noqa: BLE001 - counted, whatever it is
            print("raised", seed, flush=True)


def outcomes(width: int, frames: int, args) -> collections.Counter:
    """Run `args.encodes` encodes in children, starting a fresh child after each abort."""
    counts, next_seed = collections.Counter(), 0
    while next_seed < args.encodes:
        command = [sys.executable, __file__, "--child", str(width), str(frames), str(next_seed),
                   "--height", str(args.height), "--pix-fmt", args.pix_fmt, "--x265-params", args.x265_params,
                   "--encodes", str(args.encodes)]
        child = subprocess.run(command, capture_output=True, text=True, timeout=600)
        running = None
        for line in child.stdout.splitlines():
            kind, seed = line.split()
            running = int(seed) if kind == "start" else None
            if kind != "start":
                counts[kind] += 1
        if running is None:
            break
        counts["aborted"] += 1  # died inside encode `running` (SIGABRT from glibc's heap checks)
        next_seed = running + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="16-128", help="FIRST-LAST, even widths (default %(default)s)")
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--frames", type=int, nargs="+", default=[5])
    parser.add_argument("--encodes", type=int, default=10, help="per width and frame count")
    parser.add_argument("--pix-fmt", default="yuv420p")
    parser.add_argument("--x265-params", default="log-level=error")
    parser.add_argument("--child", type=int, nargs=3, metavar=("WIDTH", "FRAMES", "FIRST_SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        width, frames, first_seed = args.child
        encode_in_this_process(width, args.height, args.pix_fmt, frames, range(first_seed, args.encodes),
                               args.x265_params)
        return
    first, last = map(int, args.widths.split("-"))
    for width in range(first, last + 1, 2):
        for frames in args.frames:
            counts = outcomes(width, frames, args)
            print(f"{width}x{args.height} {args.pix_fmt} {frames} frames: ok {counts['ok']}, "
                  f"raised {counts['raised']}, aborted {counts['aborted']}", flush=True)


if __name__ == "__main__":
    main()
