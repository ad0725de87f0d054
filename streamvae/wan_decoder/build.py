"""Build our decoder from a Wan VAE's decoder weights (ComfyUI's key layout), reading the architecture from them.

The layout, as the Wan checkpoints store it:

    conv2                                    1x1x1 conv before the decoder
    decoder.conv1                            3x3x3 causal conv
    decoder.middle.{0,1,2}                   residual block, attention, residual block
    decoder.upsamples.N                      Wan 2.1: a flat list of residual blocks and upsamplers
    decoder.upsamples.I.upsamples.J          Wan 2.2: up blocks, each residual blocks and an upsampler
    decoder.head.{0,2}                       norm, 3x3x3 causal conv
    residual block:  residual.{0.gamma, 2, 3.gamma, 6}, shortcut (when channels change)
    attention:       norm.gamma, to_qkv, proj
    upsampler:       resample.1 (3x3 conv), time_conv (3x1x1, when it upsamples time too)

Every weight must be used, and every shape must fit: weights we don't recognise mean a VAE we can't decode
right, so it is refused with the reason (UnsupportedVAE), never decoded approximately.
"""

from __future__ import annotations

from typing import Optional

import torch

from .decoder import Architecture, WanDecoder
from .layers import Attention, CausalConv, DupUp, Head, Norm, ResidualBlock, Upsample, UpGroup
from .ops import Ops
from .weights import UnsupportedVAE


class _Weights:
    """The state dict on the target device and dtype, handing out tensors and remembering which were taken."""

    def __init__(self, weights: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype):
        self.weights, self.device, self.dtype = weights, device, dtype
        self.taken: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.weights

    def take(self, key: str, dims: int) -> torch.Tensor:
        if key not in self.weights:
            raise UnsupportedVAE(f"the weight {key} is missing")
        tensor = self.weights[key]
        if tensor.dim() != dims:
            raise UnsupportedVAE(f"{key} has shape {tuple(tensor.shape)}, expected {dims} dimensions")
        self.taken.add(key)
        return tensor.detach().to(device=self.device, dtype=self.dtype, copy=True)

    def left_over(self) -> list[str]:
        return sorted(set(self.weights) - self.taken)


