"""Fast mode's GPU kernels against their references, and the patched decoders against exact mode. Run on a GPU."""

import numpy as np
import pytest
import torch

from streamvae.decoders import decoder_for
from streamvae.fast import FEATURES, fast_kernels, is_patched
from streamvae.kernels import HAVE_TRITON, add_channel_bias_, rms_norm_silu, rms_norm_silu_reference

from conftest import latent_for, tiny_diffusers_vae

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device)")]


def _relative_error(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.skipif(not HAVE_TRITON, reason="needs Triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "slice"])
@pytest.mark.parametrize("channels", [12, 96, 384, 1024])
@pytest.mark.parametrize("with_input_bias", [False, True])
def test_triton_norm_matches_reference(dtype, layout, channels, with_input_bias):
    generator = torch.Generator(device="cuda").manual_seed(channels)
    x = torch.randn(1, channels, 3, 9, 17, device="cuda", generator=generator).to(dtype)
    gamma = 1 + 0.1 * torch.randn(channels, 1, 1, 1, device="cuda", generator=generator)
    bias = 0.1 * torch.randn(channels, 1, 1, 1, device="cuda", generator=generator)
    input_bias = torch.randn(channels, device="cuda", generator=generator) if with_input_bias else None
    if layout != "contiguous":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    out = None
    if layout == "slice":  # poisoned buffer: every element of the slice must be written, nothing else
        buffer = torch.full((1, channels, 5, 9, 17), float("nan"), device="cuda", dtype=dtype)
        buffer = buffer.contiguous(memory_format=torch.channels_last_3d)
        out = buffer[:, :, 2:]
    result = rms_norm_silu(x, gamma, bias, channels ** 0.5, out=out, input_bias=input_bias)
    reference = rms_norm_silu_reference(x.double(), gamma.double(), bias.double(), channels ** 0.5,
                                        input_bias=input_bias)
    assert not torch.isnan(result).any()
    assert _relative_error(result, reference) < (1e-5 if dtype == torch.float32 else 1e-2)
    if layout == "slice":
        assert torch.isnan(buffer[:, :, :2]).all()


@pytest.mark.skipif(not HAVE_TRITON, reason="needs Triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 96, 3, 9, 17), (4, 192, 9, 17), (1, 3, 2, 5, 7)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_triton_channel_bias_matches_reference(dtype, shape, with_residual):
    generator = torch.Generator(device="cuda").manual_seed(shape[1])
    memory_format = torch.channels_last_3d if len(shape) == 5 else torch.channels_last
    out = torch.randn(shape, device="cuda", generator=generator).to(dtype).contiguous(memory_format=memory_format)
    residual = torch.randn(shape, device="cuda", generator=generator).to(dtype).contiguous(
        memory_format=memory_format) if with_residual else None
    bias = torch.randn(shape[1], device="cuda", generator=generator).to(dtype)
    channel = (1, -1) + (1,) * (len(shape) - 2)
    reference = out.double() + bias.double().reshape(channel) + (residual.double() if with_residual else 0)
    result = add_channel_bias_(out, bias, residual)
    assert result.data_ptr() == out.data_ptr()  # in place
    assert _relative_error(result, reference) < (1e-6 if dtype == torch.float32 else 1e-2)


def _uint8(x):
    return ((x.float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).cpu()


def _psnr(a, b):
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


@pytest.mark.parametrize("arch", ["wan2.1", "wan2.2"])
def test_fast_decode_close_to_exact_and_restored(arch):
    """bf16 on the GPU. The tiny models' own bf16 rounding is large (exact mode is ~46 dB from an fp32 decode for
    the 8-channel Wan 2.1 one), so besides fast vs exact the test asks that fast mode stays as close to the fp32
    decode as exact mode is. Full-size PSNR is measured by the benchmark (docs/benchmarks.md)."""
    vae = tiny_diffusers_vae(arch)
    latent = latent_for(vae, latent_frames=5, height=16, width=24)
    with torch.inference_mode():
        truth = _uint8(torch.cat(list(decoder_for(vae, latent).chunks(latent)), 2))  # fp32, CPU
    vae = vae.to("cuda", torch.bfloat16)
    latent = latent.cuda()
    decoder = decoder_for(vae, latent)
    module = decoder.parts.decoder
    strides = [p.stride() for p in module.parameters()]
    weights = [p.detach().clone() for p in module.parameters()]
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    with torch.inference_mode():
        exact = torch.cat(list(decoder.chunks(latent)), 2)
        before = torch.cuda.memory_allocated()
        with fast_kernels(module, decoder.device, FEATURES):
            assert is_patched(module)
            # Channels-last weights replace the old ones rather than sit beside them; what is added is the
            # sub-pixel convs' folded kernels (16/9 of the upsampling convs: 4-7% of a Wan decoder's weights).
            assert torch.cuda.memory_allocated() - before < 0.15 * weight_bytes
            fast = torch.cat(list(decoder.chunks(latent)), 2)
    assert [p.stride() for p in module.parameters()] == strides
    assert all(torch.equal(p, w) for p, w in zip(module.parameters(), weights))
    assert not any("forward" in m.__dict__ for m in module.modules())
    exact, fast = _uint8(exact), _uint8(fast)
    assert _psnr(fast, truth) >= _psnr(exact, truth) - 0.5
    # Exact mode is itself only ~46 dB from the fp32 decode here, and the two round differently, so fast vs exact
    # sits a little lower (44.8 dB for Wan 2.1 with every feature on an H200); a broken patch gives noise (< 30).
    assert _psnr(fast, exact) >= 44


@pytest.mark.parametrize("features", [{"taps"}, {"taps", "bias"}], ids="+".join)
def test_temporal_taps_on_the_gpu(features):
    """`taps` at the width it is used at (96 channels), bf16, channels-last, against cuDNN's 3-D conv; with
    `bias`, the bias added by the Triton kernel afterwards."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    from streamvae import fast

    torch.manual_seed(6)
    conv = WanCausalConv3d(96, 96, 3, padding=1).to("cuda", torch.bfloat16)
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(1, 96, 4, 40, 72, device="cuda", dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    cache = torch.randn(1, 96, 2, 40, 72, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        expected = conv(x, cache)
        patches = fast._Patches()
        fast._patch_causal_conv(conv, patches, torch.channels_last_3d, frozenset(features))
        try:
            got = conv(x, cache)
        finally:
            patches.undo()
    assert _relative_error(got, expected) < 1e-2


@pytest.mark.skipif(not HAVE_TRITON, reason="needs Triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_subpixel_interleave_matches_the_copies(dtype):
    """The one-pass interleave (+ bias) against the four strided copies, on the same phase images; odd sizes."""
    from streamvae.kernels import upsample_conv

    generator = torch.Generator(device="cuda").manual_seed(9)
    phases = torch.randn(3, 4 * 12, 6, 8, device="cuda", generator=generator).to(dtype)
    phases = phases.contiguous(memory_format=torch.channels_last)
    bias = torch.randn(12, device="cuda", generator=generator).to(dtype).repeat(4)
    plain = upsample_conv._interleave_triton(phases, None, 12)
    assert plain.shape == (3, 12, 10, 14) and plain.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, upsample_conv._interleave_torch(phases, 12, torch.channels_last))
    with_bias = upsample_conv._interleave_triton(phases, bias, 12)
    expected = upsample_conv._interleave_torch(phases.double() + bias.double().reshape(1, -1, 1, 1), 12,
                                               torch.channels_last)
    assert _relative_error(with_bias, expected) < (1e-7 if dtype == torch.float32 else 1e-2)


@pytest.mark.skipif(not HAVE_TRITON, reason="needs Triton")
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("channels", [(16, 16, 2, 2), (16, 8, 1, 2), (8, 16, 2, 2)], ids=str)
def test_triton_dup_up_matches_the_reference(memory_format, channels):
    """Wan 2.2's DupUp3D shuffle (in, out, factor_t, factor_s): a copy, so bit for bit."""
    from streamvae.kernels.dup_up import dup_up, dup_up_reference

    in_channels, out_channels, factor_t, factor_s = channels
    repeats = out_channels * factor_t * factor_s * factor_s // in_channels
    x = torch.randn(2, in_channels, 3, 5, 7, device="cuda").to(torch.bfloat16).contiguous(memory_format=memory_format)
    got = dup_up(x, out_channels, factor_t, factor_s, repeats)
    assert got.shape == (2, out_channels, 3 * factor_t, 5 * factor_s, 7 * factor_s)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(got, dup_up_reference(x, out_channels, factor_t, factor_s, repeats))
