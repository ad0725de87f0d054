"""The time between the last decoded frame and the finished file, with the end of the video cut into halving
segments (the default when the length is known; shortest 8 or 4 frames) and with equal segments, alternated in
one process, and the file's size: Wan 2.1
1280x720x161, fast mode, libx264 crf 23 medium, panned photographs for the encoder (as the benchmark feeds it).
Run: `python -m benchmarks.tail_ab_gpu` on a CUDA machine with diffusers and scikit-image (or
$STREAMVAE_PHOTOS, an .npz of the same photographs); writes $OUT/tail_ab.json."""
import itertools
import json
import os
from pathlib import Path

import numpy as np
import torch

import streamvae.segments as segments
import benchmarks.synthetic as synthetic
from streamvae import EncodeSettings
from benchmarks.bench import BenchCase, machine_info, run_streaming, warm_up

if os.environ.get("STREAMVAE_PHOTOS"):
    photos = np.load(os.environ["STREAMVAE_PHOTOS"])
    synthetic._photographs = lambda: [photos[name] for name in photos.files]

CUT_FINER = segments.segment_lengths


def equal_segments(segment_frames, total_frames=None):
    return itertools.repeat(segment_frames)


def main():
    out = Path(os.environ.get("OUT", "/tmp"))
    case = BenchCase("wan2.1", 161, 720, 1280, 16, torch.bfloat16, torch.device("cuda"), "diffusers")
    vae = synthetic.random_wan_vae(case.arch, device=case.device, dtype=case.dtype)
    latent = synthetic.random_latent(vae, case.frames, case.height, case.width)
    settings = EncodeSettings(fps=case.fps, crf=23, preset="medium", encoder="software")
    warm_up(vae, case, ("fast",))
    results = {"env": machine_info(case.device), "runs": {}}
    default_shortest = segments.SHORTEST_TAIL_SEGMENT
    variants = (("halving end, shortest 8", CUT_FINER, 8), ("halving end, shortest 4", CUT_FINER, 4),
                ("equal segments", equal_segments, default_shortest))
    for _ in range(2):
        for name, plan, shortest in variants:
            segments.segment_lengths, segments.SHORTEST_TAIL_SEGMENT = plan, shortest
            stats = run_streaming(vae, latent, settings, out / "tail.mp4", case, mode="fast")
            row = {"wall_s": round(stats.wall_seconds, 3), "decode_s": round(stats.decode_seconds, 3),
                   "wall_minus_decode_s": round(stats.wall_seconds - stats.decode_seconds, 3),
                   "bytes": (out / "tail.mp4").stat().st_size}
            results["runs"].setdefault(name, []).append(row)
            print(name, row, flush=True)
    segments.segment_lengths, segments.SHORTEST_TAIL_SEGMENT = CUT_FINER, default_shortest
    (out / "tail.mp4").unlink()
    (out / "tail_ab.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
