"""Fast mode: faster kernels for the Wan decoders, patched in for one decode and undone afterwards.

The model belongs to ComfyUI (or to a diffusers pipeline) and is shared with other nodes, so nothing here edits a
library or a class: each change is an attribute set on one module instance (a `forward`, a conv's `padding`, a
weight's storage layout) and recorded, and every record is put back when the decode ends, fails or is cancelled.
Nested or concurrent decodes of the same model share one set of patches (reference counted).

What fast mode changes, per feature (`FEATURES`; each was measured alone, docs/benchmarks.md "Fast decode kernels"):

- `layout`: on CUDA, 3-D conv weights in channels_last_3d and 2-D ones in channels_last (cuDNN then keeps the
  activations channels-last).
- `conv`: every causal conv builds its input in one allocation (zeros | cached frames | new frames) and lets the
  convolution pad height and width itself (`padding=(0, p, p)`), instead of `torch.cat` and then `F.pad`, two
  full copies of every conv input. Zero padding inside the conv is the same arithmetic.
- `norm`: the residual blocks' RMS norm + SiLU in one Triton kernel (streamvae/kernels) that writes straight into
  the conv's input buffer behind the cached frames, so norm, SiLU and concatenation cost one read and one write;
  the head's norm + SiLU too; the residual add happens in place. Float32 inside, like diffusers' norm.
- `upsample`: diffusers' nearest upsample without its float32 round trip (nearest copies values: bit-identical).
- `resample`: the upsampling blocks (and Wan 2.2's DupUp3D shortcut) keep channels-last: the temporal interleave
  is one permute-copy in that layout and DupUp3D's channel-to-space shuffle one Triton pass (streamvae/kernels),
  where the originals' `torch.stack` and `.contiguous()` turned activations back to NCDHW, which made the next
  norm, add and conv re-lay them out.
- `taps`: 3x3x3 convs with 96-128 channels in and out (Wan 2.1's full-resolution level) as three 2-D convs over
  the frames, one per temporal tap, summed in place: cuDNN's 2-D kernels run the 96-channel ones ~30% faster on
  an H200 than its 3-D ones. Partial sums round to bf16 once more each.
- `bias`: causal convs run without their bias, which is then added by one vectorised kernel (streamvae/kernels),
  together with the residual add where one follows, or by the norm that reads the conv's output next (a residual
  block's first conv): PyTorch adds a cuDNN conv's bias as a separate broadcast add that runs at about a third of
  memory bandwidth on channels-last activations.
- `subpixel`: the upsampling blocks' nearest 2x upsample + 3x3 conv as one convolution of the small image with
  folded 2x2 kernels, phases interleaved afterwards (streamvae/kernels/upsample_conv.py): 2.25x fewer FLOPs and no
  upsampled tensor. The folded kernels round to bf16 once, so this is not bit-identical.

Measured (H200, bf16, chunk loop only, 2026-11-26): Wan 2.1 1280x720x161 8.28 s eager -> 4.01 s, Wan 2.2
1280x704x121 5.88 s -> 3.67 s with the first six features; with `bias` and `subpixel` too, 3.31 s and 3.20 s
(later runs, each feature against the rest). PSNR vs exact 47.9 / 50.5 dB. Per-feature numbers in
docs/benchmarks.md.

Causal-cache slots of patched residual blocks hold two frames always (a zero frame in front after the first
chunk), which is the same convolution input the original one-frame entry plus zero padding gives; the slots are
read by no one else. Outputs differ from exact mode only by rounding (bf16 PSNR >= 45 dB at full size, measured;
the tests check each patch against the original module).
On CPU, and on CUDA without Triton, the norm falls back to plain torch with the same arithmetic.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import types
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kernels import SubpixelUpsampleConv, add_channel_bias_, dup_up, rms_norm_silu

FEATURES = frozenset({"layout", "conv", "norm", "upsample", "resample", "taps", "bias", "subpixel"})
DISABLE_ENV = "STREAMVAE_FAST_DISABLE"  # e.g. "taps" or "taps,resample": to compare on a card not measured here
CACHE_T = 2  # frames each causal conv carries into the next step (both libraries)

_CAUSAL_CONVS = ("CausalConv3d", "WanCausalConv3d")
_NORMS = ("RMS_norm", "WanRMS_norm")


@contextlib.contextmanager
def fast_kernels(module: nn.Module, device: torch.device, features: Optional[Iterable[str]] = None, *,
                 memory_format: Optional[torch.memory_format] = None) -> Iterator[None]:
    """Patch `module` (a Wan Decoder3d / WanDecoder3d) for the duration of the block; undone on any exit.

    `memory_format` of the conv input buffers: channels_last_3d on CUDA, contiguous elsewhere, unless given.
    """
    features = default_features() if features is None else frozenset(features)
    unknown = features - FEATURES
    if unknown:
        raise ValueError(f"unknown fast-mode features {sorted(unknown)}; known: {sorted(FEATURES)}")
    cuda = torch.device(device).type == "cuda"
    with _LOCK:
        entry = _ACTIVE.get(module)
        if entry is None:
            patches = _Patches()
            try:
                _install(module, patches, features, cuda, memory_format)
            except BaseException:
                patches.undo()
                raise
            _ACTIVE[module] = entry = [patches, 0]
        entry[1] += 1
    try:
        yield
    finally:
        with _LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                del _ACTIVE[module]
                entry[0].undo()


def with_fast_kernels(chunks: Iterator[torch.Tensor], module: nn.Module, device: torch.device,
                      features: Optional[Iterable[str]] = None) -> Iterator[torch.Tensor]:
    """Iterate `chunks` with fast_kernels active; the patches are undone when the iteration ends or is closed."""
    with fast_kernels(module, device, features):
        yield from chunks


def default_features() -> frozenset:
    """FEATURES less those named in $STREAMVAE_FAST_DISABLE (comma-separated)."""
    disabled = {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}
    unknown = disabled - FEATURES
    if unknown:
        raise ValueError(f"${DISABLE_ENV} names unknown fast-mode features {sorted(unknown)}; known: "
                         f"{sorted(FEATURES)}")
    return FEATURES - disabled


def is_patched(module: nn.Module) -> bool:
    return module in _ACTIVE


_LOCK = threading.Lock()
_ACTIVE: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


class _Patches:
    """Instance attributes set for the decode, with what to put back (in reverse order)."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def set(self, obj: object, name: str, value: object) -> None:
        had = name in obj.__dict__
        old = obj.__dict__.get(name)
        object.__setattr__(obj, name, value)
        if had:
            self._undo.append(lambda: object.__setattr__(obj, name, old))
        else:
            self._undo.append(lambda: object.__delattr__(obj, name))

    def relayout(self, parameter: nn.Parameter, memory_format: torch.memory_format) -> None:
        """Re-lay a weight out for the decode (outside inference mode: the new storage must stay a normal tensor,
        usable for autograd afterwards).

        On the GPU the old storage is let go and undo copies the weight back into its old strides: keeping it
        would hold every weight twice in VRAM for the whole decode (1.0 GiB more for Wan 2.2's decoder, measured).
        Elsewhere (weights in host memory, maybe pinned by the host program) the old storage itself is put back.
        """
        with torch.inference_mode(False), torch.no_grad():
            old = parameter.data
            parameter.data = old.contiguous(memory_format=memory_format)
        if parameter.data.data_ptr() == old.data_ptr():
            return  # already in that layout: nothing changed
        if old.is_cuda:
            strides = old.stride()
            del old
            self._undo.append(lambda: _restore_strides(parameter, strides))
        else:
            self._undo.append(lambda: _restore_data(parameter, old))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


