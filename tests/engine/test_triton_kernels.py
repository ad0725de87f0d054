"""Fast mode's Triton kernels against their references, on a GPU, or on the CPU through Triton's interpreter
(test_triton_interpreted.py runs this module so on machines without a GPU, CI among them).

Each test also asserts that the Triton path was taken: a silent fallback would compare the reference with itself.
"""

import pytest
import torch

from streamvae.kernels import channel_bias, rms_norm, upsample_conv
from streamvae.kernels.channel_bias import add_channel_bias_
from streamvae.kernels.dup_up import dup_up, dup_up_reference
from streamvae.kernels.rms_norm import rms_norm_silu, rms_norm_silu_reference
from streamvae.kernels.triton_support import HAVE_TRITON, INTERPRETED, triton_takes
from support.videos import relative_error as _relative_error

DEVICE = "cpu" if INTERPRETED else "cuda"
# Marked cuda so `-m cuda` selects it on a card; on the CPU, test_triton_interpreted.py runs it through Triton's
# interpreter.
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not HAVE_TRITON or not (INTERPRETED or torch.cuda.is_available()),
    reason="needs Triton, and a CUDA GPU or TRITON_INTERPRET=1 (test_triton_interpreted.py runs it so)")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "slice"])
@pytest.mark.parametrize("channels", [12, 96, 384, 1024])
@pytest.mark.parametrize("with_input_bias", [False, True])
def test_triton_norm_matches_reference(dtype, layout, channels, with_input_bias):
    generator = torch.Generator(device=DEVICE).manual_seed(channels)
    x = torch.randn(1, channels, 3, 9, 17, device=DEVICE, generator=generator).to(dtype)
    gamma = 1 + 0.1 * torch.randn(channels, 1, 1, 1, device=DEVICE, generator=generator)
    bias = 0.1 * torch.randn(channels, 1, 1, 1, device=DEVICE, generator=generator)
    input_bias = torch.randn(channels, device=DEVICE, generator=generator) if with_input_bias else None
    if layout != "contiguous":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    out = None
    if layout == "slice":  # poisoned buffer: every element of the slice must be written, nothing else
        buffer = torch.full((1, channels, 5, 9, 17), float("nan"), device=DEVICE, dtype=dtype)
        buffer = buffer.contiguous(memory_format=torch.channels_last_3d)
        out = buffer[:, :, 2:]
    assert rms_norm._use_triton(x, out)
    result = rms_norm_silu(x, gamma, bias, channels ** 0.5, out=out, input_bias=input_bias)
    reference = rms_norm_silu_reference(x.double(), gamma.double(), bias.double(), channels ** 0.5,
                                        input_bias=input_bias)
    assert not torch.isnan(result).any()
    assert _relative_error(result, reference) < (1e-5 if dtype == torch.float32 else 1e-2)
    if layout == "slice":
        assert torch.isnan(buffer[:, :, :2]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 96, 3, 9, 17), (4, 192, 9, 17), (1, 3, 2, 5, 7)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_triton_channel_bias_matches_reference(dtype, shape, with_residual):
    generator = torch.Generator(device=DEVICE).manual_seed(shape[1])
    memory_format = torch.channels_last_3d if len(shape) == 5 else torch.channels_last
    out = torch.randn(shape, device=DEVICE, generator=generator).to(dtype).contiguous(memory_format=memory_format)
    residual = torch.randn(shape, device=DEVICE, generator=generator).to(dtype).contiguous(
        memory_format=memory_format) if with_residual else None
    bias = torch.randn(shape[1], device=DEVICE, generator=generator).to(dtype)
    channel = (1, -1) + (1,) * (len(shape) - 2)
    reference = out.double() + bias.double().reshape(channel) + (residual.double() if with_residual else 0)
    assert channel_bias._use_triton(out, bias, residual)
    result = add_channel_bias_(out, bias, residual)
    assert result.data_ptr() == out.data_ptr()  # in place
    assert _relative_error(result, reference) < (1e-6 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_subpixel_interleave_matches_the_copies(dtype):
    """The one-pass interleave (+ bias) against the four strided copies, on the same phase images; odd sizes."""
    generator = torch.Generator(device=DEVICE).manual_seed(9)
    phases = torch.randn(3, 4 * 12, 6, 8, device=DEVICE, generator=generator).to(dtype)
    phases = phases.contiguous(memory_format=torch.channels_last)
    bias = torch.randn(12, device=DEVICE, generator=generator).to(dtype).repeat(4)
    assert upsample_conv._use_triton(phases, torch.channels_last)
    plain = upsample_conv._interleave_triton(phases, None, 12)
    assert plain.shape == (3, 12, 10, 14) and plain.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, upsample_conv._interleave_torch(phases, 12, torch.channels_last))
    with_bias = upsample_conv._interleave_triton(phases, bias, 12)
    expected = upsample_conv._interleave_torch(phases.double() + bias.double().reshape(1, -1, 1, 1), 12,
                                               torch.channels_last)
    assert _relative_error(with_bias, expected) < (1e-7 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("channels", [(16, 16, 2, 2), (16, 8, 1, 2), (8, 16, 2, 2)], ids=str)
def test_triton_dup_up_matches_the_reference(memory_format, channels):
    """Wan 2.2's DupUp3D shuffle (in, out, factor_t, factor_s): a copy, so bit for bit."""
    in_channels, out_channels, factor_t, factor_s = channels
    repeats = out_channels * factor_t * factor_s * factor_s // in_channels
    x = torch.randn(2, in_channels, 3, 5, 7, device=DEVICE).to(torch.bfloat16).contiguous(memory_format=memory_format)
    assert triton_takes(x)
    got = dup_up(x, out_channels, factor_t, factor_s, repeats)
    assert got.shape == (2, out_channels, 3 * factor_t, 5 * factor_s, 7 * factor_s)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(got, dup_up_reference(x, out_channels, factor_t, factor_s, repeats))


@pytest.mark.parametrize("arch", ["wan2.1", "wan2.2"])
def test_our_decoder_with_its_kernels_matches_its_fallbacks(arch, monkeypatch):
    """Fast mode's decoder, channels-last, with every Triton kernel against the same decoder with none (float32;
    no TF32, so that only the kernels differ)."""
    from support.tiny_vaes import latent_for, tiny_diffusers_vae

    from streamvae.decoders import FastWanChunkDecoder
    from streamvae.wan_decoder import FEATURES, build_decoder, decoder_weights

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    vae = tiny_diffusers_vae(arch)
    latent = latent_for(vae, latent_frames=2, height=2, width=3)
    weights = decoder_weights(vae)
    kernel_features = {"norm", "bias", "subpixel", "dupup"}
    outputs = {}
    for name, features in (("kernels", FEATURES), ("fallbacks", FEATURES - kernel_features)):
        decoder = build_decoder(weights, torch.device(DEVICE), torch.float32, features, channels_last=True)
        assert decoder.ops.describe(torch.device("cuda")) == ("triton" if name == "kernels" else "torch")
        outputs[name] = torch.cat(list(FastWanChunkDecoder(decoder).chunks(latent)), 2)
    assert _relative_error(outputs["kernels"], outputs["fallbacks"]) < 1e-5
