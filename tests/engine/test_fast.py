"""Fast mode's patches compute what the originals compute (fp32, CPU: the fallback path) and are always undone."""

import pytest
import torch

from streamvae import iter_frames
from streamvae.decoders import decoder_for
from streamvae.fast import FEATURES, fast_kernels, is_patched, with_fast_kernels
from streamvae.kernels import rms_norm_silu, rms_norm_silu_reference

from support.tiny_vaes import cpu_decoder_of_comfy_model, latent_for
from support.videos import relative_error as _relative_error


def _state(module):
    """Everything a patch may touch: instance dicts (forward, padding) and parameter storages and strides."""
    dicts = {name: dict(sub.__dict__) for name, sub in module.named_modules()}
    params = {name: (p.data_ptr(), p.stride()) for name, p in module.named_parameters()}
    return dicts, params


def _assert_restored(module, before):
    dicts, params = _state(module)
    assert params == before[1]
    assert dicts.keys() == before[0].keys()
    for name, attributes in dicts.items():
        assert attributes.keys() == before[0][name].keys(), name
        assert attributes.get("padding") == before[0][name].get("padding"), name
        assert "forward" not in attributes, name
    assert not is_patched(module)


def _chunks(decoder, latent, features=None, memory_format=None):
    with torch.inference_mode():
        if features is None:
            return torch.cat(list(decoder.chunks(latent)), 2)
        with fast_kernels(decoder.parts.decoder, decoder.device, features, memory_format=memory_format):
            return torch.cat(list(decoder.chunks(latent)), 2)


FEATURE_SETS = [frozenset({"conv"}), FEATURES]


def _assert_fast_equals_exact(decoder, latent, features):
    """Fast mode's chunks match exact mode's, and the model is left exactly as it was."""
    before = _state(decoder.parts.decoder)
    exact = _chunks(decoder, latent)
    fast = _chunks(decoder, latent, features)
    _assert_restored(decoder.parts.decoder, before)
    assert fast.shape == exact.shape
    assert _relative_error(fast, exact) < 1e-5
    assert torch.equal(_chunks(decoder, latent), exact)  # and the model decodes as before


@pytest.mark.parametrize("features", FEATURE_SETS, ids=lambda f: "+".join(sorted(f)))
def test_diffusers_fast_equals_exact(diffusers_vae, features):
    latent = latent_for(diffusers_vae, latent_frames=3)
    _assert_fast_equals_exact(decoder_for(diffusers_vae, latent), latent, features)


@pytest.mark.parametrize("features", FEATURE_SETS, ids=lambda f: "+".join(sorted(f)))
def test_comfy_fast_equals_exact(comfy_wan_model, features):
    latent = torch.randn(1, comfy_wan_model.z_dim, 3, 4, 6, generator=torch.Generator().manual_seed(3))
    _assert_fast_equals_exact(cpu_decoder_of_comfy_model(comfy_wan_model), latent, features)


def test_channels_last_buffers_on_cpu(diffusers_vae):
    """The CUDA layout (channels_last_3d buffers, strided slices into them) through the fallback."""
    latent = latent_for(diffusers_vae, latent_frames=3)
    decoder = decoder_for(diffusers_vae, latent)
    exact = _chunks(decoder, latent)
    fast = _chunks(decoder, latent, FEATURES, memory_format=torch.channels_last_3d)
    assert _relative_error(fast, exact) < 1e-5


def _patched_forwards(module):
    return sum("forward" in sub.__dict__ for sub in module.modules())


def test_every_hot_module_is_patched(diffusers_vae, comfy_wan_model):
    """The patches find what they look for in both libraries (a silent no-op would pass the equality tests)."""
    for model, decoder_module in ((diffusers_vae, diffusers_vae.decoder), (comfy_wan_model, comfy_wan_model.decoder)):
        blocks = [m for m in decoder_module.modules() if type(m).__name__ in ("ResidualBlock", "WanResidualBlock")]
        convs = [m for m in decoder_module.modules() if type(m).__name__ in ("CausalConv3d", "WanCausalConv3d")]
        with fast_kernels(decoder_module, torch.device("cpu")):
            assert all("forward" in b.__dict__ for b in blocks), type(model)
            assert all("forward" in c.__dict__ and c.padding[0] == 0 for c in convs)
            resamples = [m for m in decoder_module.modules() if type(m).__name__ in ("Resample", "WanResample")]
            assert resamples and all("forward" in r.__dict__ for r in resamples)
            upsamplers = [r.resample for r in resamples if r.mode in ("upsample2d", "upsample3d")]
            assert upsamplers and all("forward" in layers.__dict__ for layers in upsamplers)  # `subpixel`
            dups = [m for m in decoder_module.modules() if type(m).__name__ == "DupUp3D"]
            assert all("forward" in d.__dict__ for d in dups)
            assert _patched_forwards(decoder_module) >= (len(blocks) + len(convs) + len(resamples) + len(upsamplers)
                                                          + 2)  # + head
        assert _patched_forwards(decoder_module) == 0