def _restore_data(parameter: nn.Parameter, old: torch.Tensor) -> None:
    with torch.inference_mode(False), torch.no_grad():
        parameter.data = old


def _restore_strides(parameter: nn.Parameter, strides: tuple) -> None:
    with torch.inference_mode(False), torch.no_grad():
        current = parameter.data
        restored = torch.empty_strided(current.shape, strides, dtype=current.dtype, device=current.device)
        restored.copy_(current)
        parameter.data = restored


def _install(module: nn.Module, patches: _Patches, features: frozenset, cuda: bool,
             memory_format: Optional[torch.memory_format]) -> None:
    if memory_format is None:
        memory_format = torch.channels_last_3d if cuda else torch.contiguous_format
    if cuda and "layout" in features:
        for parameter in module.parameters():
            if parameter.dim() == 5:  # only 3-D conv weights (Module.to refuses channels_last_3d for biases)
                patches.relayout(parameter, torch.channels_last_3d)
        for sub in module.modules():
            if isinstance(sub, nn.Conv2d) and sub.weight.dim() == 4:
                patches.relayout(sub.weight, torch.channels_last)
    if "conv" not in features:
        return  # the norm patch writes into the conv's input buffer, so it needs the conv patch
    convs = {}
    for sub in module.modules():
        if _is_causal_conv(sub):
            convs[sub] = _patch_causal_conv(sub, patches, memory_format, features)
    if "norm" in features:
        for sub in module.modules():
            _patch_residual_block(sub, convs, patches, memory_format)
            _patch_head(sub, patches)
    if "upsample" in features:
        for sub in module.modules():
            if type(sub).__name__ == "WanUpsample" and isinstance(sub, nn.Upsample):
                patches.set(sub, "forward", types.MethodType(nn.Upsample.forward, sub))
    if "resample" in features:
        for sub in module.modules():
            _patch_resample(sub, patches)
            _patch_dup_up(sub, patches)
    if "subpixel" in features:
        for sub in module.modules():
            _patch_upsample_conv(sub, patches, torch.channels_last if cuda else torch.contiguous_format)


