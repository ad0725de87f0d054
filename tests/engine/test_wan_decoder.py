"""Fast mode's own Wan decoder against the hosts' own decoders: same video in float32 (relative error <= 1e-5),
whichever library built the VAE, whatever thread decodes, and VAEs it can't take refused with the reason."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest
import torch

from streamvae import decoder_for
from streamvae.decoders import FastWanChunkDecoder, HostWanChunkDecoder
from streamvae.wan_decoder import FEATURES, UnsupportedVAE, cached_decoder, decoder_weights, load_wan_decoder
from streamvae.wan_decoder.features import DISABLE_ENV, enabled_features

from support.tiny_vaes import cpu_decoder_of_comfy_model, latent_for, tiny_diffusers_vae

TOLERANCE = 1e-5


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.double() - reference.double()).norm() / reference.double().norm()).item()


def own_chunks(source, latent: torch.Tensor, **options) -> list[torch.Tensor]:
    decoder = FastWanChunkDecoder(load_wan_decoder(source, **options))
    return list(decoder.chunks(latent))


def assert_same_video(chunks: list[torch.Tensor], reference: torch.Tensor, boundaries: list[int]) -> None:
    """Our chunks cover the reference frame for frame, at the models' chunk boundaries (1 frame, then 4)."""
    assert [chunk.shape[2] for chunk in chunks] == boundaries
    ours = torch.cat(chunks, 2)
    assert ours.shape == reference.shape
    assert relative_error(ours, reference) <= TOLERANCE
    start = 0
    for chunk in chunks:  # every chunk, not only the whole: a late chunk can't hide in the sum
        assert relative_error(chunk, reference[:, :, start:start + chunk.shape[2]]) <= TOLERANCE
        start += chunk.shape[2]


def test_diffusers_decode_matches(diffusers_vae):
    latent = latent_for(diffusers_vae, latent_frames=4)
    with torch.no_grad():
        reference = diffusers_vae.decode(latent).sample  # clamped to [-1, 1], as our uint8 conversion does
    chunks = [chunk.clamp(-1, 1) for chunk in own_chunks(diffusers_vae, latent)]
    assert_same_video(chunks, reference, [1, 4, 4, 4])


def test_diffusers_host_chunks_match_step_by_step(diffusers_vae):
    """Against the host's modules driven through the same chunk loop (exact mode): step for step."""
    latent = latent_for(diffusers_vae, latent_frames=3, seed=5)
    host = decoder_for(diffusers_vae, latent, "exact")
    assert isinstance(host, HostWanChunkDecoder)
    with torch.inference_mode():
        reference = torch.cat(list(host.chunks(latent)), 2)
    assert_same_video(own_chunks(diffusers_vae, latent), reference, [1, 4, 4])


