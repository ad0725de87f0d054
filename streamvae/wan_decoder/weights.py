"""Read a Wan VAE's decoder weights from whatever holds them, as one state dict in ComfyUI's key layout.

The key layout of the original Wan checkpoints (which ComfyUI loads as they are) is the contract here: it has not
moved across ComfyUI releases, while the modules reading it have. Sources:

- a state dict, in ComfyUI's layout or in diffusers' (converted below);
- a path to a `.safetensors` file holding either;
- ComfyUI's `comfy.sd.VAE` (its `first_stage_model`'s weights), on any release;
- diffusers' `AutoencoderKLWan`.

Only the decoder's weights are kept (`conv2.*` and `decoder.*`): the encoder is not needed to decode.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..errors import StreamVAEError


class UnsupportedVAE(StreamVAEError):
    """This VAE is not one our Wan decoder can be built from; the message says why."""


def decoder_weights(source: Any) -> dict[str, torch.Tensor]:
    """The decoder's weights of `source`, keys in ComfyUI's layout (`conv2.weight`, `decoder.head.2.bias`, …)."""
    if isinstance(source, (str, os.PathLike)):
        from ..files import _load_safetensors  # noqa: PLC0415 - the one safetensors reader with clear errors

        return decoder_weights(_load_safetensors(Path(source), "VAE"))
    if isinstance(source, Mapping):
        return _from_state_dict(source)
    model = getattr(source, "first_stage_model", None)  # ComfyUI's VAE wrapper
    if isinstance(model, torch.nn.Module):
        return _from_state_dict(model.state_dict())
    if isinstance(source, torch.nn.Module):  # diffusers' AutoencoderKLWan, or ComfyUI's WanVAE module itself
        return _from_state_dict(source.state_dict())
    raise UnsupportedVAE(f"{type(source).__name__} holds no weights we can read: pass ComfyUI's VAE, diffusers' "
                         "AutoencoderKLWan, a state dict or a .safetensors path")


def _from_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if "post_quant_conv.weight" in state or "decoder.conv_in.weight" in state:
        state = _diffusers_to_comfy(state)
    if "conv2.weight" not in state or "decoder.conv1.weight" not in state:
        sample = ", ".join(sorted(state)[:3]) or "none"
        raise UnsupportedVAE(f"these weights are not a Wan VAE (no conv2/decoder.conv1; keys start {sample})")
    return {key: value for key, value in state.items() if key.startswith(("conv2.", "decoder."))}


# diffusers' names for the parts of a residual block and of the decoder's ends, and ComfyUI's.
_RESNET_PARTS = {"norm1.gamma": "residual.0.gamma", "conv1.": "residual.2.", "norm2.gamma": "residual.3.gamma",
                 "conv2.": "residual.6.", "conv_shortcut.": "shortcut."}
_FIXED = {"post_quant_conv.": "conv2.", "decoder.conv_in.": "decoder.conv1.", "decoder.norm_out.gamma":
          "decoder.head.0.gamma", "decoder.conv_out.": "decoder.head.2.",
          "decoder.mid_block.resnets.0.": "decoder.middle.0.", "decoder.mid_block.attentions.0.": "decoder.middle.1.",
          "decoder.mid_block.resnets.1.": "decoder.middle.2."}
_UP_BLOCK = re.compile(r"decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)\.|upsamplers\.0\.|upsampler\.)(.*)")


def _diffusers_to_comfy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' AutoencoderKLWan keys -> the original checkpoint's (decoder only; other keys dropped).

    Wan 2.1's up blocks (`upsamplers.0`) are one flat list in the original (`decoder.upsamples.N`: each block's
    residual blocks, then its upsampler); Wan 2.2's (`upsampler`) stay nested (`decoder.upsamples.I.upsamples.J`).
    """
    resnets: dict[int, int] = {}  # up block -> how many residual blocks it has
    upsampler_blocks, nested = set(), False
    for key in state:
        match = _UP_BLOCK.fullmatch(key)
        if match is None:
            continue
        block = int(match.group(1))
        if match.group(3) is not None:
            resnets[block] = max(resnets.get(block, 0), int(match.group(3)) + 1)
        else:
            upsampler_blocks.add(block)
            nested = nested or match.group(2) == "upsampler."
    flat_start, start = {}, 0
    for block in sorted(resnets):
        flat_start[block] = start
        start += resnets[block] + (block in upsampler_blocks)
    place = ((lambda block, index: f"{block}.upsamples.{index}") if nested
             else (lambda block, index: str(flat_start[block] + index)))
    converted = {}
    for key, value in state.items():
        new_key = _convert_key(key, resnets, place)
        if new_key is not None:
            converted[new_key] = value
    return converted


def _convert_key(key: str, resnets: dict[int, int], place: Callable[[int, int], str]) -> str | None:
    for old, new in _FIXED.items():
        if key.startswith(old):
            rest = key[len(old):]
            return new + (_resnet_part(rest) if "resnets" in old else rest)
    match = _UP_BLOCK.fullmatch(key)
    if match is None:
        return key if key.startswith("decoder.") else None  # kept, so that an unknown decoder key is refused later
    block, resnet, rest = int(match.group(1)), match.group(3), match.group(4)
    if resnet is None:  # the upsampler comes after the block's residual blocks
        return f"decoder.upsamples.{place(block, resnets.get(block, 0))}.{rest}"
    return f"decoder.upsamples.{place(block, int(resnet))}.{_resnet_part(rest)}"


def _resnet_part(rest: str) -> str:
    for old, new in _RESNET_PARTS.items():
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest  # unknown: refused later, by name
