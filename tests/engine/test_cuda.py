"""The CUDA path (copy stream, events, pinned slots) checked byte for byte. Run on a GPU."""

import numpy as np
import pytest
import torch

from streamvae import PINNED_POOL, decode_to_video, iter_frames

from support.tiny_vaes import latent_for, stock_bytes, tiny_diffusers_vae
from support.videos import psnr, read_video

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device)")]


def poison_memory():
    """Fill the places our slots come from with garbage, so a missed wait or copy shows up as wrong bytes."""
    for _ in range(4):
        PINNED_POOL.give(torch.full((4, 256, 384, 3), 0xAB, dtype=torch.uint8).pin_memory())
    junk = torch.full((256 * 2**20,), 0xCD, dtype=torch.uint8, device="cuda")
    del junk  # freed to the caching allocator, which hands the same bytes to the next allocations


@pytest.mark.parametrize("arch", ["wan2.1", "wan2.2"])
@pytest.mark.parametrize("slots", [1, 2, 3])
def test_cuda_pipeline_delivers_exactly_what_the_gpu_decoded(tmp_path, arch, slots, monkeypatch):
    """Same kernels, same bytes: the pipeline's file equals the model's own GPU decode + stock conversion.

    The CPU path is checked too, to within the rounding that different convolution kernels give.
    """
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # else GPU convolutions round far coarser
    vae = tiny_diffusers_vae(arch)
    latent = latent_for(vae, latent_frames=9, height=16, width=24)
    decode_to_video(vae, latent, tmp_path / "cpu.mkv", fps=16, container="mkv", codec="ffv1")
    cpu = read_video(tmp_path / "cpu.mkv").frames
    vae_gpu = vae.to("cuda")
    reference = stock_bytes(vae_gpu, latent.cuda())
    poison_memory()
    stats = decode_to_video(vae_gpu, latent, tmp_path / "gpu.mkv", fps=16, container="mkv", codec="ffv1",
                            slots=slots)
    gpu = read_video(tmp_path / "gpu.mkv").frames
    assert np.array_equal(gpu, reference)
    assert stats.peak_vram_bytes > 0 and 0 < stats.gpu_busy <= 1
    poison_memory()
    assert np.array_equal(torch.cat(list(iter_frames(vae_gpu, latent, slots=slots))).numpy(), reference)
    difference = np.abs(gpu.astype(int) - cpu.astype(int))
    assert difference.max() <= 2 and (difference == 0).mean() > 0.99


def test_fast_mode_is_close_to_exact_and_leaves_the_model_alone(tmp_path):
    vae = tiny_diffusers_vae("wan2.1").to("cuda", torch.bfloat16)
    latent = latent_for(vae, latent_frames=5, height=16, width=24)
    exact = torch.cat(list(iter_frames(vae, latent, mode="exact"))).double()
    fast = torch.cat(list(iter_frames(vae, latent, mode="fast"))).double()
    assert psnr(exact, fast) >= 44  # the tiny model's own bf16 rounding bounds it (full size: test_wan_decoder_cuda.py)
    assert all(p.is_contiguous() for p in vae.parameters())


@pytest.mark.parametrize("arch", ["wan2.1", "wan2.2"])
def test_comfyui_vae_on_the_gpu_streams_the_bytes_stock_comfyui_writes(comfy, arch):
    """ComfyUI's own VAE object, loaded by its model management in its chosen dtype (bf16 on this card)."""
    from benchmarks.synthetic import random_comfy_wan_vae

    vae = random_comfy_wan_vae(arch)
    channels, scale = vae.latent_channels, vae.spacial_compression_decode()
    latent = torch.randn(1, channels, 5, 128 // scale, 192 // scale, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        stock = vae.decode(latent).reshape(-1, 128, 192, 3)  # VAE Decode's IMAGE
        stock_bytes = (stock * 255).clamp(0, 255).byte().numpy()  # Save Video's conversion
        ours = torch.cat(list(iter_frames(vae, latent))).numpy()
    assert vae.vae_dtype == torch.bfloat16 and vae.device.type == "cuda"
    assert np.array_equal(ours, stock_bytes)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_a_vae_on_the_second_gpu_decodes_as_on_the_first(tmp_path, mode):
    """ComfyUI's Select VAE Device puts a VAE on another card than the current one: Triton kernels and the copy
    stream's ordering must follow the VAE, not the current device."""
    latent = latent_for(tiny_diffusers_vae("wan2.1"), latent_frames=5, height=16, width=24)
    first = tiny_diffusers_vae("wan2.1").to("cuda:0", torch.bfloat16)
    second = tiny_diffusers_vae("wan2.1").to("cuda:1", torch.bfloat16)
    assert torch.cuda.current_device() == 0
    on_first = torch.cat(list(iter_frames(first, latent, mode=mode)))
    on_second = torch.cat(list(iter_frames(second, latent, mode=mode)))
    assert torch.equal(on_first, on_second)
    stats = decode_to_video(second, latent, tmp_path / "second.mkv", fps=16, container="mkv", codec="ffv1", mode=mode)
    assert np.array_equal(read_video(stats.path).frames, on_first.numpy())
