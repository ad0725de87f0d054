"""Time fast mode's own Wan decoder on a GPU: the chunk loop alone (no conversion, no copy, no encoder).

Variants, each warmed up on a short latent (cuDNN's choices, Triton's compilation), then alternated `--rounds`
times in one process on the full latent:
- `exact`: the host's modules (diffusers' AutoencoderKLWan) stepped chunk by chunk, as exact mode runs them;
- `fast`: our decoder, bf16, every feature;
- with `--ab`, `fast -X`: our decoder with feature X switched off alone (streamvae/wan_decoder/features.py).

Real architectures with real-valued random weights at the published sizes (Wan 2.1 1280x720x161, Wan 2.2
1280x704x121 by default). Prints a table, and JSON with the machine (card, driver, torch) with `--json`.

    PYTHONPATH=. python benchmarks/wan_decoder_gpu.py --arch both --ab --rounds 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.bench import machine_info
from streamvae.decoders import FastWanChunkDecoder, decoder_for
from benchmarks.synthetic import random_latent, random_wan_vae
from streamvae.wan_decoder import FEATURES, build_decoder, decoder_weights

SIZES = {"wan2.1": (161, 720, 1280), "wan2.2": (121, 704, 1280)}


def run_once(decoder, latent: torch.Tensor) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in decoder.chunks(latent):
            pass
    torch.cuda.synchronize()
    return time.perf_counter() - started


def variants(vae, latent: torch.Tensor, ab: bool) -> dict:
    weights = decoder_weights(vae)
    device = torch.device("cuda")
    found = {"exact": decoder_for(vae, latent, "exact"),
             "fast": FastWanChunkDecoder(build_decoder(weights, device, torch.bfloat16, FEATURES))}
    if ab:
        for feature in sorted(FEATURES):
            found[f"fast -{feature}"] = FastWanChunkDecoder(
                build_decoder(weights, device, torch.bfloat16, FEATURES - {feature}))
    return found


def bench_arch(arch: str, frames: int, rounds: int, ab: bool) -> dict:
    default_frames, height, width = SIZES[arch]
    frames = frames or default_frames
    vae = random_wan_vae(arch, device="cuda", dtype=torch.bfloat16)
    latent = random_latent(vae, frames, height, width)
    decoders = variants(vae, latent, ab)
    for decoder in decoders.values():  # warm-up: every chunk shape (first step, later steps) on 3 latent frames
        run_once(decoder, latent[:, :, :3])
    times = {name: [] for name in decoders}
    peaks = {}
    for _ in range(rounds):
        for name, decoder in decoders.items():
            torch.cuda.reset_peak_memory_stats()
            times[name].append(run_once(decoder, latent))
            peaks[name] = torch.cuda.max_memory_allocated()
    exact = min(times["exact"])
    rows = {name: {"seconds_min": min(values), "seconds_mean": statistics.mean(values), "seconds": values,
                   "speedup_vs_exact": exact / min(values), "peak_vram_gib": peaks[name] / 2**30,
                   "decoder": decoders[name].name}
            for name, values in times.items()}
    print(f"\n{arch} {width}x{height}x{frames}, chunk loop only, {rounds} rounds alternated (min / mean):")
    for name, row in rows.items():
        print(f"  {name:16s} {row['seconds_min']:7.3f} s / {row['seconds_mean']:7.3f} s  "
              f"{row['speedup_vs_exact']:5.2f}x exact  peak {row['peak_vram_gib']:5.2f} GiB  {row['decoder']}")
    del decoders, vae
    torch.cuda.empty_cache()
    return {"size": [frames, height, width], "variants": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("wan2.1", "wan2.2", "both"), default="both")
    parser.add_argument("--frames", type=int, default=0, help="video frames (4k+1); default the published size")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ab", action="store_true", help="also each feature switched off alone")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    arches = ("wan2.1", "wan2.2") if args.arch == "both" else (args.arch,)
    report = {"machine": machine_info(torch.device("cuda")),
              "what": "chunk loop only (decoder compute), bf16, real architectures with random weights",
              "results": {arch: bench_arch(arch, args.frames, args.rounds, args.ab) for arch in arches}}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()