def test_patch_undone_on_error_and_on_close(wan21_vae):
    latent = latent_for(wan21_vae, latent_frames=4)
    decoder = decoder_for(wan21_vae, latent)
    module = decoder.parts.decoder
    before = _state(module)
    with pytest.raises(RuntimeError, match="boom"):
        with fast_kernels(module, torch.device("cpu")):
            assert is_patched(module)
            raise RuntimeError("boom")
    _assert_restored(module, before)

    # A consumer that stops early (cancel): closing the generator undoes the patch.
    with torch.inference_mode():
        chunks = with_fast_kernels(decoder.chunks(latent), module, decoder.device)
        next(chunks)
        assert is_patched(module)
        chunks.close()
    _assert_restored(module, before)

    # An error inside the decoder mid-decode, surfacing through the chunk iterator.
    block = next(m for m in module.modules() if type(m).__name__ == "WanResidualBlock")
    calls = []

    def explode(_module, _args):
        calls.append(1)
        if len(calls) > 2:  # the third chunk
            raise RuntimeError("mid-decode")

    handle = block.register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="mid-decode"), torch.inference_mode():
            for _ in with_fast_kernels(decoder.chunks(latent), module, decoder.device):
                pass
    finally:
        handle.remove()
    _assert_restored(module, before)


def test_nested_decodes_share_one_patch(wan21_vae):
    module = wan21_vae.decoder
    before = _state(module)
    with fast_kernels(module, torch.device("cpu")):
        with fast_kernels(module, torch.device("cpu")):
            assert is_patched(module)
        assert is_patched(module)  # the inner exit must not undo what the outer decode still uses
    _assert_restored(module, before)


def test_unknown_feature_is_refused(wan21_vae):
    with pytest.raises(ValueError, match="unknown fast-mode features"):
        with fast_kernels(wan21_vae.decoder, torch.device("cpu"), {"warp"}):
            pass


def test_iter_frames_fast_mode_on_cpu(wan21_vae):
    latent = latent_for(wan21_vae, latent_frames=3)
    exact = torch.cat(list(iter_frames(wan21_vae, latent, mode="exact"))).int()
    fast = torch.cat(list(iter_frames(wan21_vae, latent, mode="fast"))).int()
    assert (exact - fast).abs().max() <= 1
    assert _patched_forwards(wan21_vae.decoder) == 0


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "slice"])
@pytest.mark.parametrize("bias", [False, True])
def test_rms_norm_silu_matches_the_libraries(layout, bias):
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 12, 3, 5, 7, generator=generator)
    gamma = 1 + 0.1 * torch.randn(12, 1, 1, 1, generator=generator)
    beta = 0.1 * torch.randn(12, 1, 1, 1, generator=generator) if bias else None
    expected = torch.nn.functional.silu(torch.nn.functional.normalize(x, dim=1) * 12 ** 0.5 * gamma
                                        + (beta if bias else 0))
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    out = None
    if layout == "slice":
        buffer = torch.full((2, 12, 5, 5, 7), float("nan")).contiguous(memory_format=torch.channels_last_3d)
        out = buffer[:, :, 2:]
    result = rms_norm_silu(x, gamma, beta, 12 ** 0.5, silu=True, out=out)
    torch.testing.assert_close(result, expected)
    if layout == "slice":
        assert result.data_ptr() == out.data_ptr() and torch.isnan(buffer[:, :, :2]).all()
    no_silu = rms_norm_silu_reference(x, gamma, beta, 12 ** 0.5, silu=False)
    torch.testing.assert_close(torch.nn.functional.silu(no_silu), expected)


def test_rms_norm_silu_adds_the_input_bias_first():
    """The bias of the conv before the norm, added inside it: the same as adding it to the input beforehand."""
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(1, 12, 2, 5, 7, generator=generator)
    gamma = 1 + 0.1 * torch.randn(12, 1, 1, 1, generator=generator)
    conv_bias = torch.randn(12, generator=generator)
    expected = rms_norm_silu(x + conv_bias.reshape(1, -1, 1, 1, 1), gamma, None, 12 ** 0.5)
    torch.testing.assert_close(rms_norm_silu(x, gamma, None, 12 ** 0.5, input_bias=conv_bias), expected)


def test_cuda_choices_on_cpu(diffusers_vae):
    """What CUDA gets (channels-last 3-D and 2-D weights, channels-last buffers), run through the CPU kernels."""
    from streamvae import fast

    latent = latent_for(diffusers_vae, latent_frames=3)
    decoder = decoder_for(diffusers_vae, latent)
    before = _state(decoder.parts.decoder)
    exact = _chunks(decoder, latent)
    patches = fast._Patches()
    with torch.inference_mode():
        fast._install(decoder.parts.decoder, patches, FEATURES, True, torch.channels_last_3d)
        try:
            assert any(p.dim() == 5 and not p.is_contiguous() for p in decoder.parts.decoder.parameters())
            got = torch.cat(list(decoder.chunks(latent)), 2)
        finally:
            patches.undo()
    _assert_restored(decoder.parts.decoder, before)
    assert _relative_error(got, exact) < 1e-5


