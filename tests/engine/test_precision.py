"""Decoding in another precision than the VAE's own, for one decode, with the model restored afterwards."""

import numpy as np
import pytest
import torch

from streamvae import Cancelled, StreamVAEError, decode_to_video, iter_frames

from support.tiny_vaes import latent_for, stock_bytes


def test_bf16_decode_of_an_fp32_vae_is_close_and_leaves_the_model_in_fp32(wan21_vae):
    latent = latent_for(wan21_vae, latent_frames=3)
    frames = torch.cat(list(iter_frames(wan21_vae, latent, precision="bf16"))).numpy().astype(float)
    exact = stock_bytes(wan21_vae, latent).astype(float)
    assert not np.array_equal(frames, exact)  # it really ran in bf16
    assert 10 * np.log10(255 ** 2 / np.mean((frames - exact) ** 2)) >= 30
    assert all(p.dtype == torch.float32 for p in wan21_vae.parameters())


def test_the_model_is_restored_after_a_cancel(wan21_vae, tmp_path):
    with pytest.raises(Cancelled):
        decode_to_video(wan21_vae, latent_for(wan21_vae, latent_frames=4), tmp_path / "x.mp4", fps=16,
                        precision="bf16", cancel=lambda: True)
    assert all(p.dtype == torch.float32 for p in wan21_vae.parameters())
    assert list(tmp_path.iterdir()) == []


def test_auto_and_the_vae_own_precision_change_nothing(wan21_vae):
    latent = latent_for(wan21_vae, latent_frames=2)
    for precision in ("auto", "fp32"):
        frames = torch.cat(list(iter_frames(wan21_vae, latent, precision=precision))).numpy()
        assert np.array_equal(frames, stock_bytes(wan21_vae, latent))


def test_unknown_precision_is_refused(wan21_vae, tmp_path):
    with pytest.raises(StreamVAEError, match="unknown precision 'fp8'"):
        decode_to_video(wan21_vae, latent_for(wan21_vae), tmp_path / "x.mp4", fps=16, precision="fp8")