# ---------------------------------------------------------------------------------------------- causal convs

def _is_causal_conv(sub: nn.Module) -> bool:
    if type(sub).__name__ not in _CAUSAL_CONVS or not isinstance(sub, nn.Conv3d):
        return False
    padding = getattr(sub, "_padding", None)
    params = set(inspect.signature(type(sub).forward).parameters) - {"self"}
    return (isinstance(padding, tuple) and len(padding) == 6 and padding[5] == 0 and padding[0] == padding[1]
            and padding[2] == padding[3] and tuple(sub.padding) == (0, 0, 0) and sub.padding_mode == "zeros"
            and params <= {"x", "cache_x", "cache_list", "cache_idx"})


@dataclass(frozen=True)
class _CausalConv:
    """A patched causal conv's parts for the residual-block patch: the convolution of an already padded input
    (without the bias when `bias` is set, so the bias can ride along with what follows), and its time padding."""

    convolve: Callable[[torch.Tensor], torch.Tensor]
    time_pad: int
    bias: Optional[torch.Tensor]

    def __call__(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        return add_channel_bias_(self.convolve(x), self.bias, residual)


def _patch_causal_conv(conv: nn.Conv3d, patches: _Patches, memory_format: torch.memory_format,
                       features: frozenset) -> _CausalConv:
    """The conv pads height and width itself and takes its time padding from one preallocated buffer."""
    pad_w, _, pad_h, _, time_pad, _ = conv._padding
    conv_only = super(type(conv), conv).forward  # ComfyUI's ops.Conv3d (weight casting) or nn.Conv3d
    patches.set(conv, "padding", (0, pad_h, pad_w))
    split_bias = "bias" in features and conv.bias is not None and _plain_weights(conv)
    if "taps" in features and _taps_apply(conv):
        conv_only = _temporal_taps(conv, conv_only, with_bias=not split_bias)
    elif split_bias:
        conv_only = _without_bias(conv)
    parts = _CausalConv(conv_only, time_pad, conv.bias if split_bias else None)

    def forward(x, cache_x=None, cache_list=None, cache_idx=None):
        if cache_list is not None:  # ComfyUI's calling convention: the conv takes (and clears) its cache slot
            cache_x = cache_list[cache_idx]
            cache_list[cache_idx] = None
        if time_pad > 0:
            buffer = _history_buffer(x, cache_x, time_pad, memory_format)
            buffer[:, :, time_pad:].copy_(x)
            x = buffer
        return parts(x)

    patches.set(conv, "forward", forward)
    return parts


def _plain_weights(conv: nn.Conv3d) -> bool:
    """The module's weight and bias are used as stored (not ComfyUI's cast-on-the-fly or LoRA-patched weights)."""
    return (not getattr(conv, "comfy_cast_weights", False) and not getattr(conv, "weight_function", None)
            and not getattr(conv, "bias_function", None))


def _without_bias(conv: nn.Conv3d) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x):
        return F.conv3d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    return forward


