"""Fast mode with and without one feature (e.g. `bias`, `subpixel`), chunk loop only, both Wan VAEs at full size,
one process, the variants alternated; peak VRAM; PSNR of fast vs exact on the first 6 latent frames.
Run: `python -m benchmarks.feature_ab_gpu FEATURE` on a CUDA machine with diffusers; writes
$OUT/feature_ab_FEATURE.json."""
import json
import os
import subprocess
import sys
import time

import torch

from benchmarks.fidelity import psnr_db
from streamvae.decoders import decoder_for
from streamvae.fast import FEATURES, fast_kernels
from benchmarks.synthetic import random_latent, random_wan_vae

CASES = {"wan2.1": (161, 720, 1280), "wan2.2": (121, 704, 1280)}
FEATURE = sys.argv[1] if len(sys.argv) > 1 else "bias"
VARIANTS = {"all": FEATURES, f"all but {FEATURE}": FEATURES - {FEATURE}}


def decode_seconds(decoder, latent, features) -> tuple[float, float]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.inference_mode(), fast_kernels(decoder.parts.decoder, decoder.device, features):
        for _ in decoder.chunks(latent):
            pass
    torch.cuda.synchronize()
    return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**30


def frames(decoder, latent, features):
    with torch.inference_mode():
        if features is None:
            chunks = [c.float().cpu() for c in decoder.chunks(latent)]
        else:
            with fast_kernels(decoder.parts.decoder, decoder.device, features):
                chunks = [c.float().cpu() for c in decoder.chunks(latent)]
    return ((torch.cat(chunks, 2).clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).numpy()


def main():
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    results = {"env": {"gpu": smi, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                    time.gmtime())}, "cases": {}}
    for arch, (count, height, width) in CASES.items():
        vae = random_wan_vae(arch, device="cuda", dtype=torch.bfloat16)
        latent = random_latent(vae, count, height, width)
        decoder = decoder_for(vae, latent)
        short = latent[:, :, :6]
        for features in VARIANTS.values():  # warm: Triton compiled, cuDNN's choices made for every shape
            decode_seconds(decoder, latent[:, :, :3], features)
        case = {}
        for round_index in range(2):  # alternate, so drift in clocks shows as a difference between rounds
            for name, features in VARIANTS.items():
                seconds, peak = decode_seconds(decoder, latent, features)
                case.setdefault(name, []).append({"seconds": round(seconds, 3), "peak_gib": round(peak, 2)})
                print(arch, name, round(seconds, 3), "s", round(peak, 2), "GiB", flush=True)
        exact = frames(decoder, short, None)
        case["psnr_vs_exact_db"] = {name: round(psnr_db(frames(decoder, short, features), exact), 2)
                                    for name, features in VARIANTS.items()}
        print(arch, case["psnr_vs_exact_db"], flush=True)
        results["cases"][arch] = case
        del vae, decoder
        torch.cuda.empty_cache()
    with open(os.path.join(os.environ.get("OUT", "/tmp"), f"feature_ab_{FEATURE}.json"), "w") as out:
        json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
