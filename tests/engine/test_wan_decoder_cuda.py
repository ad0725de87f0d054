"""Fast mode's own decoder on the GPU, at full size: bf16 with channels-last and the Triton kernels against exact
mode (the host's modules), memory against stock, and the server's situation (ComfyUI's VAE loaded under inference
mode, the decode on a thread of its own). Run on a GPU; the float32 equivalence runs in CI (test_wan_decoder.py)."""

from __future__ import annotations

import threading

import pytest
import torch

from streamvae import decoder_for, iter_frames
from benchmarks.bench import fast_mode_psnr, psnr_db
from streamvae.decoders import FastWanChunkDecoder
from benchmarks.synthetic import random_latent, random_wan_vae

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device)")]

SIZE = {"wan2.1": (720, 1280), "wan2.2": (704, 1280)}  # the published models' 720p
FRAMES = {"wan2.1": 161, "wan2.2": 121}
MIN_PSNR_DB = 45


@pytest.fixture(scope="module", params=["wan2.1", "wan2.2"])
def full_size_vae(request):
    """The published architecture with real-valued random weights, bf16 on the GPU."""
    vae = random_wan_vae(request.param, device="cuda", dtype=torch.bfloat16)
    yield request.param, vae
    del vae
    torch.cuda.empty_cache()


def test_fast_mode_is_our_decoder_with_triton_and_within_45_db_of_exact(full_size_vae):
    arch, vae = full_size_vae
    height, width = SIZE[arch]
    latent = random_latent(vae, 21, height, width)  # 6 latent frames: the first step and five later ones
    decoder = decoder_for(vae, latent, "fast")
    assert isinstance(decoder, FastWanChunkDecoder)
    assert decoder.name == f"streamvae-{arch} bf16 (triton)"
    assert decoder.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last_3d)
    psnr = fast_mode_psnr(vae, latent)
    print(f"{arch} {width}x{height}: fast mode vs exact {psnr:.1f} dB")
    assert psnr >= MIN_PSNR_DB


def _peak_bytes(run) -> int:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def test_fast_mode_peaks_below_stock(full_size_vae):
    """The whole video at 720p: stock's decode (everything at once, under inference mode as ComfyUI runs it)
    against fast mode's stream, which holds its own copy of the decoder's weights on top of the VAE's."""
    arch, vae = full_size_vae
    height, width = SIZE[arch]
    latent = random_latent(vae, FRAMES[arch], height, width)

    def stock():
        with torch.inference_mode():
            vae.decode(latent.to(torch.bfloat16))

    def fast():
        for _ in iter_frames(vae, latent, mode="fast"):
            pass

    fast()  # warm: kernels compiled, our weights converted (they stay, and count in the peak below)
    stock_peak, fast_peak = _peak_bytes(stock), _peak_bytes(fast)
    print(f"{arch}: peak VRAM stock {stock_peak / 2**30:.2f} GiB, fast {fast_peak / 2**30:.2f} GiB")
    assert fast_peak <= stock_peak


def test_comfyui_vae_loaded_under_inference_mode_decodes_fast_from_a_plain_thread(comfy):
    """The server's situation, which crashed the former fast mode: ComfyUI builds and loads the VAE under
    inference mode; the decode runs on another thread, outside it, with grad enabled."""
    from benchmarks.synthetic import random_comfy_wan_vae

    with torch.inference_mode():
        vae = random_comfy_wan_vae("wan2.1")
    latent = torch.randn(1, 16, 6, 90, 160, generator=torch.Generator().manual_seed(3))
    exact = torch.cat(list(iter_frames(vae, latent, mode="exact")))
    result = {}

    def decode():
        try:
            with torch.enable_grad():
                result["frames"] = torch.cat(list(iter_frames(vae, latent, mode="fast")))
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            result["error"] = error

    thread = threading.Thread(target=decode)
    thread.start()
    thread.join()
    assert "error" not in result, repr(result.get("error"))
    psnr = psnr_db(result["frames"], exact)
    print(f"ComfyUI Wan 2.1 VAE, fast mode from a plain thread: {psnr:.1f} dB from exact")
    assert psnr >= MIN_PSNR_DB