# Measured on an H200 (cuDNN 9.19): 96 -> 96 channels 6.30 ms as one 3-D conv, 4.37 ms as three 2-D ones; at 192 and
# 256 channels the 3-D conv wins, and for Wan 2.1's 96 -> 3 output conv too (2.35 vs 2.57 ms). Below 96 channels it
# wasn't measured, so it isn't used there (and there each conv carries a larger share of the extra bf16 rounding:
# a tiny 8-32-channel model fell under 45 dB with it).
TAPS_MIN_CHANNELS, TAPS_MAX_CHANNELS = 96, 128


def _taps_apply(conv: nn.Conv3d) -> bool:
    return (tuple(conv.kernel_size) == (3, 3, 3) and conv._padding[4] == 2 and tuple(conv.stride) == (1, 1, 1)
            and tuple(conv.dilation) == (1, 1, 1) and conv.groups == 1
            and TAPS_MIN_CHANNELS <= conv.in_channels <= TAPS_MAX_CHANNELS
            and TAPS_MIN_CHANNELS <= conv.out_channels <= TAPS_MAX_CHANNELS and _plain_weights(conv))


def _temporal_taps(conv: nn.Conv3d, conv_only: Callable, with_bias: bool) -> Callable:
    """A 3x3x3 conv over `[1, C, T+2, H, W]` as sum over k of conv2d(frames k..k+T-1, weight[:, :, k])."""
    padding = tuple(conv.padding[1:])
    as_3d = conv_only if with_bias else _without_bias(conv)  # for inputs the 2-D convs don't take

    def forward(x):
        if x.shape[0] != 1 or x.dtype != conv.weight.dtype or x.device != conv.weight.device:
            return as_3d(x)
        frames = x[0].transpose(0, 1)  # [T+2, C, H, W]; channels-last 2-D when x is channels_last_3d
        count = x.shape[2] - 2
        weight = conv.weight
        out = F.conv2d(frames[0:count], weight[:, :, 0], conv.bias if with_bias else None, 1, padding)
        out.add_(F.conv2d(frames[1:count + 1], weight[:, :, 1], None, 1, padding))
        out.add_(F.conv2d(frames[2:count + 2], weight[:, :, 2], None, 1, padding))
        return out.unsqueeze(0).transpose(1, 2)  # [1, C_out, T, H, W]

    return forward


def _history_buffer(x: torch.Tensor, cache: Optional[torch.Tensor], time_pad: int,
                    memory_format: torch.memory_format) -> torch.Tensor:
    """`[zeros | cached frames]` followed by room for x's frames, in one allocation.

    Same values as the libraries' `F.pad(torch.cat([cache, x], 2), (0, 0, 0, 0, time_pad - len(cache), 0))`.
    """
    batch, channels, frames, height, width = x.shape
    buffer = torch.empty((batch, channels, time_pad + frames, height, width), dtype=x.dtype, device=x.device,
                         memory_format=memory_format)
    cached = 0 if cache is None else min(cache.shape[2], time_pad)
    if cached < time_pad:
        buffer[:, :, :time_pad - cached].zero_()
    if cached:
        buffer[:, :, time_pad - cached:time_pad].copy_(cache[:, :, -cached:])
    return buffer


# -------------------------------------------------------------------------------------------- resampling

def _interleave_time(x: torch.Tensor, channels: int) -> torch.Tensor:
    """`[b, 2c, t, h, w]` -> `[b, c, 2t, h, w]` with frame 2i from the first half of the channels and 2i+1 from the
    second (the libraries' reshape + stack), computed as one copy in channels-last order."""
    b, _, t, h, w = x.shape
    y = x.permute(0, 2, 3, 4, 1).reshape(b, t, h, w, 2, channels).permute(0, 1, 4, 2, 3, 5)
    return y.reshape(b, 2 * t, h, w, channels).permute(0, 4, 1, 2, 3)


