"""Would FP8 convolutions keep fast mode's fidelity? A simulation on the CPU, both Wan VAEs (diffusers' classes,
seeded random weights as in every benchmark here), small frames, no GPU needed.

Every convolution of the decoder gets its input and weight rounded to a number format, convolves them in float32
(what a tensor-core GEMM accumulating in float32 does) and has its output rounded to bf16 (what it would write):
- `bf16`: every conv in bf16, the format both modes use today (the baseline the others are compared with);
- `fp8 widest`: the convs that take the decoder's widest inputs (Wan 2.1: 384 channels, Wan 2.2: 1024, where
  most of the FLOPs are) in float8 e4m3, the rest in bf16;
- `fp8 all`: every conv in float8 e4m3;
- `mxfp8 widest` / `mxfp8 all`: the same convs in block-scaled float8 e4m3 (the MX format Blackwell's tensor cores
  take): a power-of-two scale per 32 consecutive input channels, for each pixel of the activation and each output
  channel and tap of the weight (blocks along the GEMM's reduction, as an implicit-GEMM conv over channels-last
  data reads them).
FP8 scales: the activation's per tensor and per call (amax / 448: the best a static scale could do; per tensor is
what cuDNN's FP8 convolutions take), the weight's per output channel. Everything between convs (norms, attention,
upsampling) stays float32 here, so the numbers isolate what the convs' format costs.

Output: PSNR of each variant's uint8 frames against the float32 decoder's, and against the bf16 variant's.
Run: `python -m benchmarks.fp8_simulation_cpu`; writes $OUT/fp8_simulation.json (default /tmp).
"""
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn

from benchmarks.fidelity import psnr_db
from streamvae.decoders import decoder_for
from benchmarks.synthetic import random_latent, random_wan_vae

CASES = {"wan2.1": (9, 128, 192), "wan2.2": (9, 128, 192)}  # frames, height, width
FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448


def to_bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


def fp8_per_tensor(t: torch.Tensor) -> torch.Tensor:
    scale = t.abs().amax().clamp(min=1e-12) / FP8_MAX
    return (t / scale).to(FP8).float() * scale


def fp8_per_out_channel(w: torch.Tensor) -> torch.Tensor:
    scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp(min=1e-12) / FP8_MAX
    return (w / scale).to(FP8).float() * scale


def mxfp8_blocks(t: torch.Tensor, block: int = 32) -> torch.Tensor:
    """Blocks of `block` along dim 1 (input channels), each with a power-of-two scale; one block if it won't divide."""
    size = block if t.shape[1] % block == 0 else t.shape[1]
    blocks = t.unflatten(1, (t.shape[1] // size, size))
    amax = blocks.abs().amax(dim=2, keepdim=True).clamp(min=1e-30)
    scale = torch.exp2(torch.ceil(torch.log2(amax / FP8_MAX)))
    return ((blocks / scale).to(FP8).float() * scale).flatten(1, 2)


FORMATS = {  # (activation, weight) rounding of a conv's inputs
    "bf16": (to_bf16, to_bf16),
    "fp8": (fp8_per_tensor, fp8_per_out_channel),
    "mxfp8": (mxfp8_blocks, mxfp8_blocks),
}


def convs(module: nn.Module) -> list:
    return [sub for sub in module.modules() if isinstance(sub, (nn.Conv2d, nn.Conv3d))]


def patch(conv: nn.Module, fmt: str) -> None:
    """The conv computes in format `fmt`: rounded input and weight, float32 products, bf16 output."""
    original = conv._conv_forward  # nn.ConvNd's own (padding mode and all), bound to this conv
    round_input, round_weight = FORMATS[fmt]

    def conv_forward(x, weight, bias):
        return to_bf16(original(round_input(x), round_weight(weight), bias))

    conv._conv_forward = conv_forward


def unpatch(module: nn.Module) -> None:
    for conv in convs(module):
        conv.__dict__.pop("_conv_forward", None)


def frames(vae, latent) -> np.ndarray:
    decoder = decoder_for(vae, latent)
    with torch.inference_mode():
        video = torch.cat(list(decoder.chunks(latent)), 2)
    return ((video.clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8).numpy()


def main():
    torch.manual_seed(0)
    results = {"env": {"torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "device": "cpu"}, "cases": {}}
    for arch, (count, height, width) in CASES.items():
        vae = random_wan_vae(arch)
        latent = random_latent(vae, count, height, width)
        widest = max(conv.in_channels for conv in convs(vae.decoder))
        variants = {"bf16": lambda conv: "bf16"}  # name: the format of each conv
        for fmt in ("fp8", "mxfp8"):
            variants[f"{fmt} widest ({widest} channels in)"] = (
                lambda conv, fmt=fmt: fmt if conv.in_channels == widest else "bf16")
            variants[f"{fmt} all"] = lambda conv, fmt=fmt: fmt
        reference = frames(vae, latent)
        case = {"frames": f"{count}x{height}x{width}", "psnr_vs_fp32_db": {}, "psnr_vs_bf16_db": {}}
        outputs = {}
        for name, format_of in variants.items():
            started = time.perf_counter()
            for conv in convs(vae.decoder):
                patch(conv, format_of(conv))
            try:
                outputs[name] = frames(vae, latent)
            finally:
                unpatch(vae.decoder)
            case["psnr_vs_fp32_db"][name] = round(psnr_db(outputs[name], reference), 2)
            if name != "bf16":
                case["psnr_vs_bf16_db"][name] = round(psnr_db(outputs[name], outputs["bf16"]), 2)
            print(arch, name, case["psnr_vs_fp32_db"][name], "dB vs fp32,", case["psnr_vs_bf16_db"].get(name, "-"),
                  f"dB vs bf16 ({time.perf_counter() - started:.0f} s)", flush=True)
        results["cases"][arch] = case
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "fp8_simulation.json"), "w") as out:
        json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
