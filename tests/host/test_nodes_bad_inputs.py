"""Bad inputs through /prompt: each is refused with a sentence that says what to fix, and nothing is written
outside the output folder (nor, for these, inside it)."""

import pytest

from streamvae.client import PromptRejected
from support.graphs import error_message, streaming_prompt
from support.videos import partial_files


def rejection(comfy_client, prompt) -> str:
    """Queue a prompt that must fail validation; return the save node's error details, joined."""
    with pytest.raises(PromptRejected) as rejected:
        comfy_client.queue(prompt)
    errors = rejected.value.node_errors["save"]["errors"]
    return " | ".join(f"{error['message']}: {error['details']}" for error in errors)


def files_around(comfy_server) -> set:
    """Every file in the test tree outside the output folder (models excluded: they are large and fixed)."""
    root = comfy_server.tree.root
    return {path for path in root.rglob("*") if path.is_file() and comfy_server.tree.output not in path.parents
            and comfy_server.tree.models not in path.parents and path.name != "server.log"}


def test_vae_that_does_not_match_the_latent(comfy_client, comfy_server):
    prompt = streaming_prompt("wan21", filename_prefix="mismatch/clip")
    prompt["vae"]["inputs"]["vae_name"] = "tiny_wan22_vae.safetensors"  # 48-channel VAE, 16-channel latent
    run = comfy_client.run_prompt(prompt, timeout=300)
    assert run.status == "error"
    message = error_message(run)
    assert "16 channels" in message and "48" in message, message
    assert "Traceback" not in message
    assert not (comfy_server.tree.output / "mismatch").exists()


@pytest.mark.parametrize("prefix, expected", [
    ("../x", "outside ComfyUI's output folder"),
    ("video/../../x", "outside ComfyUI's output folder"),
    ("/tmp/streamvae_absolute/x", "absolute path"),
])
def test_prefix_escaping_the_output_folder(comfy_client, comfy_server, prefix, expected):
    before = files_around(comfy_server)
    details = rejection(comfy_client, streaming_prompt("wan21", filename_prefix=prefix))
    assert expected in details, details
    assert files_around(comfy_server) == before


def test_prefix_from_a_link_is_checked_when_it_runs(comfy_client, comfy_server):
    prompt = streaming_prompt("wan21")
    prompt["prefix"] = {"class_type": "PrimitiveString", "inputs": {"value": "../linked"}}
    prompt["save"]["inputs"]["filename_prefix"] = ["prefix", 0]
    before = files_around(comfy_server)
    run = comfy_client.run_prompt(prompt, timeout=300)
    assert run.status == "error"
    assert "outside ComfyUI's output folder" in error_message(run)
    assert files_around(comfy_server) == before


def test_fps_zero(comfy_client):
    details = rejection(comfy_client, streaming_prompt("wan21", fps=0))
    assert "fps" in details and "smaller than min" in details, details


@pytest.mark.parametrize("connected", ["both", "neither"])
def test_exactly_one_of_frames_or_images(comfy_client, comfy_server, connected):
    prompt = streaming_prompt("wan21", filename_prefix=f"{connected}/clip")
    if connected == "both":
        prompt["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0]}}
        prompt["save"]["inputs"]["images"] = ["decode", 0]
    else:
        del prompt["save"]["inputs"]["frames"]
    run = comfy_client.run_prompt(prompt, timeout=300)
    assert run.status == "error"
    message = error_message(run)
    assert "connect exactly one of 'frames'" in message and f"{connected} " in message, message
    assert not (comfy_server.tree.output / connected).exists()


def test_codec_the_container_cannot_hold(comfy_client, comfy_server):
    run = comfy_client.run_prompt({**streaming_prompt("wan21", filename_prefix="ffv1mp4/clip", codec="ffv1")}, timeout=300)
    assert run.status == "error"
    assert "a mp4 file cannot hold ffv1" in error_message(run)
    assert not partial_files(comfy_server.tree.output)


def test_hevc_width_that_crashes_libx265_is_refused_before_encoding(comfy_client, comfy_server):
    """48 px wide: libx265 in PyAV 18.1.0 can abort the whole server there (docs/reliability.md)."""
    prompt = streaming_prompt("wan21", latent={"width": 48}, filename_prefix="narrow/clip", codec="hevc",
                              encoder="software")
    run = comfy_client.run_prompt(prompt, timeout=300)
    assert run.status == "error"
    message = error_message(run)
    assert "can crash the whole process on frames 33 to 48 pixels wide" in message and "48x48" in message, message
    assert not list((comfy_server.tree.output / "narrow").glob("*"))


def test_image_latent_is_refused_clearly(comfy_client):
    prompt = streaming_prompt("wan21")
    prompt["latent"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    run = comfy_client.run_prompt(prompt, timeout=300)
    assert run.status == "error"
    assert "4-D image latent" in error_message(run)