def _patch_resample(resample: nn.Module, patches: _Patches) -> None:
    if type(resample).__name__ not in ("Resample", "WanResample"):
        return
    mode = getattr(resample, "mode", None)
    layers = getattr(resample, "resample", None)
    if mode not in ("upsample2d", "upsample3d") or not isinstance(layers, nn.Sequential):
        return
    if not {"x", "feat_cache", "feat_idx"} <= set(inspect.signature(type(resample).forward).parameters):
        return
    time_conv = getattr(resample, "time_conv", None)
    if mode == "upsample3d" and time_conv is None:
        return
    original = types.MethodType(type(resample).forward, resample)

    def forward(x, feat_cache=None, feat_idx=[0]):  # noqa: B006 - the libraries' own signature
        if feat_cache is None and mode == "upsample3d":
            return original(x, feat_cache, feat_idx)
        b, c, t, h, w = x.size()
        if mode == "upsample3d":
            idx = feat_idx[0]
            cached = feat_cache[idx]
            if cached is None:
                feat_cache[idx] = "Rep"  # first chunk: no temporal upsampling (the libraries' marker)
                feat_idx[0] += 1
            else:
                rep = isinstance(cached, str)
                cache_x = x[:, :, -CACHE_T:].clone()
                if cache_x.shape[2] < 2:
                    previous = torch.zeros_like(cache_x) if rep else cached[:, :, -1:].to(cache_x.device)
                    cache_x = torch.cat([previous, cache_x], dim=2)
                x = time_conv(x) if rep else time_conv(x, cached)
                feat_cache[idx] = cache_x
                feat_idx[0] += 1
                x = _interleave_time(x, c)
        frames = x.shape[2]
        y = layers(x.permute(0, 2, 1, 3, 4).reshape(b * frames, c, h, w))
        return y.reshape(b, frames, y.shape[1], y.shape[2], y.shape[3]).permute(0, 2, 1, 3, 4)

    patches.set(resample, "forward", forward)


def _patch_upsample_conv(layers: nn.Module, patches: _Patches, memory_format: torch.memory_format) -> None:
    """An upsampling block's `Sequential(nearest 2x upsample, 3x3 conv)` as one sub-pixel convolution."""
    if not isinstance(layers, nn.Sequential) or len(layers) != 2:
        return
    upsample, conv = layers
    if not (isinstance(upsample, nn.Upsample) and upsample.size is None
            and upsample.mode in ("nearest", "nearest-exact")  # the same pixels at an integer scale
            and tuple(upsample.scale_factor if isinstance(upsample.scale_factor, tuple)
                      else (upsample.scale_factor,) * 2) == (2.0, 2.0)):
        return
    if not (isinstance(conv, nn.Conv2d) and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and _plain_weights(conv)):
        return
    with torch.no_grad():
        subpixel = SubpixelUpsampleConv(conv.weight, conv.bias, memory_format)
    original = types.MethodType(type(layers).forward, layers)

    def forward(x):
        if x.dim() != 4 or x.dtype != subpixel.weight.dtype or x.device != subpixel.weight.device:
            return original(x)
        return subpixel(x)

    patches.set(layers, "forward", forward)


def _patch_dup_up(dup: nn.Module, patches: _Patches) -> None:
    """Wan 2.2's DupUp3D shortcut (repeat channels, then channels to time and space), channels-last, one pass."""
    if type(dup).__name__ != "DupUp3D":
        return
    try:
        out_channels, factor_t, factor_s, repeats = dup.out_channels, dup.factor_t, dup.factor_s, dup.repeats
    except AttributeError:
        return

    def forward(x, first_chunk=False):
        y = dup_up(x, out_channels, factor_t, factor_s, repeats)
        return y[:, :, factor_t - 1:] if first_chunk else y

    patches.set(dup, "forward", forward)


# ----------------------------------------------------------------------------------------- residual blocks

def _norm_args(norm: nn.Module) -> Optional[tuple]:
    if type(norm).__name__ not in _NORMS or not getattr(norm, "channel_first", False):
        return None
    gamma = getattr(norm, "gamma", None)
    bias = getattr(norm, "bias", None)
    if not isinstance(gamma, torch.Tensor) or gamma.dim() != 4:  # images=False: (C, 1, 1, 1)
        return None
    if not isinstance(bias, torch.Tensor):
        if bias not in (None, 0, 0.0):
            return None
        bias = None
    return gamma, bias, float(norm.scale)


