"""Fast mode on cuDNN: the patched decoders against exact mode, and `taps` against the 3-D conv. Run on a GPU.
The Triton kernels alone are checked in test_triton_kernels.py."""

import pytest
import torch

from streamvae.decoders import decoder_for
from streamvae.fast import FEATURES, fast_kernels, is_patched

from support.tiny_vaes import latent_for, tiny_diffusers_vae
from support.videos import psnr as _psnr
from support.videos import relative_error as _relative_error

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device)")]


def _uint8(x):
    return ((x.float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).cpu()


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
