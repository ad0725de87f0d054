"""The upsampling blocks' kernels at the shapes a real decoder step gives them (captured with hooks from the
second chunk of each Wan VAE at full size): nearest 2x upsample + 3x3 conv against the sub-pixel conv with the
Triton interleave and with the four-copy interleave, and Wan 2.2's DupUp3D shuffle as the Triton pass against the
permute-copies it replaced. Run: `python -m benchmarks.resample_kernels_gpu`; writes
$OUT/resample_kernels.json."""
import json
import os

import torch
import torch.nn.functional as F

from streamvae.decoders import decoder_for
from streamvae.kernels import SubpixelUpsampleConv, upsample_conv
from streamvae.kernels.dup_up import dup_up, dup_up_reference
from benchmarks.synthetic import random_latent, random_wan_vae

SIZES = {"wan2.1": (720, 1280), "wan2.2": (704, 1280)}


def milliseconds(fn, reps=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return round(start.elapsed_time(end) / reps, 3)


def captured_inputs(arch):
    """(module, input) of every upsampling Sequential and DupUp3D in the second decoder step."""
    vae = random_wan_vae(arch, device="cuda", dtype=torch.bfloat16)
    latent = random_latent(vae, 5, *SIZES[arch])
    decoder = decoder_for(vae, latent)
    seen, step = [], [0]
    hooks = []
    for module in decoder.parts.decoder.modules():
        name = type(module).__name__
        if name == "WanResample" and module.mode.startswith("upsample") or name == "DupUp3D":
            target = module.resample if name == "WanResample" else module
            hooks.append(target.register_forward_pre_hook(
                lambda mod, args: seen.append((mod, args[0].contiguous(
                    memory_format=torch.channels_last if args[0].dim() == 4 else torch.channels_last_3d)))
                if step[0] else None))
    with torch.inference_mode():
        for index, _ in enumerate(decoder.chunks(latent)):
            step[0] = index == 0  # record the step after the first (steady-state shapes)
    for hook in hooks:
        hook.remove()
    return seen


def main():
    results = {}
    for arch in SIZES:
        rows = []
        for module, x in captured_inputs(arch):
            with torch.inference_mode():
                if isinstance(module, torch.nn.Sequential):
                    upsample, conv = module
                    weight = conv.weight.contiguous(memory_format=torch.channels_last)
                    subpixel = SubpixelUpsampleConv(conv.weight, conv.bias, torch.channels_last)
                    row = {"op": "upsample+conv", "x": list(x.shape), "w": list(conv.weight.shape),
                           "upsample then conv": milliseconds(lambda: F.conv2d(upsample(x), weight, conv.bias, 1, 1)),
                           "subpixel, Triton interleave": milliseconds(lambda: subpixel(x)),
                           "subpixel, four copies": milliseconds(lambda: upsample_conv._interleave_torch(
                               F.conv2d(x, subpixel.weight, subpixel.bias, 1, 1), subpixel.out_channels,
                               torch.channels_last))}
                else:
                    args = (module.out_channels, module.factor_t, module.factor_s, module.repeats)
                    row = {"op": "DupUp3D", "x": list(x.shape), "args": list(args),
                           "permute-copies": milliseconds(lambda: dup_up_reference(x, *args)),
                           "Triton pass": milliseconds(lambda: dup_up(x, *args))}
            print(arch, row, flush=True)
            rows.append(row)
        results[arch] = rows
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "resample_kernels.json"), "w") as out:
        json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