def _norm_silu_into_history(x: torch.Tensor, norm_args: tuple, time_pad: int, feat_cache: list, feat_idx: list,
                            memory_format: torch.memory_format,
                            input_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The next conv's input: norm + SiLU of `x` (+ `input_bias`, the bias of the conv that made it) written behind
    the cached frames; the cache slot updated."""
    idx = feat_idx[0]
    buffer = _history_buffer(x, feat_cache[idx], time_pad, memory_format)
    gamma, bias, scale = norm_args
    rms_norm_silu(x, gamma, bias, scale, silu=True, out=buffer[:, :, time_pad:], input_bias=input_bias)
    feat_cache[idx] = buffer[:, :, -CACHE_T:].clone()
    feat_idx[0] += 1
    return buffer


def _patch_residual_block(block: nn.Module, convs: dict, patches: _Patches,
                          memory_format: torch.memory_format) -> None:
    name = type(block).__name__
    params = set(inspect.signature(type(block).forward).parameters)
    if not {"x", "feat_cache", "feat_idx"} <= params:
        return
    if name == "ResidualBlock" and isinstance(getattr(block, "residual", None), nn.Sequential):  # ComfyUI
        layers = list(block.residual)
        kinds = [type(layer).__name__ for layer in layers]
        if kinds != ["RMS_norm", "SiLU", "CausalConv3d", "RMS_norm", "SiLU", "Dropout", "CausalConv3d"]:
            return
        norm1, conv1, norm2, dropout, conv2 = layers[0], layers[2], layers[3], layers[5], layers[6]
        shortcut = block.shortcut
    elif name == "WanResidualBlock":  # diffusers
        if not isinstance(getattr(block, "nonlinearity", None), nn.SiLU):
            return
        norm1, conv1, norm2, dropout, conv2 = block.norm1, block.conv1, block.norm2, block.dropout, block.conv2
        shortcut = block.conv_shortcut
    else:
        return
    args1, args2 = _norm_args(norm1), _norm_args(norm2)
    if args1 is None or args2 is None or conv1 not in convs or conv2 not in convs:
        return
    if not isinstance(dropout, nn.Dropout) or convs[conv1].time_pad == 0 or convs[conv2].time_pad == 0:
        return
    conv1_parts, conv2_parts = convs[conv1], convs[conv2]
    original = types.MethodType(type(block).forward, block)

    def forward(x, feat_cache=None, feat_idx=[0]):  # noqa: B006 - the libraries' own signature
        if feat_cache is None or block.training:
            return original(x, feat_cache, feat_idx)
        h = conv1_parts.convolve(_norm_silu_into_history(x, args1, conv1_parts.time_pad, feat_cache, feat_idx,
                                                         memory_format))
        h = _norm_silu_into_history(h, args2, conv2_parts.time_pad, feat_cache, feat_idx, memory_format,
                                    input_bias=conv1_parts.bias)  # conv1's bias rides along with the norm
        return conv2_parts(h, residual=shortcut(x))  # the bias and the residual add in one pass

    patches.set(block, "forward", forward)


def _patch_head(decoder: nn.Module, patches: _Patches) -> None:
    """The decoder's last norm + SiLU as one kernel; its SiLU module becomes the identity while patched."""
    head = getattr(decoder, "head", None)
    if type(decoder).__name__ == "Decoder3d" and isinstance(head, nn.Sequential) and len(head) >= 2:  # ComfyUI
        norm, silu = head[0], head[1]
    elif type(decoder).__name__ == "WanDecoder3d" and hasattr(decoder, "norm_out"):  # diffusers
        norm, silu = decoder.norm_out, getattr(decoder, "nonlinearity", None)
    else:
        return
    args = _norm_args(norm)
    if args is None or not isinstance(silu, nn.SiLU):
        return
    gamma, bias, scale = args

    def norm_forward(x):
        if x.dim() != 5:
            return F.silu(type(norm).forward(norm, x))
        return rms_norm_silu(x, gamma, bias, scale, silu=True)

    patches.set(norm, "forward", norm_forward)
    patches.set(silu, "forward", _identity)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
