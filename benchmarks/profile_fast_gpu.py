"""Where fast mode's GPU time goes: torch profiler over 5 steady-state chunks of each Wan VAE at full size
(chunk loop only), kernels sorted by CUDA time. Run: `python -m benchmarks.profile_fast_gpu` on a CUDA
machine with diffusers; writes $OUT/profile-wan2.1.txt and profile-wan2.2.txt."""
import os

import torch
from torch.profiler import ProfilerActivity, profile

from streamvae.decoders import decoder_for
from streamvae.fast import fast_kernels
from benchmarks.synthetic import random_latent, random_wan_vae

SIZES = {"wan2.1": (720, 1280), "wan2.2": (704, 1280)}

for arch, (height, width) in SIZES.items():
    vae = random_wan_vae(arch, device="cuda", dtype=torch.bfloat16)
    latent = random_latent(vae, 1 + 4 * 8, height, width)
    decoder = decoder_for(vae, latent)
    with torch.inference_mode(), fast_kernels(decoder.parts.decoder, decoder.device):
        chunks = decoder.chunks(latent)
        for _ in range(3):  # the first chunks have other shapes (no temporal upsampling yet) and warm the kernels
            next(chunks)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                next(chunks)
            torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=90)
    with open(os.path.join(os.environ.get("OUT", "/tmp"), f"profile-{arch}.txt"), "w") as out:
        out.write(table)
    print(arch, "\n", table, flush=True)
    del vae, decoder, chunks
    torch.cuda.empty_cache()
