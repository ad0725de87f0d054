"""The pack loads into a real ComfyUI: no import failure, every node in /object_info as designed, the web
extension served."""

import json
import urllib.request

import pytest

from support.comfy_server import PACK_NAME

# node id -> (display name, category, required inputs, optional inputs, outputs, output node)
NODES = {
    "StreamVAEDecode": ("VAE Decode (Streaming)", "latent",
                        {"samples": "LATENT", "vae": "VAE", "mode": "COMBO"}, {"precision": "COMBO"}, ["FRAME_STREAM"],
                        False),
    "StreamVAESaveVideo": ("Save Video (Streaming)", "image/video",
                           {"fps": "FLOAT", "filename_prefix": "STRING", "container": "COMBO", "codec": "COMBO",
                            "crf": "INT", "preset": "COMBO", "pix_fmt": "COMBO", "encoder": "COMBO",
                            "embed_workflow": "BOOLEAN"},
                           {"frames": "FRAME_STREAM", "images": "IMAGE", "audio": "AUDIO"}, ["VIDEO", "STRING"], True),
    "StreamVAEDecodeAsync": ("VAE Decode (Async)", "latent", {"samples": "LATENT", "vae": "VAE"}, {}, ["IMAGE"],
                             False),
    "StreamVAEFrameStreamToImages": ("Frame Stream to Images", "image/video",
                                     {"frames": "FRAME_STREAM", "start": "INT", "count": "INT"}, {}, ["IMAGE"], False),
    "StreamVAEImagesToFrameStream": ("Images to Frame Stream", "image/video", {"images": "IMAGE"}, {},
                                     ["FRAME_STREAM"], False),
}


def test_the_pack_imports_without_failure(comfy_server):
    log = comfy_server.log_text()
    pack_lines = [line for line in log.splitlines() if f"custom_nodes/{PACK_NAME}" in line and "seconds" in line]
    assert pack_lines, "the pack is missing from ComfyUI's import-times list:\n" + comfy_server.log_tail()
    assert not [line for line in pack_lines if "IMPORT FAILED" in line], pack_lines


@pytest.mark.parametrize("node_id", list(NODES))
def test_object_info_lists_the_node(comfy_client, node_id):
    display, category, required, optional, outputs, output_node = NODES[node_id]
    info = comfy_client.object_info(node_id)
    assert info["display_name"] == display
    assert info["category"] == category
    assert info["python_module"] == f"custom_nodes.{PACK_NAME}"
    assert info["output_node"] is output_node
    assert {name: spec[0] for name, spec in info["input"]["required"].items()} == required
    assert {name: spec[0] for name, spec in info["input"].get("optional", {}).items()} == optional
    assert info["output"] == outputs
    for spec in [*info["input"]["required"].values(), *info["input"].get("optional", {}).values()]:
        assert spec[1].get("tooltip"), f"{node_id}: every input explains itself"


def test_save_node_offers_the_engine_choices(comfy_client):
    required = comfy_client.object_info("StreamVAESaveVideo")["input"]["required"]
    assert required["container"][1]["options"] == ["mp4", "mkv", "mov", "webm"]
    assert {"h264", "ffv1"} <= set(required["codec"][1]["options"])
    assert required["filename_prefix"][1]["default"] == "video/StreamVAE"
    assert required["fps"][1]["min"] > 0
    assert comfy_client.object_info("StreamVAEDecode")["input"]["required"]["mode"][1]["options"] == ["exact", "fast"]


def test_web_extension_is_served(comfy_server):
    with urllib.request.urlopen(comfy_server.url + "/extensions") as response:
        scripts = json.loads(response.read())
    script = f"/extensions/{PACK_NAME}/streamvae.js"
    assert script in scripts
    with urllib.request.urlopen(comfy_server.url + script) as response:
        source = response.read().decode()
    assert 'api.addEventListener("streamvae.progress"' in source