class _Builder:
    def __init__(self, weights: _Weights, ops: Ops):
        self.w, self.ops, self.slots = weights, ops, 0

    def conv(self, prefix: str, kernel: tuple[int, int, int], in_channels: Optional[int] = None) -> CausalConv:
        weight = self.w.take(prefix + "weight", 5)
        if tuple(weight.shape[2:]) != kernel or (in_channels is not None and weight.shape[1] != in_channels):
            raise UnsupportedVAE(f"{prefix}weight has shape {tuple(weight.shape)}; expected a {kernel} kernel"
                                 + (f" over {in_channels} channels" if in_channels is not None else ""))
        slot = None
        if kernel[0] > 1:
            slot, self.slots = self.slots, self.slots + 1
        return CausalConv(weight, self.w.take(prefix + "bias", 1), self.ops, slot)

    def norm(self, key: str, channels: int) -> Norm:
        gamma = self.w.take(key, 4 if ".residual." in key or ".head." in key else 3)
        if gamma.numel() != channels:
            raise UnsupportedVAE(f"{key} has {gamma.numel()} channels where {channels} come in")
        return Norm(gamma)

    def residual(self, prefix: str, channels: int) -> ResidualBlock:
        norm1 = self.norm(prefix + "residual.0.gamma", channels)
        conv1 = self.conv(prefix + "residual.2.", (3, 3, 3), channels)
        out = conv1.weight.shape[0]
        norm2 = self.norm(prefix + "residual.3.gamma", out)
        conv2 = self.conv(prefix + "residual.6.", (3, 3, 3), out)
        shortcut = self.conv(prefix + "shortcut.", (1, 1, 1), channels) if self.w.has(prefix + "shortcut.weight") \
            else None
        if shortcut is None and out != channels:
            raise UnsupportedVAE(f"{prefix} changes {channels} channels to {out} without a shortcut conv")
        return ResidualBlock(norm1, conv1, norm2, conv2, shortcut, self.ops)

    def attention(self, prefix: str, channels: int) -> Attention:
        norm = self.norm(prefix + "norm.gamma", channels)
        qkv, proj = self.w.take(prefix + "to_qkv.weight", 4), self.w.take(prefix + "proj.weight", 4)
        if tuple(qkv.shape) != (3 * channels, channels, 1, 1) or tuple(proj.shape) != (channels, channels, 1, 1):
            raise UnsupportedVAE(f"{prefix} attention weights have shapes {tuple(qkv.shape)}, {tuple(proj.shape)}")
        return Attention(norm, qkv, self.w.take(prefix + "to_qkv.bias", 1), proj,
                         self.w.take(prefix + "proj.bias", 1), self.ops)

    def upsample(self, prefix: str, channels: int) -> Upsample:
        time_conv = None
        if self.w.has(prefix + "time_conv.weight"):
            time_conv = self.conv(prefix + "time_conv.", (3, 1, 1), channels)
            if time_conv.weight.shape[0] != 2 * channels:
                raise UnsupportedVAE(f"{prefix}time_conv makes {time_conv.weight.shape[0]} channels, not "
                                     f"2 x {channels}")
        weight = self.w.take(prefix + "resample.1.weight", 4)
        if tuple(weight.shape[1:]) != (channels, 3, 3):
            raise UnsupportedVAE(f"{prefix}resample.1.weight has shape {tuple(weight.shape)}")
        return Upsample(weight, self.w.take(prefix + "resample.1.bias", 1), time_conv, self.ops)

    def layer(self, prefix: str, channels: int):
        """The block stored under `prefix`, or None when there is none."""
        if self.w.has(prefix + "residual.0.gamma"):
            return self.residual(prefix, channels)
        if self.w.has(prefix + "norm.gamma"):
            return self.attention(prefix, channels)
        if self.w.has(prefix + "resample.1.weight"):
            return self.upsample(prefix, channels)
        return None

    def sequence(self, prefix: str, channels: int) -> tuple[list, int]:
        """The blocks `prefix0.`, `prefix1.`, … in order, and the channels that come out."""
        layers = []
        while (layer := self.layer(f"{prefix}{len(layers)}.", channels)) is not None:
            layers.append(layer)
            channels = out_channels(layer, channels)
        return layers, channels

    def up_group(self, prefix: str, channels: int) -> tuple[UpGroup, int]:
        layers, out = self.sequence(prefix + "upsamples.", channels)
        upsamplers = [layer for layer in layers if isinstance(layer, Upsample)]
        if not layers or len(upsamplers) > 1 or (upsamplers and layers[-1] is not upsamplers[0]):
            raise UnsupportedVAE(f"{prefix} is not residual blocks followed by at most one upsampler")
        shortcut = None
        if upsamplers:
            factor_t = 2 if upsamplers[0].time_conv is not None else 1
            factor = factor_t * 2 * 2
            if out * factor % channels or upsamplers[0].in_channels != out:
                raise UnsupportedVAE(f"{prefix}'s shortcut can't fold {channels} channels into {out}")
            shortcut = DupUp(out, factor_t, 2, out * factor // channels, self.ops)
        return UpGroup(layers, shortcut), out


def out_channels(layer, channels: int) -> int:
    if isinstance(layer, ResidualBlock):
        return layer.conv2.weight.shape[0]
    if isinstance(layer, Upsample):
        return layer.out_channels
    return channels


def build_decoder(weights: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype,
                  features: frozenset, channels_last: Optional[bool] = None) -> WanDecoder:
    """Our decoder from decoder weights in ComfyUI's layout (weights.decoder_weights); UnsupportedVAE if they
    are not a Wan 2.1 / 2.2 decoder."""
    device = torch.device(device)
    ops = Ops.choose(device, features, channels_last)
    with torch.inference_mode():
        builder = _Builder(_Weights(weights, device, dtype), ops)
        pre_conv = builder.conv("conv2.", (1, 1, 1))
        latent_channels = pre_conv.weight.shape[0]
        conv_in = builder.conv("decoder.conv1.", (3, 3, 3), latent_channels)
        channels = conv_in.weight.shape[0]
        middle, channels = builder.sequence("decoder.middle.", channels)
        if builder.w.has("decoder.upsamples.0.upsamples.0.residual.0.gamma"):  # Wan 2.2: nested up blocks
            family, ups = "wan2.2", []
            while builder.w.has(f"decoder.upsamples.{len(ups)}.upsamples.0.residual.0.gamma"):
                group, channels = builder.up_group(f"decoder.upsamples.{len(ups)}.", channels)
                ups.append(group)
            upsamplers = [layer for group in ups for layer in group.layers if isinstance(layer, Upsample)]
        else:
            family = "wan2.1"
            ups, channels = builder.sequence("decoder.upsamples.", channels)
            upsamplers = [layer for layer in ups if isinstance(layer, Upsample)]
        head = Head(builder.norm("decoder.head.0.gamma", channels),
                    builder.conv("decoder.head.2.", (3, 3, 3), channels), ops)
        left_over = builder.w.left_over()
    if left_over:
        raise UnsupportedVAE(f"weights we don't recognise: {', '.join(left_over[:4])}"
                             + (f" and {len(left_over) - 4} more" if len(left_over) > 4 else ""))
    return WanDecoder(_architecture(family, latent_channels, head, upsamplers), pre_conv, conv_in, middle + ups,
                      head, builder.slots, ops, device, dtype)


def _architecture(family: str, latent_channels: int, head: Head, upsamplers: list[Upsample]) -> Architecture:
    colours = head.conv.weight.shape[0]
    patch = {3: 1, 12: 2}.get(colours)
    if patch is None or (family == "wan2.1") != (patch == 1):
        raise UnsupportedVAE(f"the decoder makes {colours} channels, not RGB video (3, or 12 in 2x2 patches)")
    temporal = sum(upsampler.time_conv is not None for upsampler in upsamplers)
    if temporal != 2:
        raise UnsupportedVAE(f"the decoder upsamples time {2 ** temporal}x; Wan VAEs upsample it 4x")
    return Architecture(family, latent_channels, 2 ** len(upsamplers) * patch, patch)
