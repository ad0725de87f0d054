"""Read the files ComfyUI users have: SaveLatent's `.latent` files and VAE `.safetensors` weights."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import StreamVAEError


def _load_safetensors(path: Path, what: str) -> dict:
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    if not path.is_file():
        raise StreamVAEError(f"{what} file {path} does not exist")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise StreamVAEError(f"{path} is not a readable safetensors file ({error}); was it fully downloaded?") \
            from None


def load_latent_file(path: os.PathLike | str) -> dict:
    """A `.latent` file from ComfyUI's SaveLatent, as ComfyUI's LoadLatent reads it: LATENT dict."""
    tensors = _load_safetensors(Path(path), "latent")
    if "latent_tensor" not in tensors:
        raise StreamVAEError(f"{path} holds no 'latent_tensor'; save latents with ComfyUI's SaveLatent node")
    # Files from before ComfyUI's latent format version 0 were stored pre-scaled (LoadLatent undoes it too).
    multiplier = 1.0 if "latent_format_version_0" in tensors else 1.0 / 0.18215
    return {"samples": tensors["latent_tensor"].float() * multiplier}


def comfyui_candidates(explicit: Optional[str] = None) -> list[Path]:
    """Where ComfyUI is looked for, in order: the argument, $COMFYUI_PATH, the ComfyUI whose custom_nodes/ holds
    this pack (a *link* there resolves elsewhere: use $COMFYUI_PATH), ~/comfy/ComfyUI."""
    pack = Path(__file__).resolve().parent.parent
    candidates = [explicit, os.environ.get("COMFYUI_PATH"),
                  pack.parent.parent if pack.parent.name == "custom_nodes" else None,
                  Path.home() / "comfy" / "ComfyUI"]
    return list(dict.fromkeys(Path(candidate).expanduser() for candidate in candidates if candidate))


def find_comfyui(explicit: Optional[str] = None) -> Optional[Path]:
    """The first candidate that is a ComfyUI checkout (main.py to run a server, comfy/sd.py to import), or None."""
    return next((path for path in comfyui_candidates(explicit)
                 if (path / "main.py").is_file() and (path / "comfy" / "sd.py").is_file()), None)


def comfyui_release(root: Path) -> str:
    """The release of the ComfyUI checkout at `root` (its comfyui_version.py), or "unknown"."""
    version_file = Path(root) / "comfyui_version.py"
    for line in version_file.read_text().splitlines() if version_file.is_file() else ():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


def import_comfy(comfyui: Optional[str] = None, device: Optional[str] = None) -> Optional[Path]:
    """Put ComfyUI on sys.path and import `comfy.sd`, in CPU mode when there is no GPU; None if ComfyUI isn't found.

    For scripts and tests: inside ComfyUI the pack never calls this.
    """
    root = find_comfyui(comfyui)
    if root is None:
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from comfy.cli_args import args  # noqa: PLC0415 - only when ComfyUI is there

    if "comfy.model_management" not in sys.modules and (device == "cpu" or not torch.cuda.is_available()):
        args.cpu = True  # what `main.py --cpu` sets; model management reads it once, at import
    importlib.import_module("comfy.sd")  # fails here, with ComfyUI's own message, if its requirements are missing
    return root


def load_vae_file(path: os.PathLike | str, *, comfyui: Optional[str] = None, device: Optional[str] = None) -> Any:
    """A VAE file as ComfyUI's VAELoader loads it when ComfyUI is available, else as a diffusers AutoencoderKLWan."""
    sd = _load_safetensors(Path(path), "VAE")
    if import_comfy(comfyui, device) is not None:
        import comfy.sd  # noqa: PLC0415

        vae = comfy.sd.VAE(sd=sd, device=torch.device(device) if device else None)
        if getattr(vae, "first_stage_model", None) is None:  # ComfyUI only logs "No VAE weights detected"
            raise StreamVAEError(f"{path} holds no VAE weights ComfyUI recognises (is it a LoRA, a text encoder or "
                                 "a diffusion model?); choose a VAE file such as wan_2.1_vae.safetensors")
        return vae
    return _diffusers_wan21(sd, path, device)


def _diffusers_wan21(sd: dict, path, device: Optional[str]) -> Any:
    from diffusers import AutoencoderKLWan  # noqa: PLC0415
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers  # noqa: PLC0415

    if "decoder.middle.0.residual.0.gamma" not in sd:
        raise StreamVAEError(f"{path} is not a Wan VAE in ComfyUI's layout; without ComfyUI only Wan 2.1 VAE files "
                             "(wan_2.1_vae.safetensors) load. Point --comfyui (or $COMFYUI_PATH) at ComfyUI for "
                             "other VAEs")
    if "decoder.upsamples.0.upsamples.0.residual.2.weight" in sd:
        raise StreamVAEError(f"{path} is a Wan 2.2 VAE; loading it needs ComfyUI: point --comfyui (or "
                             "$COMFYUI_PATH) at a ComfyUI folder")
    # ComfyUI's layout holds no config: the width comes from the decoder head's norm (96 in the published VAE).
    vae = AutoencoderKLWan(base_dim=sd["decoder.head.0.gamma"].shape[0], z_dim=16)
    vae.load_state_dict(convert_wan_vae_to_diffusers(sd))
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if target.startswith("cuda") else torch.float32
    return vae.eval().requires_grad_(False).to(target, dtype)
