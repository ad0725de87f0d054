"""Wan's RMS norm over channels, scaled by gamma (and bias), optionally followed by SiLU, in one pass.

Both libraries compute `F.normalize(x, dim=1) * sqrt(C) * gamma (+ bias)` and then SiLU as separate kernels:
about six reads and writes of the activation in bf16 eager (normalize alone is norm, clamp, expand, divide).
The Triton kernel reads it once and writes it once, in float32 inside, and can write straight into a slice of a
bigger buffer (the causal conv's input with its two cached frames in front), which saves the concatenation too.

Layouts: any 5-D tensor whose time, height and width flatten to one stride ("positions"), which covers
contiguous NCDHW (positions stride 1) and channels_last_3d (channels stride 1), and temporal slices of either.
Anything else, no Triton, or a CPU tensor takes the torch fallback, which is the same arithmetic in float32.
Portable Triton only (no TMA or wgmma): sm_80, sm_90 and sm_120 alike.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .triton_support import HAVE_TRITON, triton_takes

if HAVE_TRITON:  # pragma: no cover - depends on the install
    import triton
    import triton.language as tl

EPS = 1e-12  # F.normalize's default


def rms_norm_silu_reference(x: torch.Tensor, gamma: torch.Tensor, bias: Optional[torch.Tensor], scale: float,
                            silu: bool = True, out: Optional[torch.Tensor] = None,
                            input_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The fallback: ComfyUI's / diffusers' expression, in float32 (as diffusers normalises), cast back."""
    channels, dtype = x.shape[1], x.dtype
    shape = (1, channels) + (1,) * (x.dim() - 2)
    x = x.float() if input_bias is None else x.float() + input_bias.to(x.device, torch.float32).reshape(shape)
    y = F.normalize(x, dim=1, eps=EPS) * scale * gamma.to(x.device, torch.float32).reshape(shape)
    if bias is not None:
        y = y + bias.to(x.device, torch.float32).reshape(shape)
    if silu:
        y = F.silu(y)
    if out is None:
        return y.to(dtype)
    out.copy_(y)
    return out


def _position_stride(t: torch.Tensor) -> Optional[int]:
    """The single stride that walks (T, H, W) in order, or None if they don't flatten to one."""
    _, _, frames, height, width = t.shape
    _, _, s_t, s_h, s_w = t.stride()
    stride = s_w if width > 1 else (s_h if height > 1 else s_t)
    if width > 1 and s_w != stride:
        return None
    if height > 1 and s_h != width * stride:
        return None
    if frames > 1 and s_t != height * width * stride:
        return None
    return stride


def _use_triton(x: torch.Tensor, out: Optional[torch.Tensor]) -> bool:
    return (triton_takes(x) and x.dim() == 5
            and x.shape[1] <= 4096 and _position_stride(x) is not None
            and (out is None or _position_stride(out) is not None))


def rms_norm_silu(x: torch.Tensor, gamma: torch.Tensor, bias: Optional[torch.Tensor], scale: float,
                  silu: bool = True, out: Optional[torch.Tensor] = None,
                  input_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`silu(normalize(x + input_bias, dim=1) * scale * gamma + bias)` for `[N, C, T, H, W]`; into `out` if given.

    `input_bias` (per channel) is the bias of the convolution that made `x`, added here in float32 instead of in
    a pass of its own over the conv's output."""
    if out is not None and out.shape != x.shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, x {tuple(x.shape)}")
    if not _use_triton(x, out):
        return rms_norm_silu_reference(x, gamma, bias, scale, silu, out, input_bias)
    if out is None:
        out = torch.empty_like(x)  # keeps x's layout (channels_last_3d stays so)
    batch, channels = x.shape[:2]
    positions = x.shape[2] * x.shape[3] * x.shape[4]
    gamma = gamma.reshape(-1).to(device=x.device, dtype=torch.float32).contiguous()
    bias_arg = gamma if bias is None else bias.reshape(-1).to(device=x.device, dtype=torch.float32).contiguous()
    input_bias_arg = gamma if input_bias is None else input_bias.reshape(-1).to(
        device=x.device, dtype=torch.float32).contiguous()
    block_c = triton.next_power_of_2(channels)
    block_p = max(1, 4096 // block_c)
    grid = (triton.cdiv(positions, block_p), batch)
    _rms_norm_silu_kernel[grid](
        x, out, gamma, bias_arg, input_bias_arg, positions, channels,
        x.stride(0), x.stride(1), _position_stride(x),
        out.stride(0), out.stride(1), _position_stride(out),
        float(scale), EPS,
        HAS_BIAS=bias is not None, HAS_INPUT_BIAS=input_bias is not None, SILU=silu, BLOCK_C=block_c,
        BLOCK_P=block_p,
        num_warps=8 if block_c >= 512 else 4)
    return out


if HAVE_TRITON:  # pragma: no cover - runs on a GPU only

    @triton.jit
    def _rms_norm_silu_kernel(x_ptr, out_ptr, gamma_ptr, bias_ptr, input_bias_ptr, positions, channels,
                              sx_n, sx_c, sx_p, so_n, so_c, so_p, scale, eps,
                              HAS_BIAS: tl.constexpr, HAS_INPUT_BIAS: tl.constexpr, SILU: tl.constexpr,
                              BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
        pid = tl.program_id(0)
        n = tl.program_id(1).to(tl.int64)
        p = (pid * BLOCK_P + tl.arange(0, BLOCK_P)).to(tl.int64)
        c = tl.arange(0, BLOCK_C)
        c_ok = c < channels
        mask = (p[:, None] < positions) & c_ok[None, :]
        x = tl.load(x_ptr + n * sx_n + p[:, None] * sx_p + c[None, :] * sx_c, mask=mask, other=0.0)
        x = x.to(tl.float32)
        if HAS_INPUT_BIAS:  # padding channels get 0: they must not count in the norm
            x += tl.load(input_bias_ptr + c, mask=c_ok, other=0.0)[None, :]
        norm = tl.sqrt(tl.sum(x * x, axis=1))
        inv = 1.0 / tl.maximum(norm, eps)
        g = tl.load(gamma_ptr + c, mask=c_ok, other=0.0) * scale
        y = x * inv[:, None] * g[None, :]
        if HAS_BIAS:
            y += tl.load(bias_ptr + c, mask=c_ok, other=0.0)[None, :]
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(out_ptr + n * so_n + p[:, None] * so_p + c[None, :] * so_c, y.to(out_ptr.dtype.element_ty),
                 mask=mask)
