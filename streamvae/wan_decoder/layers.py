"""The Wan decoder's layers as plain functions of their weights: no nn.Module, no autograd, no host code.

Each layer is called as `layer(x, state, first)` on the frames of one step: `state` is the stream's list of causal
histories (one slot per causal conv that looks back in time), `first` is True on the stream's first step, when the
temporal upsamplers pass their single frame through (the Wan VAEs' "Rep" rule: their time conv first runs on the
second step, with a history of zeros, and the first frame never enters it).

Arithmetic, as in ComfyUI's `comfy/ldm/wan/vae.py` and `vae2_2.py` and diffusers' `autoencoder_kl_wan.py`:
- causal conv: the input is prefixed with the last two frames this conv saw (zeros before the first), height and
  width zero-padded by the conv; 1x1x1 convs have no history;
- RMS norm: `normalize(x, dim=channels) * sqrt(C) * gamma` (computed in float32 here);
- residual block: `conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x)`;
- attention: one head over each frame's pixels, `x + proj(attention(qkv(norm(x))))`;
- upsampler: (temporal: the time conv doubles the channels, channel halves become frames 2t and 2t+1), then per
  frame a nearest-exact 2x upsample and a 3x3 conv;
- Wan 2.2's up block adds a DupUp3D shortcut: channels repeated and folded into time and space; on the first step
  its first `factor_t - 1` frames are dropped, as the models do.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..kernels import SubpixelUpsampleConv, add_channel_bias_
from .ops import Ops

HISTORY = 2  # frames a 3-tap causal conv carries into the next step
TAPS_CHANNELS = range(96, 129)  # where three 2-D convs beat cuDNN's 3-D conv (H200, cuDNN 9.19, measured)


class Norm:
    """RMS norm over channels (no bias: the Wan VAEs' decoder norms have none)."""

    def __init__(self, gamma: torch.Tensor):
        self.gamma = gamma.reshape(-1).float()  # float32 once, as the kernels take it
        self.scale = self.gamma.numel() ** 0.5


class CausalConv:
    """A 3-D conv, causal in time, with its history of input frames kept in the stream's state (slot `slot`)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, ops: Ops, slot: Optional[int]):
        self.ops = ops
        self.weight = weight.contiguous(memory_format=ops.format_3d)
        self.bias = bias
        self.bias32 = bias.float()  # for the kernels that add it in float32
        self.looks_back = weight.shape[2] > 1  # a time kernel of 3 (build.py checks), else 1
        self.slot = slot
        self.padding = (0, weight.shape[3] // 2, weight.shape[4] // 2)
        self.tap_weights = self._tap_weights() if ops.taps else None

    def _tap_weights(self) -> Optional[list[torch.Tensor]]:
        out_channels, in_channels, kt, kh, kw = self.weight.shape
        if (kt, kh, kw) != (3, 3, 3) or out_channels not in TAPS_CHANNELS or in_channels not in TAPS_CHANNELS:
            return None
        return [self.weight[:, :, tap].contiguous(memory_format=self.ops.format_2d) for tap in range(3)]

    def input_buffer(self, x: torch.Tensor, state: list) -> torch.Tensor:
        """`[history | room for x's frames]`, one allocation; the caller fills the room, then calls `remember`."""
        batch, channels, frames, height, width = x.shape
        buffer = torch.empty((batch, channels, HISTORY + frames, height, width), dtype=x.dtype, device=x.device,
                             memory_format=self.ops.format_3d)
        history = state[self.slot]
        if history is None:
            buffer[:, :, :HISTORY].zero_()
        else:
            buffer[:, :, :HISTORY].copy_(history)
        return buffer

    def remember(self, buffer: torch.Tensor, state: list) -> None:
        """Keep the buffer's last two frames as the history of the next step."""
        last = buffer[:, :, -HISTORY:]
        if state[self.slot] is None:
            state[self.slot] = last.clone()
        else:
            state[self.slot].copy_(last)

    def __call__(self, x: torch.Tensor, state: list, with_bias: bool = True) -> torch.Tensor:
        """The conv of x's frames (copied behind the history, which is then updated)."""
        if not self.looks_back:
            return F.conv3d(x, self.weight, self.bias if with_bias else None)
        buffer = self.input_buffer(x, state)
        buffer[:, :, HISTORY:].copy_(x)
        self.remember(buffer, state)
        return self.convolve(buffer, with_bias)

    def convolve(self, buffer: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
        """The conv of a filled input buffer `[history | frames]`: one output frame per new frame."""
        bias = self.bias if with_bias else None
        if self.tap_weights is not None and buffer.shape[0] == 1:
            return self._convolve_taps(buffer, bias)
        return F.conv3d(buffer, self.weight, bias, 1, self.padding)

    def _convolve_taps(self, buffer: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        frames = buffer[0].transpose(0, 1)  # [T+2, C, H, W]: channels-last 2-D when the buffer is channels_last_3d
        count = buffer.shape[2] - HISTORY
        out = F.conv2d(frames[0:count], self.tap_weights[0], bias, 1, self.padding[1:])
        out.add_(F.conv2d(frames[1:count + 1], self.tap_weights[1], None, 1, self.padding[1:]))
        out.add_(F.conv2d(frames[2:count + 2], self.tap_weights[2], None, 1, self.padding[1:]))
        return out.unsqueeze(0).transpose(1, 2)  # [1, C_out, T, H, W]


class ResidualBlock:
    def __init__(self, norm1: Norm, conv1: CausalConv, norm2: Norm, conv2: CausalConv,
                 shortcut: Optional[CausalConv], ops: Ops):
        self.norm1, self.conv1, self.norm2, self.conv2, self.shortcut, self.ops = (
            norm1, conv1, norm2, conv2, shortcut, ops)
        # With `bias`, the shortcut conv's bias joins conv2's, both added in the one pass with the residual.
        self.out_bias32 = conv2.bias32 if shortcut is None else conv2.bias32 + shortcut.bias32

    def __call__(self, x: torch.Tensor, state: list, first: bool) -> torch.Tensor:
        split = self.ops.split_bias  # conv1's bias then rides along with norm2, conv2's with the residual add
        h = self._norm_conv(x, self.norm1, self.conv1, state, with_bias=not split)
        h = self._norm_conv(h, self.norm2, self.conv2, state, with_bias=not split,
                            input_bias=self.conv1.bias32 if split else None)
        residual = x if self.shortcut is None else self.shortcut(x, state, with_bias=not split)
        if split:
            return add_channel_bias_(h, self.out_bias32, residual)
        return h.add_(residual)

    def _norm_conv(self, x: torch.Tensor, norm: Norm, conv: CausalConv, state: list, with_bias: bool,
                   input_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """conv(silu(norm(x))), the norm written straight into the conv's input buffer."""
        buffer = conv.input_buffer(x, state)
        self.ops.norm_silu(x, norm.gamma, None, norm.scale, silu=True, out=buffer[:, :, HISTORY:],
                           input_bias=input_bias)
        conv.remember(buffer, state)
        return conv.convolve(buffer, with_bias)


class Attention:
    """Single-head self-attention over each frame's pixels, with a residual."""

    def __init__(self, norm: Norm, qkv_weight: torch.Tensor, qkv_bias: torch.Tensor, proj_weight: torch.Tensor,
                 proj_bias: torch.Tensor, ops: Ops):
        self.norm, self.ops = norm, ops
        self.qkv_weight = qkv_weight.contiguous(memory_format=ops.format_2d)
        self.proj_weight = proj_weight.contiguous(memory_format=ops.format_2d)
        self.qkv_bias, self.proj_bias = qkv_bias, proj_bias

    def __call__(self, x: torch.Tensor, state: list, first: bool) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        normed = self.ops.norm_silu(x, self.norm.gamma, None, self.norm.scale, silu=False)
        images = normed.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        q, k, v = F.conv2d(images, self.qkv_weight, self.qkv_bias).chunk(3, dim=1)
        q, k, v = (t.reshape(batch * frames, 1, channels, height * width).transpose(2, 3) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(2, 3).reshape(batch * frames, channels, height, width)
        out = F.conv2d(attended, self.proj_weight, self.proj_bias)
        return out.reshape(batch, frames, channels, height, width).permute(0, 2, 1, 3, 4).add_(x)


class Upsample:
    """2x in height and width (a 3x3 conv after a nearest-exact upsample), and 2x in time with a time conv."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, time_conv: Optional[CausalConv], ops: Ops):
        self.ops, self.time_conv, self.bias = ops, time_conv, bias
        self.out_channels, self.in_channels = weight.shape[:2]
        # One form of the weights is kept: the folded sub-pixel kernels, or the 3x3 conv's.
        self.subpixel = SubpixelUpsampleConv(weight, bias, ops.format_2d) if ops.subpixel else None
        self.weight = None if ops.subpixel else weight.contiguous(memory_format=ops.format_2d)

    def __call__(self, x: torch.Tensor, state: list, first: bool) -> torch.Tensor:
        if self.time_conv is not None and not first:
            x = _interleave_time(self.time_conv(x, state), x.shape[1])
        batch, channels, frames, height, width = x.shape
        images = x.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        if self.subpixel is not None:
            out = self.subpixel(images)
        else:
            out = F.conv2d(F.interpolate(images, scale_factor=2.0, mode="nearest-exact"), self.weight, self.bias,
                           1, 1)
        return out.reshape(batch, frames, *out.shape[1:]).permute(0, 2, 1, 3, 4)


def _interleave_time(x: torch.Tensor, channels: int) -> torch.Tensor:
    """`[b, 2c, t, h, w]` -> `[b, c, 2t, h, w]`: frame 2i from the first half of the channels, 2i+1 from the
    second (the models' reshape + stack), as one copy written in channels-last order."""
    b, _, t, h, w = x.shape
    y = x.permute(0, 2, 3, 4, 1).reshape(b, t, h, w, 2, channels).permute(0, 1, 4, 2, 3, 5)
    return y.reshape(b, 2 * t, h, w, channels).permute(0, 4, 1, 2, 3)


class DupUp:
    """Wan 2.2's DupUp3D shortcut: channels repeated, then folded into `factor_t` frames and `factor_s`^2 pixels."""

    def __init__(self, out_channels: int, factor_t: int, factor_s: int, repeats: int, ops: Ops):
        self.out_channels, self.factor_t, self.factor_s, self.repeats, self.ops = (
            out_channels, factor_t, factor_s, repeats, ops)

    def __call__(self, x: torch.Tensor, first: bool) -> torch.Tensor:
        y = self.ops.dup_up(x, self.out_channels, self.factor_t, self.factor_s, self.repeats)
        return y[:, :, self.factor_t - 1:] if first else y


class UpGroup:
    """Wan 2.2's up block: residual blocks and an upsampler, plus (except the last block) a DupUp3D shortcut."""

    def __init__(self, layers: list, shortcut: Optional[DupUp]):
        self.layers, self.shortcut = layers, shortcut

    def __call__(self, x: torch.Tensor, state: list, first: bool) -> torch.Tensor:
        main = x
        for layer in self.layers:
            main = layer(main, state, first)
        return main if self.shortcut is None else main.add_(self.shortcut(x, first))


class Head:
    """The decoder's last norm + SiLU and conv (to RGB, or to 12 channels that unpatchify to RGB)."""

    def __init__(self, norm: Norm, conv: CausalConv, ops: Ops):
        self.norm, self.conv, self.ops = norm, conv, ops

    def __call__(self, x: torch.Tensor, state: list, first: bool) -> torch.Tensor:
        buffer = self.conv.input_buffer(x, state)
        self.ops.norm_silu(x, self.norm.gamma, None, self.norm.scale, silu=True, out=buffer[:, :, HISTORY:])
        self.conv.remember(buffer, state)
        return self.conv.convolve(buffer)
