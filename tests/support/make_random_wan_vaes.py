"""Write random-weight Wan 2.1 and Wan 2.2 VAEs in ComfyUI's key layout, as safetensors.

Run as a script, in its own process, with ComfyUI's folder on the path:

    python make_random_wan_vaes.py --comfyui ~/comfy/ComfyUI --out models/vae

It imports ComfyUI's `comfy` package, which is why the host tests run it in a subprocess
instead of importing it: `comfy.model_management` probes the device at import time and
reads ComfyUI's global command-line arguments, none of which belongs in the pytest process.

Why full-size architectures: ComfyUI 0.3.64 (`comfy/sd.py`, the Wan branch of `VAE.__init__`)
recognises a Wan VAE by key names and then builds it with fixed dims (Wan 2.1: dim=96;
Wan 2.2: dim=160, dec_dim=256). It does not read the dims from the state dict, so a
smaller `dim` fails `load_state_dict` with size mismatches. The files therefore carry the
real shapes; the tests stay fast by decoding tiny videos (64x64, a few frames), not tiny models.

Why explicit initialisation: ComfyUI's layer classes (`comfy.ops.disable_weight_init`) skip
init and would leave uninitialised memory in the weights. Every tensor here is drawn from a
seeded normal distribution, so the files are the same on every run and decode to real,
finite, noise-like pixels.
"""

import argparse
import sys
from pathlib import Path

from benchmarks.synthetic import COMFY_WAN

# File name -> (module, constructor kwargs): exactly what comfy/sd.py builds, or some of the weights ComfyUI's
# model has would be missing from the file and stay uninitialised on load.
VAES = {
    "tiny_wan21_vae.safetensors": COMFY_WAN["wan2.1"],
    "tiny_wan22_vae.safetensors": COMFY_WAN["wan2.2"],
}
SEED = 20251126


def random_state_dict(model_class, kwargs, generator):
    import torch

    # The meta device gives every parameter's name and shape without allocating memory.
    with torch.device("meta"):
        model = model_class(**kwargs)
    state_dict = {}
    for name, meta in model.state_dict().items():
        tensor = torch.empty(meta.shape, dtype=torch.float32)
        if name.endswith(".gamma"):  # RMS_norm scale: around 1, as a trained norm would be
            tensor.normal_(1.0, 0.05, generator=generator)
        elif name.endswith(".bias"):
            tensor.normal_(0.0, 0.02, generator=generator)
        else:  # conv / linear weights: std 1/sqrt(fan_in) keeps activations near unit scale
            fan_in = meta[0].numel()
            tensor.normal_(0.0, fan_in ** -0.5, generator=generator)
        # bf16 on disk, like the published wan_2.1_vae / wan2.2_vae files; ComfyUI casts on load.
        state_dict[name] = tensor.to(torch.bfloat16)
    return state_dict


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, type=Path, help="ComfyUI folder (holds main.py)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the .safetensors into")
    parser.add_argument("--only", action="append", choices=sorted(VAES), help="write only this file (repeatable)")
    args = parser.parse_args()

    sys.path.insert(0, str(args.comfyui.resolve()))
    # Importing comfy.ldm.* pulls in comfy.model_management, which asks CUDA for a device
    # unless told --cpu. Only shapes are needed here, so claim the CPU before that import.
    from comfy.cli_args import args as comfy_args
    comfy_args.cpu = True

    import importlib
    import torch
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(SEED)
    for file_name, (module_name, kwargs) in VAES.items():
        if args.only and file_name not in args.only:
            continue
        model_class = importlib.import_module(module_name).WanVAE
        state_dict = random_state_dict(model_class, kwargs, generator)
        # Write beside the target, then rename: a killed run never leaves a half file behind.
        target = args.out / file_name
        partial = target.with_suffix(".partial")
        save_file(state_dict, str(partial))
        partial.replace(target)
        print(f"wrote {target} ({sum(t.numel() for t in state_dict.values()) / 1e6:.1f} M parameters)")


if __name__ == "__main__":
    main()