def test_comfy_module_decode_matches(comfy_wan_model):
    """ComfyUI's WanVAE classes of the release at $COMFYUI_PATH (their decode steps 1-then-1 or 1-then-2 latent
    frames, depending on the release)."""
    latent = torch.randn(1, comfy_wan_model.z_dim, 4, 4, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = comfy_wan_model.decode(latent)
    assert_same_video(own_chunks(comfy_wan_model, latent), reference, [1, 4, 4, 4])
    host = cpu_decoder_of_comfy_model(comfy_wan_model)  # and the exact chunk loop over the same modules
    with torch.inference_mode():
        assert relative_error(torch.cat(list(host.chunks(latent)), 2), reference) == 0


@pytest.mark.parametrize("frames", [1, 2])
def test_short_videos_match(comfy_wan_model, frames):
    """One latent frame (newer ComfyUI then decodes without any cache) and an even count (its last step has one)."""
    latent = torch.randn(1, comfy_wan_model.z_dim, frames, 4, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = comfy_wan_model.decode(latent)
    assert_same_video(own_chunks(comfy_wan_model, latent), reference, [1, 4][:frames])


def test_comfy_vae_object_in_fast_mode(comfy):
    """ComfyUI's own VAE object (its loader and model management), full-width Wan 2.1: fast mode builds our
    decoder from it, and decodes what stock VAE Decode decodes."""
    from benchmarks.synthetic import random_comfy_wan_vae

    vae = random_comfy_wan_vae("wan2.1")
    latent = torch.randn(1, 16, 2, 2, 3, generator=torch.Generator().manual_seed(2))
    decoder = decoder_for(vae, latent, "fast")
    assert isinstance(decoder, FastWanChunkDecoder)
    assert decoder.name == "streamvae-wan2.1 fp32 (torch)"
    stock = vae.decode(latent).float()  # [1, T, H, W, 3] in [0, 1]
    ours = torch.clamp((torch.cat(list(decoder.chunks(latent)), 2).float() + 1) / 2, 0, 1).movedim(1, -1).cpu()
    assert relative_error(ours, stock.reshape(ours.shape)) <= TOLERANCE


def test_safetensors_file_and_state_dicts(comfy_wan_model, diffusers_vae, tmp_path):
    """A .safetensors path and a state dict in ComfyUI's layout; diffusers' layout converted to it."""
    from safetensors.torch import save_file

    path = tmp_path / "vae.safetensors"
    save_file({key: value.contiguous() for key, value in comfy_wan_model.state_dict().items()}, str(path))
    latent = torch.randn(1, comfy_wan_model.z_dim, 2, 4, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = comfy_wan_model.decode(latent)
    assert_same_video(own_chunks(str(path), latent), reference, [1, 4])
    assert_same_video(own_chunks(comfy_wan_model.state_dict(), latent), reference, [1, 4])
    converted = decoder_weights(diffusers_vae.state_dict())
    assert all(key.startswith(("conv2.", "decoder.")) for key in converted)
    assert "decoder.head.2.weight" in converted and "decoder.middle.1.to_qkv.weight" in converted


@pytest.mark.parametrize("disabled", sorted(FEATURES), ids=lambda name: f"without-{name}")
def test_each_feature_off_alone_still_matches(wan21_vae, disabled):
    latent = latent_for(wan21_vae, latent_frames=3)
    with torch.no_grad():
        reference = wan21_vae.decode(latent).sample
    chunks = own_chunks(wan21_vae, latent, features=FEATURES - {disabled})
    assert_same_video([chunk.clamp(-1, 1) for chunk in chunks], reference, [1, 4, 4])


def test_cuda_layout_through_the_cpu_fallbacks(diffusers_vae):
    """What CUDA gets (channels-last weights, activations and buffers; strided slices into them), on a CPU."""
    from streamvae.wan_decoder import build_decoder

    latent = latent_for(diffusers_vae, latent_frames=3)
    decoder = build_decoder(decoder_weights(diffusers_vae), torch.device("cpu"), torch.float32, FEATURES,
                            channels_last=True)
    assert decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        reference = diffusers_vae.decode(latent).sample
    chunks = [chunk.clamp(-1, 1) for chunk in FastWanChunkDecoder(decoder).chunks(latent)]
    assert_same_video(chunks, reference, [1, 4, 4])


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_inference_tensor_weights_decoded_from_a_plain_thread(comfy, mode):
    """What ComfyUI's server does: weights loaded under inference mode (inference tensors, parameters that
    require grad), the decode on another thread, outside inference mode and with grad enabled. Exact mode drives
    the host's own modules, fast mode our decoder: both must work there."""
    import comfy.ldm.wan.vae

    from benchmarks.synthetic import fill_random_weights_

    with torch.inference_mode():
        model = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                         temperal_downsample=[False, True, True], dropout=0.0)
        fill_random_weights_(model)
    assert all(parameter.is_inference() and parameter.requires_grad for parameter in model.parameters())
    latent = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        reference = model.decode(latent)
    result = {}

    def decode():
        try:
            with torch.enable_grad():
                assert not torch.is_inference_mode_enabled()
                decoder = (FastWanChunkDecoder(load_wan_decoder(model)) if mode == "fast"
                           else cpu_decoder_of_comfy_model(model))
                result["chunks"] = list(decoder.chunks(latent))
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            result["error"] = error

    thread = threading.Thread(target=decode)
    thread.start()
    thread.join()
    assert "error" not in result, result.get("error")
    # Exact mode yields the host's own pieces (2-frame ones on releases that step two latent frames at a time).
    host_pieces = [chunk.shape[2] for chunk in result["chunks"]]
    assert_same_video(result["chunks"], reference, [1, 4, 4] if mode == "fast" else host_pieces)


FAST_AGAINST_EXACT = """
import torch
from streamvae import iter_frames
from support.tiny_vaes import latent_for, tiny_diffusers_vae
vae = tiny_diffusers_vae("wan2.1")
latent = latent_for(vae, latent_frames=3)
exact = torch.cat(list(iter_frames(vae, latent, mode="exact"))).int()
fast = torch.cat(list(iter_frames(vae, latent, mode="fast"))).int()
print(int((exact - fast).abs().max()))
"""


def test_fast_mode_end_to_end_is_close_to_exact():
    """In a process of its own, as a decode starts in a fresh ComfyUI. In one pytest process after the whole engine
    suite the largest difference has reached 4 on ComfyUI 0.8.0 and 0.33.0 (1 when run alone or after any half of
    the suite); what carries over between tests is not found yet."""
    tests, repo = Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(repo), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", FAST_AGAINST_EXACT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) <= 1


def test_one_build_per_vae_object(monkeypatch):
    from streamvae.wan_decoder import cache

    vae = tiny_diffusers_vae("wan2.1", seed=3)
    builds = []
    original = cache.build_decoder
    monkeypatch.setattr(cache, "build_decoder", lambda *args: builds.append(1) or original(*args))
    first = cached_decoder(vae, torch.device("cpu"), torch.float32, FEATURES)
    assert cached_decoder(vae, torch.device("cpu"), torch.float32, FEATURES) is first and len(builds) == 1
    other = cached_decoder(vae, torch.device("cpu"), torch.bfloat16, FEATURES)  # replaces it
    assert other.dtype == torch.bfloat16 and len(builds) == 2
    gone = weakref.ref(vae)
    del vae, first, other
    gc.collect()
    assert gone() is None  # the cache doesn't keep the VAE alive, and its copy goes with it
    assert all(key is not None for key in cache._DECODERS.keys())


# ------------------------------------------------------------------------------------------------ refusals

def _refusal(weights) -> str:
    with pytest.raises(UnsupportedVAE) as error:
        load_wan_decoder(weights)
    return str(error.value)


def test_unknown_weights_are_refused_by_name(comfy_wan_model):
    weights = dict(comfy_wan_model.state_dict())
    weights["decoder.middle.1.extra.weight"] = torch.zeros(3)
    assert "decoder.middle.1.extra.weight" in _refusal(weights)
    del weights["decoder.middle.1.extra.weight"]
    del weights["decoder.head.0.gamma"]
    assert "decoder.head.0.gamma is missing" in _refusal(weights)


def test_other_architectures_are_refused():
    from diffusers import AutoencoderKL

    taehv = {f"decoder.{index}.weight": torch.zeros(4, 4, 3, 3) for index in range(23)}  # TAEHV's numbered layers
    assert "not a Wan VAE" in _refusal(taehv)
    image_vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4).state_dict()
    assert "expected 5 dimensions" in _refusal(image_vae)
    with pytest.raises(UnsupportedVAE, match="holds no weights"):
        decoder_weights(object())


def test_fast_mode_falls_back_to_the_host_decoder_saying_why(caplog):
    class Opaque(torch.nn.Module):
        """A VAE we can't read weights from: it decodes whole."""

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def decode(self, latent):
            return torch.zeros(1, 3, latent.shape[2], 8, 8)

    with caplog.at_level(logging.WARNING, logger="streamvae"):
        decoder = decoder_for(Opaque(), torch.randn(1, 4, 2, 1, 1), "fast")
    assert "fast unavailable: these weights are not a Wan VAE" in decoder.name
    assert "fast mode can't decode this VAE" in caplog.text


def test_feature_switches(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "taps, subpixel")
    assert enabled_features() == FEATURES - {"taps", "subpixel"}
    assert enabled_features(["norm"]) == FEATURES - {"norm"}
    monkeypatch.setenv(DISABLE_ENV, "warp")
    with pytest.raises(ValueError, match="STREAMVAE_FAST_DISABLE"):
        enabled_features()
