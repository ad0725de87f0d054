"""API-format graphs with this pack's nodes, and where their files land (host and reliability tests).

Sizes are tiny on purpose: the VAEs are full-size random-weight models decoding on 2 CPU cores, where one latent
frame of a 64-pixel video takes a few hundredths of a second to a second, depending on load.
"""

from __future__ import annotations

from pathlib import Path

from support.comfy_server import WAN21_VAE, WAN22_VAE

WIDTH, HEIGHT = 64, 48
FRAMES = 5  # two latent frames: 1 + 4

SAVE_DEFAULTS = {"fps": 16, "filename_prefix": "video/StreamVAE", "container": "mp4", "codec": "h264", "crf": 19,
                 "preset": "ultrafast", "pix_fmt": "auto", "encoder": "auto", "embed_workflow": True}
LOSSLESS = {"container": "mkv", "codec": "ffv1", "pix_fmt": "bgr0"}  # bgr0 keeps the RGB bytes exactly


def latent_nodes(family: str, *, frames: int = FRAMES, width: int = WIDTH, height: int = HEIGHT,
                 batch: int = 1) -> dict:
    """Nodes "vae" and "latent": Wan 2.1 (16 channels) or Wan 2.2 (48 channels), as the official templates pair them."""
    size = {"width": width, "height": height, "length": frames, "batch_size": batch}
    if family == "wan21":
        return {"vae": {"class_type": "VAELoader", "inputs": {"vae_name": WAN21_VAE}},
                "latent": {"class_type": "EmptyHunyuanLatentVideo", "inputs": size}}
    return {"vae": {"class_type": "VAELoader", "inputs": {"vae_name": WAN22_VAE}},
            "latent": {"class_type": "Wan22ImageToVideoLatent", "inputs": {"vae": ["vae", 0], **size}}}


def save_node(source: dict, **settings) -> dict:
    """Save Video (Streaming) fed by `source` ({"frames": link} or {"images": link})."""
    return {"class_type": "StreamVAESaveVideo", "inputs": {**SAVE_DEFAULTS, **settings, **source}}


def streaming_prompt(family: str, *, mode: str = "exact", latent: dict | None = None, **settings) -> dict:
    """latent -> VAE Decode (Streaming) -> Save Video (Streaming) as node "save"."""
    return {
        **latent_nodes(family, **(latent or {})),
        "stream": {"class_type": "StreamVAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0],
                                                               "mode": mode}},
        "save": save_node({"frames": ["stream", 0]}, **settings),
    }


def saved_files(run, output_dir: Path, node: str = "save") -> list[Path]:
    """The files a save node reported in /history, as paths in the server's output folder."""
    return [Path(output_dir) / item["subfolder"] / item["filename"] for item in run.outputs[node]["images"]]


def error_message(run) -> str:
    """The exception message of the run's one execution error."""
    errors = run.of_type("execution_error")
    assert len(errors) == 1, f"expected one execution error, got {run.types}"
    return errors[0]["exception_message"]