@pytest.mark.parametrize("library", ["diffusers", "comfy"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("cached", [0, 1, 2])
@pytest.mark.parametrize("features", [{"taps"}, {"taps", "bias"}, {"bias"}], ids="+".join)
def test_temporal_taps_conv_equals_the_causal_conv(request, library, memory_format, cached, features):
    """`taps` (three 2-D convs, one per temporal tap) on a 96-channel causal conv, the width it is used at, and
    `bias` (the conv without its bias, the bias added after)."""
    from streamvae import fast

    if library == "diffusers":
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d as Conv
    else:
        comfy = request.getfixturevalue("comfy")
        Conv = comfy.ldm.wan.vae.CausalConv3d
    torch.manual_seed(5)
    conv = Conv(96, 96, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn_like(conv.weight) / 50)
        conv.bias.copy_(torch.randn_like(conv.bias) / 50)
    conv.weight.data = conv.weight.data.contiguous(memory_format=memory_format)
    x = torch.randn(1, 96, 3, 5, 7).contiguous(memory_format=memory_format)
    cache = torch.randn(1, 96, cached, 5, 7) if cached else None
    with torch.no_grad():
        expected = conv(x, cache)
        patches = fast._Patches()
        parts = fast._patch_causal_conv(conv, patches, memory_format, frozenset(features))
        try:
            assert fast._taps_apply(conv) and parts.time_pad == 2
            assert (parts.bias is not None) == ("bias" in features)
            got = conv(x, cache)
        finally:
            patches.undo()
        assert torch.equal(conv(x, cache), expected)  # undone
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_features_can_be_disabled_from_the_environment(wan21_vae, monkeypatch):
    from streamvae import fast

    monkeypatch.setenv(fast.DISABLE_ENV, "taps, resample")
    assert fast.default_features() == FEATURES - {"taps", "resample"}
    with fast_kernels(wan21_vae.decoder, torch.device("cpu")):
        assert not any("forward" in m.__dict__ for m in wan21_vae.decoder.modules()
                       if type(m).__name__ == "WanResample")
    monkeypatch.setenv(fast.DISABLE_ENV, "warp")
    with pytest.raises(ValueError, match="STREAMVAE_FAST_DISABLE"):
        fast.default_features()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_subpixel_conv_equals_upsample_then_conv(memory_format, with_bias, mode):
    """Odd sizes, so every edge phase and the padding are exercised; float64, so only the folding is compared."""
    from streamvae.kernels import SubpixelUpsampleConv

    generator = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, 7, 9, generator=generator, dtype=torch.float64).contiguous(memory_format=memory_format)
    weight = torch.randn(4, 5, 3, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(4, generator=generator, dtype=torch.float64) if with_bias else None
    upsampled = torch.nn.functional.interpolate(x, scale_factor=2.0, mode=mode)
    expected = torch.nn.functional.conv2d(upsampled, weight, bias, 1, 1)
    got = SubpixelUpsampleConv(weight, bias, memory_format)(x)
    assert got.shape == expected.shape == (3, 4, 14, 18)
    assert got.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_subpixel_patch_leaves_other_upsamplers_alone():
    """Only nearest 2x + 3x3/stride 1/padding 1 is folded; anything else keeps its own forward."""
    from streamvae import fast

    nn = torch.nn
    cases = {"folded": nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                     nn.Conv2d(4, 2, 3, padding=1)),
             "bilinear": nn.Sequential(nn.Upsample(scale_factor=2.0, mode="bilinear"), nn.Conv2d(4, 2, 3, padding=1)),
             "scale 3": nn.Sequential(nn.Upsample(scale_factor=3.0), nn.Conv2d(4, 2, 3, padding=1)),
             "5x5": nn.Sequential(nn.Upsample(scale_factor=2.0), nn.Conv2d(4, 2, 5, padding=2)),
             "strided": nn.Sequential(nn.Upsample(scale_factor=2.0), nn.Conv2d(4, 2, 3, stride=2, padding=1))}
    patches = fast._Patches()
    for layers in cases.values():
        fast._patch_upsample_conv(layers, patches, torch.contiguous_format)
    try:
        assert {name for name, layers in cases.items() if "forward" in layers.__dict__} == {"folded"}
        x = torch.randn(1, 4, 5, 6)
        with torch.no_grad():
            expected = cases["folded"][1](cases["folded"][0](x))
            torch.testing.assert_close(cases["folded"](x), expected, rtol=1e-5, atol=1e-6)
    finally:
        patches.undo()
    assert not any("forward" in layers.__dict__ for layers in cases.values())
